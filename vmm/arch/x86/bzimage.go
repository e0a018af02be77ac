package x86

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/vmbench/runner/vmm/guestmem"
)

// Setup-header fields used when loading a bzImage, as offsets in the file (which equal
// their offsets in struct boot_params; Documentation/arch/x86/boot.rst).
const (
	setupHeaderOff      = 0x1f1 // struct setup_header inside boot_params
	setupSectsOff       = 0x1f1
	bootFlagOff         = 0x1fe
	jumpOff             = 0x200 // 2-byte jump; its second byte is the header length - 2 past 0x202
	setupHeaderMagicOff = 0x202 // "HdrS"
	versionOff          = 0x206
	loadflagsOff        = 0x211
	initrdAddrMaxOff    = 0x22c
	xloadflagsOff       = 0x236
	cmdlineSizeOff      = 0x238
	initSizeOff         = 0x260

	bootFlagMagic       = 0xaa55
	loadflagLoadedHigh  = 1 << 0 // LOADED_HIGH: protected-mode code is loaded at 0x100000
	xlfKernel64         = 1 << 0 // XLF_KERNEL_64: has the 64-bit entry point at +0x200
	minBootProtocol     = 0x020c // 2.12: xloadflags
	bzImageLoadAddr     = HighMemStart
	bzImage64EntryDelta = 0x200
	maxSetupSects       = 64 // real-mode setup code is at most 32 KiB
)

// loadBzImage loads a bzImage's protected-mode part at 1 MiB and returns the 64-bit entry
// (load address + 0x200). The range the decompressor needs (init_size) must fit in RAM
// and in the identity map.
func loadBzImage(mem *guestmem.Memory, r io.ReaderAt, size int64) (*Kernel, error) {
	var hdr [0x268]byte // up to and including init_size
	if size < int64(len(hdr)) {
		return nil, fmt.Errorf("%w: bzImage of %d bytes is shorter than its setup header", ErrBadKernel, size)
	}
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("%w: read setup header: %v", ErrBadKernel, err)
	}
	le := binary.LittleEndian
	if le.Uint16(hdr[bootFlagOff:]) != bootFlagMagic {
		return nil, fmt.Errorf("%w: bzImage boot_flag %#x, want %#x", ErrBadKernel, le.Uint16(hdr[bootFlagOff:]), bootFlagMagic)
	}
	version := le.Uint16(hdr[versionOff:])
	if version < minBootProtocol {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d, need 2.12 or later", ErrBadKernel, version>>8, version&0xff)
	}
	if hdr[loadflagsOff]&loadflagLoadedHigh == 0 {
		return nil, fmt.Errorf("%w: not a bzImage (LOADED_HIGH clear)", ErrBadKernel)
	}
	if le.Uint16(hdr[xloadflagsOff:])&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: bzImage has no 64-bit entry point (XLF_KERNEL_64 clear)", ErrBadKernel)
	}
	setupSects := int64(hdr[setupSectsOff])
	if setupSects == 0 {
		setupSects = 4
	}
	if setupSects > maxSetupSects {
		return nil, fmt.Errorf("%w: setup_sects %d", ErrBadKernel, setupSects)
	}
	pmOff := (setupSects + 1) * 512
	if pmOff >= size {
		return nil, fmt.Errorf("%w: protected-mode code at %#x is beyond the %d-byte file", ErrBadKernel, pmOff, size)
	}
	pmSize := uint64(size - pmOff)
	// The header runs from 0x1f1 to 0x202 + the jump's displacement byte.
	hdrEnd := setupHeaderMagicOff + int(hdr[jumpOff+1])
	if hdrEnd > len(hdr) {
		hdrEnd = len(hdr)
	}
	initSize := uint64(le.Uint32(hdr[initSizeOff:]))
	span := max(initSize, pmSize)
	end, carry := bits.Add64(bzImageLoadAddr, span, 0)
	if carry != 0 || end > identityMapped || !mem.Contains(bzImageLoadAddr, span) {
		return nil, fmt.Errorf("%w: bzImage needs [%#x, %#x) (init_size %#x): more than guest RAM", ErrBadKernel, uint64(bzImageLoadAddr), end, initSize)
	}
	if err := copyToGuest(mem, r, pmOff, bzImageLoadAddr, pmSize); err != nil {
		return nil, fmt.Errorf("protected-mode code: %w", err)
	}
	k := &Kernel{
		Format:        FormatBzImage,
		Entry:         bzImageLoadAddr + bzImage64EntryDelta,
		Start:         bzImageLoadAddr,
		End:           end,
		Setup:         append([]byte(nil), hdr[setupHeaderOff:hdrEnd]...),
		InitrdAddrMax: uint64(le.Uint32(hdr[initrdAddrMaxOff:])),
		CmdlineMax:    CmdlineMax,
	}
	if n := le.Uint32(hdr[cmdlineSizeOff:]); n > 0 && int64(n)+1 < CmdlineMax {
		k.CmdlineMax = int(n) + 1
	}
	if k.InitrdAddrMax == 0 {
		k.InitrdAddrMax = 0x37ff_ffff // boot protocol < 2.03 default
	}
	return k, nil
}
