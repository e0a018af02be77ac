package x86

import (
	"debug/elf"
	"fmt"
	"io"
	"math/bits"

	"github.com/vmbench/runner/vmm/guestmem"
)

// maxProgs bounds the program headers of an ELF kernel (a vmlinux has 5).
const maxProgs = 64

// loadELF loads an uncompressed vmlinux: each PT_LOAD segment at its physical address
// (p_paddr; the per-CPU segment has p_vaddr 0), entered at e_entry (a physical address for
// x86 vmlinux). Segments must lie in RAM at or above 1 MiB, clear of the boot structures.
func loadELF(mem *guestmem.Memory, r io.ReaderAt, size int64) (k *Kernel, err error) {
	// debug/elf is robust against malformed files in practice, but its parser is not
	// ours to prove panic-free: turn a panic into an error rather than crash the VMM.
	defer func() {
		if p := recover(); p != nil {
			k, err = nil, fmt.Errorf("%w: ELF parser: %v", ErrBadKernel, p)
		}
	}()
	f, err := elf.NewFile(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKernel, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%w: ELF %v %v %v, want ELFCLASS64 little-endian x86-64", ErrBadKernel, f.Class, f.Data, f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("%w: ELF type %v, want ET_EXEC", ErrBadKernel, f.Type)
	}
	if len(f.Progs) > maxProgs {
		return nil, fmt.Errorf("%w: %d program headers (max %d)", ErrBadKernel, len(f.Progs), maxProgs)
	}
	k = &Kernel{Format: FormatELF, Entry: f.Entry, Start: ^uint64(0), InitrdAddrMax: guestmem.MMIOHoleStart - 1, CmdlineMax: CmdlineMax}
	entryLoaded := false
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz {
			return nil, fmt.Errorf("%w: segment %d: filesz %#x > memsz %#x", ErrBadKernel, i, p.Filesz, p.Memsz)
		}
		end, carry := bits.Add64(p.Paddr, p.Memsz, 0)
		if carry != 0 || p.Paddr < HighMemStart || end > identityMapped || !mem.Contains(p.Paddr, p.Memsz) {
			return nil, fmt.Errorf("%w: segment %d: [%#x, %#x) is not in guest RAM between 1 MiB and 4 GiB", ErrBadKernel, i, p.Paddr, end)
		}
		if p.Off > uint64(size) || p.Filesz > uint64(size)-p.Off {
			return nil, fmt.Errorf("%w: segment %d: file range %#x+%#x beyond the file", ErrBadKernel, i, p.Off, p.Filesz)
		}
		if err := copyToGuest(mem, r, int64(p.Off), p.Paddr, p.Filesz); err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
		k.Start = min(k.Start, p.Paddr)
		k.End = max(k.End, end)
		if f.Entry >= p.Paddr && f.Entry < end {
			entryLoaded = true
		}
	}
	if k.End == 0 {
		return nil, fmt.Errorf("%w: no loadable segment", ErrBadKernel)
	}
	if !entryLoaded {
		return nil, fmt.Errorf("%w: entry point %#x is not inside a loaded segment", ErrBadKernel, f.Entry)
	}
	return k, nil
}
