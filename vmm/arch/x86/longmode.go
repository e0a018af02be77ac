package x86

import (
	"encoding/binary"
	"fmt"

	"github.com/vmbench/runner/vmm/guestmem"
	"github.com/vmbench/runner/vmm/kvm"
)

// The boot GDT (at GDTAddr). Selectors: 0x08 code, 0x10 data, 0x18 TSS.
var bootGDT = [4]uint64{
	0,                     // null
	0x00af_9b00_0000_ffff, // 64-bit code: P, DPL 0, S, type 0xb (execute/read, accessed), L, G
	0x00cf_9300_0000_ffff, // data: P, DPL 0, S, type 0x3 (read/write, accessed), D/B, G
	0x008f_8b00_0000_ffff, // TSS: P, type 0xb (busy 64-bit TSS), G
}

const (
	selCode = 0x08
	selData = 0x10
	selTSS  = 0x18
)

// Control-register and EFER bits for entering long mode.
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10

	pteP  = 1 << 0
	pteRW = 1 << 1
	ptePS = 1 << 7 // 2 MiB page in a page directory
)

// WriteLongModeTables writes the GDT, an empty IDT and page tables that identity-map the
// first 4 GiB with 2 MiB pages (the kernel, zero page and command line must be mapped at
// entry; the MMIO hole is mapped too, so early code and the test guests can reach device
// registers and the local APIC).
func WriteLongModeTables(mem *guestmem.Memory) error {
	le := binary.LittleEndian
	gdt := make([]byte, 8*len(bootGDT))
	for i, e := range bootGDT {
		le.PutUint64(gdt[8*i:], e)
	}
	if _, err := mem.WriteAt(gdt, GDTAddr); err != nil {
		return fmt.Errorf("boot: GDT: %w", err)
	}
	if _, err := mem.WriteAt(make([]byte, 8), IDTAddr); err != nil {
		return fmt.Errorf("boot: IDT: %w", err)
	}
	const pds = identityMapped >> 30
	tables := make([]byte, (2+pds)*4096) // PML4, PDPT, PDs, contiguous from PML4Addr
	le.PutUint64(tables[0:], PDPTAddr|pteP|pteRW)
	for i := range uint64(pds) {
		le.PutUint64(tables[4096+8*i:], (PDAddr+i*4096)|pteP|pteRW)
		for j := range uint64(512) {
			le.PutUint64(tables[8192+4096*i+8*j:], (i<<30|j<<21)|pteP|pteRW|ptePS)
		}
	}
	if _, err := mem.WriteAt(tables, PML4Addr); err != nil {
		return fmt.Errorf("boot: page tables: %w", err)
	}
	return nil
}

// segmentFromGDT expands a GDT descriptor into the hidden segment state KVM wants.
func segmentFromGDT(d uint64, sel uint16) kvm.Segment {
	s := kvm.Segment{
		Base:     d>>16&0xff_ffff | d>>56&0xff<<24,
		Limit:    uint32(d&0xffff | d>>48&0xf<<16),
		Selector: sel,
		Type:     uint8(d >> 40 & 0xf),
		S:        uint8(d >> 44 & 1),
		DPL:      uint8(d >> 45 & 3),
		Present:  uint8(d >> 47 & 1),
		AVL:      uint8(d >> 52 & 1),
		L:        uint8(d >> 53 & 1),
		DB:       uint8(d >> 54 & 1),
		G:        uint8(d >> 55 & 1),
	}
	if s.G != 0 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	return s
}

// LongModeSregs returns s (the vCPU's current special registers) switched to 64-bit long
// mode with paging on the boot page tables, flat segments from the boot GDT and the empty
// IDT.
func LongModeSregs(s kvm.Sregs) kvm.Sregs {
	code := segmentFromGDT(bootGDT[1], selCode)
	data := segmentFromGDT(bootGDT[2], selData)
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = segmentFromGDT(bootGDT[3], selTSS)
	s.GDT = kvm.DTable{Base: GDTAddr, Limit: uint16(8*len(bootGDT) - 1)}
	s.IDT = kvm.DTable{Base: IDTAddr, Limit: 7}
	s.CR0 = cr0PE | cr0ET | cr0PG
	s.CR3 = PML4Addr
	s.CR4 = cr4PAE
	s.EFER = eferLME | eferLMA
	return s
}

// BootRegs returns the general registers for the 64-bit boot protocol: RIP at the kernel
// entry, RSI pointing at the zero page, a stack below the page tables, interrupts off.
func BootRegs(entry uint64) kvm.Regs {
	return kvm.Regs{RIP: entry, RSI: ZeroPageAddr, RSP: BootStackAddr, RBP: BootStackAddr, RFLAGS: 0x2}
}
