package kernel

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY (include/xen/interface/elfnote.h): the
// note, owner "Xen", that carries the 32-bit PVH entry point; CONFIG_PVH emits it.
const xenElfnotePhys32Entry = 18

// maxNoteSection caps how much of a note segment is read (vmlinux has a few hundred bytes).
const maxNoteSection = 1 << 20

// ErrNoPVHNote means the image is an ELF kernel without the PVH entry note (built without
// CONFIG_PVH), which qemu -M microvm cannot boot.
var ErrNoPVHNote = errors.New("no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)")

// CheckVmlinux checks that path is a 64-bit x86 ELF kernel image (vmlinux, not a bzImage)
// with the PVH entry note, i.e. something both our VMM and qemu -M microvm can boot directly.
func CheckVmlinux(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("kernel image %s: %w", path, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return fmt.Errorf("kernel image %s: %v %v %v, want a 64-bit x86-64 executable", path, f.Class, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		if p.Filesz > maxNoteSection {
			return fmt.Errorf("kernel image %s: note segment of %d bytes", path, p.Filesz)
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), maxNoteSection))
		if err != nil {
			return fmt.Errorf("kernel image %s: read notes: %w", path, err)
		}
		for _, n := range ParseNotes(b) {
			if n.Name == "Xen" && n.Type == xenElfnotePhys32Entry && len(n.Desc) >= 4 {
				return nil
			}
		}
	}
	return fmt.Errorf("kernel image %s: %w", path, ErrNoPVHNote)
}

// Note is one ELF note (Elf64_Nhdr plus its name and descriptor).
type Note struct {
	Name string
	Type uint32
	Desc []byte
}

// ParseNotes splits the contents of a little-endian ELF note segment into notes. It stops at
// the first truncated or inconsistent entry and never reads out of bounds.
func ParseNotes(b []byte) []Note {
	var out []Note
	for len(b) >= 12 {
		namesz := uint64(binary.LittleEndian.Uint32(b[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(b[4:]))
		typ := binary.LittleEndian.Uint32(b[8:])
		nameEnd := 12 + align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if nameEnd > uint64(len(b)) || descEnd > uint64(len(b)) {
			break
		}
		name := b[12 : 12+namesz]
		if namesz > 0 && name[namesz-1] == 0 {
			name = name[:namesz-1]
		}
		out = append(out, Note{Name: string(name), Type: typ, Desc: b[nameEnd : nameEnd+descsz]})
		b = b[descEnd:]
	}
	return out
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }
