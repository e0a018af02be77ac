package vmmtest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// KernelEntry is where the 64-bit test guests are loaded and entered, like a vmlinux
// (CONFIG_PHYSICAL_START = 16 MiB).
const KernelEntry = 0x100_0000

// APStartAddr is where the SMP test's real-mode AP code is loaded: startup-IPI vector 0x10.
const APStartAddr = 0x1_0000

// Segment is one PT_LOAD program header's contents.
type Segment struct {
	Paddr   uint64 // physical load address (where the VMM copies Data)
	Vaddr   uint64 // virtual address; 0 means Paddr
	Data    []byte
	MemSize uint64 // >= len(Data); the rest is zero-filled (BSS). 0 means len(Data).
}

// ELF returns a minimal ELF64 x86-64 executable with one PT_LOAD per segment and the given
// entry point, in the shape of a vmlinux.
func ELF(entry uint64, segs ...Segment) []byte {
	const ehsize, phsize = 64, 56
	dataOff := uint64(ehsize + phsize*len(segs))
	var hdr, phdrs, data bytes.Buffer
	le := binary.LittleEndian
	for _, s := range segs {
		off := dataOff + uint64(data.Len())
		data.Write(s.Data)
		vaddr := s.Vaddr
		if vaddr == 0 {
			vaddr = s.Paddr
		}
		mem := s.MemSize
		if mem < uint64(len(s.Data)) {
			mem = uint64(len(s.Data))
		}
		binary.Write(&phdrs, le, elf.Prog64{
			Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_W | elf.PF_X),
			Off: off, Vaddr: vaddr, Paddr: s.Paddr,
			Filesz: uint64(len(s.Data)), Memsz: mem, Align: 0x1000,
		})
	}
	var ident [elf.EI_NIDENT]byte
	copy(ident[:], elf.ELFMAG)
	ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&hdr, le, elf.Header64{
		Ident: ident, Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64),
		Version: uint32(elf.EV_CURRENT), Entry: entry, Phoff: ehsize,
		Ehsize: ehsize, Phentsize: phsize, Phnum: uint16(len(segs)), Shentsize: 64,
	})
	return append(append(hdr.Bytes(), phdrs.Bytes()...), data.Bytes()...)
}

// WriteKernel writes a test kernel: code loaded and entered at KernelEntry, plus extra
// segments. It returns the file's path inside dir.
func WriteKernel(dir string, code []byte, extra ...Segment) (string, error) {
	segs := append([]Segment{{Paddr: KernelEntry, Data: code}}, extra...)
	p := filepath.Join(dir, "test-vmlinux")
	if err := os.WriteFile(p, ELF(KernelEntry, segs...), 0o644); err != nil {
		return "", fmt.Errorf("vmmtest: write kernel: %w", err)
	}
	return p, nil
}
