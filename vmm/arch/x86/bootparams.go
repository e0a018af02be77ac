package x86

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vmbench/runner/vmm/guestmem"
)

// Offsets in struct boot_params, the "zero page" (arch/x86/include/uapi/asm/bootparam.h);
// bootparams_test.go checks them against the C header.
const (
	bpExtRamdiskImage = 0x0c0
	bpExtRamdiskSize  = 0x0c4
	bpExtCmdLinePtr   = 0x0c8
	bpE820Entries     = 0x1e8
	bpBootFlag        = 0x1fe
	bpHeader          = 0x202
	bpVersion         = 0x206
	bpTypeOfLoader    = 0x210
	bpLoadflags       = 0x211
	bpRamdiskImage    = 0x218
	bpRamdiskSize     = 0x21c
	bpCmdLinePtr      = 0x228
	bpKernelAlignment = 0x230
	bpCmdlineSize     = 0x238
	bpE820Table       = 0x2d0

	zeroPageSize        = 4096
	e820EntrySize       = 20  // struct boot_e820_entry (packed)
	e820MaxEntriesZPage = 128 // E820_MAX_ENTRIES_ZEROPAGE
	typeOfLoaderUndef   = 0xff
	headerMagic         = 0x5372_6448 // "HdrS"
	elfBootProtocol     = 0x020f      // what the zero page claims for an ELF kernel
	kernelAlignmentELF  = 0x100_0000
)

// E820 memory types (arch/x86/include/uapi/asm/e820.h... E820_TYPE_*).
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is struct boot_e820_entry: one range of the guest's physical memory map.
type E820Entry struct {
	Addr uint64
	Size uint64
	Type uint32
}

// E820Map describes guest RAM: low memory up to the MP table, the reserved MP-table and
// BIOS areas, RAM from 1 MiB to the MMIO hole (or the end of RAM), and RAM above 4 GiB.
func E820Map(mem *guestmem.Memory) []E820Entry {
	regs := mem.Regions()
	lowEnd := regs[0].GuestAddr + regs[0].Size
	m := []E820Entry{
		{0, MPTableAddr, E820RAM},
		{MPTableAddr, EBDAEnd - MPTableAddr, E820Reserved},
		{BIOSROMStart, HighMemStart - BIOSROMStart, E820Reserved},
	}
	if lowEnd > HighMemStart {
		m = append(m, E820Entry{HighMemStart, lowEnd - HighMemStart, E820RAM})
	}
	for _, r := range regs[1:] {
		m = append(m, E820Entry{r.GuestAddr, r.Size, E820RAM})
	}
	return m
}

// BootParams is what goes into the zero page.
type BootParams struct {
	// Setup is a bzImage's setup header (nil for an ELF kernel), copied to offset 0x1f1.
	Setup       []byte
	CmdlineAddr uint64
	CmdlineSize uint32 // excluding the NUL
	InitrdAddr  uint64
	InitrdSize  uint64
	E820        []E820Entry
}

// Marshal encodes the zero page.
func (b *BootParams) Marshal() ([]byte, error) {
	if len(b.E820) > e820MaxEntriesZPage {
		return nil, fmt.Errorf("zero page: %d e820 entries (max %d)", len(b.E820), e820MaxEntriesZPage)
	}
	if len(b.Setup) > bpE820Table-setupHeaderOff {
		return nil, fmt.Errorf("zero page: setup header of %d bytes", len(b.Setup))
	}
	zp := make([]byte, zeroPageSize)
	le := binary.LittleEndian
	if b.Setup != nil {
		copy(zp[setupHeaderOff:], b.Setup)
	} else {
		le.PutUint16(zp[bpBootFlag:], bootFlagMagic)
		le.PutUint32(zp[bpHeader:], headerMagic)
		le.PutUint16(zp[bpVersion:], elfBootProtocol)
		zp[bpLoadflags] = loadflagLoadedHigh
		le.PutUint32(zp[bpKernelAlignment:], kernelAlignmentELF)
	}
	zp[bpTypeOfLoader] = typeOfLoaderUndef
	le.PutUint32(zp[bpCmdLinePtr:], uint32(b.CmdlineAddr))
	le.PutUint32(zp[bpExtCmdLinePtr:], uint32(b.CmdlineAddr>>32))
	le.PutUint32(zp[bpCmdlineSize:], b.CmdlineSize)
	le.PutUint32(zp[bpRamdiskImage:], uint32(b.InitrdAddr))
	le.PutUint32(zp[bpExtRamdiskImage:], uint32(b.InitrdAddr>>32))
	le.PutUint32(zp[bpRamdiskSize:], uint32(b.InitrdSize))
	le.PutUint32(zp[bpExtRamdiskSize:], uint32(b.InitrdSize>>32))
	zp[bpE820Entries] = uint8(len(b.E820))
	for i, e := range b.E820 {
		off := bpE820Table + i*e820EntrySize
		le.PutUint64(zp[off:], e.Addr)
		le.PutUint64(zp[off+8:], e.Size)
		le.PutUint32(zp[off+16:], e.Type)
	}
	return zp, nil
}

// WriteCmdline validates the command line (printable, no NUL, short enough for the kernel)
// and writes it NUL-terminated at CmdlineAddr.
func WriteCmdline(mem *guestmem.Memory, cmdline string, max int) error {
	if len(cmdline)+1 > max {
		return fmt.Errorf("command line: %d bytes, the kernel accepts at most %d", len(cmdline), max-1)
	}
	if i := strings.IndexFunc(cmdline, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fmt.Errorf("command line: control character %#x at byte %d", cmdline[i], i)
	}
	if _, err := mem.WriteAt(append([]byte(cmdline), 0), CmdlineAddr); err != nil {
		return fmt.Errorf("command line: %w", err)
	}
	return nil
}
