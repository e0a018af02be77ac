package x86

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmbench/runner/vmm/guestmem"
)

// KernelFormat is the kind of kernel image.
type KernelFormat string

// Kernel formats LoadKernel understands.
const (
	FormatELF     KernelFormat = "vmlinux" // uncompressed ELF64 (entered at e_entry)
	FormatBzImage KernelFormat = "bzImage" // compressed, 64-bit boot protocol (entered at load + 0x200)
)

// ErrBadKernel is wrapped by every error about the kernel image's contents.
var ErrBadKernel = errors.New("bad kernel image")

// Kernel is a kernel loaded into guest memory.
type Kernel struct {
	Format KernelFormat
	Entry  uint64 // guest-physical 64-bit entry point
	Start  uint64 // lowest loaded guest-physical address
	End    uint64 // end of the loaded image (exclusive), including BSS / init_size
	// Setup is the bzImage setup header (boot_params.hdr, from offset 0x1f1 of the file) to
	// copy into the zero page; nil for an ELF kernel.
	Setup []byte
	// InitrdAddrMax is the highest address the initrd may end at (inclusive).
	InitrdAddrMax uint64
	// CmdlineMax is the longest command line the kernel accepts, including the NUL.
	CmdlineMax int
}

// maxKernelSize bounds the image file (a vmlinux with debug info can be large; the loaded
// parts are bounded by guest RAM anyway).
const maxKernelSize = 1 << 30

// LoadKernelFile opens path and loads it with LoadKernel.
func LoadKernelFile(mem *guestmem.Memory, path string) (*Kernel, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	k, err := LoadKernel(mem, f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", path, err)
	}
	return k, nil
}

// LoadKernel detects the image format and copies the kernel into guest memory. Guest RAM
// must be freshly mapped (all zero): BSS is not cleared explicitly, which keeps untouched
// pages out of the VMM's resident set.
func LoadKernel(mem *guestmem.Memory, r io.ReaderAt, size int64) (k *Kernel, err error) {
	if size <= 0 || size > maxKernelSize {
		return nil, fmt.Errorf("%w: size %d", ErrBadKernel, size)
	}
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil {
		return nil, fmt.Errorf("%w: read magic: %v", ErrBadKernel, err)
	}
	if bytes.Equal(magic[:], []byte("\x7fELF")) {
		return loadELF(mem, r, size)
	}
	var hdr [4]byte
	if size > setupHeaderMagicOff+4 {
		if _, err := r.ReadAt(hdr[:], setupHeaderMagicOff); err != nil {
			return nil, fmt.Errorf("%w: read setup header: %v", ErrBadKernel, err)
		}
		if string(hdr[:]) == "HdrS" {
			return loadBzImage(mem, r, size)
		}
	}
	return nil, fmt.Errorf("%w: neither an ELF vmlinux nor a bzImage", ErrBadKernel)
}

// copyToGuest reads n bytes at file offset off into guest memory at gpa.
func copyToGuest(mem *guestmem.Memory, r io.ReaderAt, off int64, gpa, n uint64) error {
	dst, err := mem.Slice(gpa, n)
	if err != nil {
		return fmt.Errorf("%w: %#x bytes at GPA %#x: %v", ErrBadKernel, n, gpa, err)
	}
	if _, err := r.ReadAt(dst, off); err != nil {
		return fmt.Errorf("%w: read %#x bytes at file offset %#x: %v", ErrBadKernel, n, off, err)
	}
	return nil
}
