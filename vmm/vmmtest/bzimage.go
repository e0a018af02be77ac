package vmmtest

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// BzImage returns a minimal bzImage (boot protocol 2.15, 64-bit capable) whose
// protected-mode part, loaded at 1 MiB, holds code at its 64-bit entry point (+0x200):
// the real-mode setup is one empty sector and nothing is compressed. It exercises the
// VMM's bzImage path exactly as a real one would, minus the decompressor.
func BzImage(code []byte) []byte {
	img := make([]byte, 2*512) // boot sector + one setup sector
	le := binary.LittleEndian
	img[0x1f1] = 1                         // setup_sects
	le.PutUint16(img[0x1fe:], 0xaa55)      // boot_flag
	img[0x200], img[0x201] = 0xeb, 0x66    // jump over the header (ends at 0x268)
	copy(img[0x202:], "HdrS")              // header
	le.PutUint16(img[0x206:], 0x020f)      // version 2.15
	img[0x211] = 0x01                      // loadflags: LOADED_HIGH
	le.PutUint32(img[0x22c:], 0x7fff_ffff) // initrd_addr_max
	le.PutUint32(img[0x230:], 0x20_0000)   // kernel_alignment
	img[0x234] = 1                         // relocatable_kernel
	le.PutUint16(img[0x236:], 0x1)         // xloadflags: XLF_KERNEL_64
	le.PutUint32(img[0x238:], 2047)        // cmdline_size
	pm := make([]byte, 0x200+len(code))    // 32-bit entry area, then the 64-bit entry
	copy(pm[0x200:], code)
	le.PutUint32(img[0x260:], uint32(len(pm))) // init_size
	return append(img, pm...)
}

// WriteBzImage writes BzImage(code) into dir and returns its path.
func WriteBzImage(dir string, code []byte) (string, error) {
	p := filepath.Join(dir, "test-bzImage")
	if err := os.WriteFile(p, BzImage(code), 0o644); err != nil {
		return "", fmt.Errorf("vmmtest: write bzImage: %w", err)
	}
	return p, nil
}
