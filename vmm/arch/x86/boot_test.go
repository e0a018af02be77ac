package x86

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmbench/runner/vmm/guestmem"
	"github.com/vmbench/runner/vmm/kvm"
	"github.com/vmbench/runner/vmm/vmmtest"
)

func newMem(t testing.TB, size uint64) *guestmem.Memory {
	t.Helper()
	m, err := guestmem.New(size, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestBootParamsOffsetsAgainstHeader compiles a C program against <asm/bootparam.h> and
// compares every zero-page offset the package writes.
func TestBootParamsOffsetsAgainstHeader(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) to read the kernel headers with")
	}
	facts := map[string]int{
		"offsetof(struct boot_params, ext_ramdisk_image)":    bpExtRamdiskImage,
		"offsetof(struct boot_params, ext_ramdisk_size)":     bpExtRamdiskSize,
		"offsetof(struct boot_params, ext_cmd_line_ptr)":     bpExtCmdLinePtr,
		"offsetof(struct boot_params, e820_entries)":         bpE820Entries,
		"offsetof(struct boot_params, hdr)":                  setupHeaderOff,
		"offsetof(struct boot_params, hdr.setup_sects)":      setupSectsOff,
		"offsetof(struct boot_params, hdr.boot_flag)":        bpBootFlag,
		"offsetof(struct boot_params, hdr.jump)":             jumpOff,
		"offsetof(struct boot_params, hdr.header)":           bpHeader,
		"offsetof(struct boot_params, hdr.version)":          bpVersion,
		"offsetof(struct boot_params, hdr.type_of_loader)":   bpTypeOfLoader,
		"offsetof(struct boot_params, hdr.loadflags)":        bpLoadflags,
		"offsetof(struct boot_params, hdr.ramdisk_image)":    bpRamdiskImage,
		"offsetof(struct boot_params, hdr.ramdisk_size)":     bpRamdiskSize,
		"offsetof(struct boot_params, hdr.cmd_line_ptr)":     bpCmdLinePtr,
		"offsetof(struct boot_params, hdr.initrd_addr_max)":  initrdAddrMaxOff,
		"offsetof(struct boot_params, hdr.kernel_alignment)": bpKernelAlignment,
		"offsetof(struct boot_params, hdr.xloadflags)":       xloadflagsOff,
		"offsetof(struct boot_params, hdr.cmdline_size)":     bpCmdlineSize,
		"offsetof(struct boot_params, hdr.init_size)":        initSizeOff,
		"offsetof(struct boot_params, e820_table)":           bpE820Table,
		"sizeof(struct boot_e820_entry)":                     e820EntrySize,
		"sizeof(struct boot_params)":                         zeroPageSize,
		"E820_MAX_ENTRIES_ZEROPAGE":                          e820MaxEntriesZPage,
		"XLF_KERNEL_64":                                      xlfKernel64,
		"LOADED_HIGH":                                        loadflagLoadedHigh,
		"sizeof(((struct boot_params *)0)->e820_table) / 20": e820MaxEntriesZPage,
	}
	var src bytes.Buffer
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <asm/bootparam.h>\nint main(void) {\n")
	for expr := range facts {
		fmt.Fprintf(&src, "\tprintf(\"%%s\\t%%lu\\n\", %q, (unsigned long)(%s));\n", expr, expr)
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	c := filepath.Join(dir, "bp.c")
	if err := os.WriteFile(c, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-o", filepath.Join(dir, "bp"), c).CombinedOutput(); err != nil {
		if bytes.Contains(out, []byte("bootparam.h")) {
			t.Skipf("no <asm/bootparam.h> (Debian: linux-libc-dev): %s", out)
		}
		t.Fatalf("compile: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "bp")).Output()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	n := 0
	for sc.Scan() {
		name, val, _ := strings.Cut(sc.Text(), "\t")
		v, _ := strconv.Atoi(val)
		if facts[name] != v {
			t.Errorf("%s: Go %#x, header %#x", name, facts[name], v)
		}
		n++
	}
	if n != len(facts) {
		t.Fatalf("%d facts printed, want %d", n, len(facts))
	}
}

func TestE820Map(t *testing.T) {
	m := E820Map(newMem(t, 128<<20))
	want := []E820Entry{
		{0, 0x9fc00, E820RAM}, {0x9fc00, 0x400, E820Reserved}, {0xf0000, 0x10000, E820Reserved},
		{0x100000, 128<<20 - 0x100000, E820RAM},
	}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("128 MiB: %v", m)
	}
	big := E820Map(newMem(t, 4<<30)) // crosses the MMIO hole
	last := big[len(big)-1]
	if len(big) != 5 || big[3].Addr+big[3].Size != guestmem.MMIOHoleStart || last.Addr != 4<<30 || last.Size != 1<<30 {
		t.Errorf("4 GiB: %v", big)
	}
}

func TestZeroPage(t *testing.T) {
	bp := BootParams{CmdlineAddr: CmdlineAddr, CmdlineSize: 11, InitrdAddr: 0x7e1b000, InitrdSize: 0x1e4000,
		E820: E820Map(newMem(t, 128<<20))}
	zp, err := bp.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"boot_flag", uint64(le.Uint16(zp[0x1fe:])), 0xaa55},
		{"header", uint64(le.Uint32(zp[0x202:])), 0x53726448},
		{"type_of_loader", uint64(zp[0x210]), 0xff},
		{"ramdisk_image", uint64(le.Uint32(zp[0x218:])), 0x7e1b000},
		{"ramdisk_size", uint64(le.Uint32(zp[0x21c:])), 0x1e4000},
		{"cmd_line_ptr", uint64(le.Uint32(zp[0x228:])), 0x20000},
		{"cmdline_size", uint64(le.Uint32(zp[0x238:])), 11},
		{"e820_entries", uint64(zp[0x1e8]), 4},
		{"e820[3].addr", le.Uint64(zp[0x2d0+3*20:]), 0x100000},
		{"e820[1].type", uint64(le.Uint32(zp[0x2d0+20+16:])), E820Reserved},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	bp.E820 = make([]E820Entry, 129)
	if _, err := bp.Marshal(); err == nil {
		t.Error("129 e820 entries accepted")
	}
}

func TestCmdline(t *testing.T) {
	m := newMem(t, 2<<20)
	if err := WriteCmdline(m, "console=ttyS0 reboot=t", CmdlineMax); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 23)
	m.ReadAt(got, CmdlineAddr)
	if string(got) != "console=ttyS0 reboot=t\x00" {
		t.Errorf("cmdline in memory %q", got)
	}
	if err := WriteCmdline(m, strings.Repeat("x", CmdlineMax), CmdlineMax); err == nil {
		t.Error("over-long command line accepted")
	}
	if err := WriteCmdline(m, "a\nb", CmdlineMax); err == nil {
		t.Error("newline accepted")
	}
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadELF(t *testing.T) {
	m := newMem(t, 32<<20)
	img := vmmtest.ELF(vmmtest.KernelEntry+4,
		vmmtest.Segment{Paddr: vmmtest.KernelEntry, Data: []byte{1, 2, 3, 4, 5, 6}, MemSize: 0x3000},
		vmmtest.Segment{Paddr: 0x180_0000, Vaddr: 0, Data: []byte{7}}) // per-CPU-like: loaded by paddr
	k, err := LoadKernelFile(m, writeFile(t, img))
	if err != nil {
		t.Fatal(err)
	}
	if k.Format != FormatELF || k.Entry != vmmtest.KernelEntry+4 || k.Start != vmmtest.KernelEntry || k.End != 0x180_0001 || k.Setup != nil {
		t.Errorf("kernel %+v", k)
	}
	b := make([]byte, 6)
	m.ReadAt(b, vmmtest.KernelEntry)
	if !bytes.Equal(b, []byte{1, 2, 3, 4, 5, 6}) {
		t.Errorf("segment 0 in memory: %x", b)
	}
	if v, _ := m.Uint16(0x180_0000); v != 7 {
		t.Errorf("segment 1 in memory: %#x", v)
	}
}

func TestLoadELFRejects(t *testing.T) {
	m := newMem(t, 32<<20)
	seg := func(paddr uint64, mem uint64) vmmtest.Segment {
		return vmmtest.Segment{Paddr: paddr, Data: []byte{0x90}, MemSize: mem}
	}
	for name, img := range map[string][]byte{
		"entry outside":   vmmtest.ELF(0x300_0000, seg(vmmtest.KernelEntry, 0)),
		"below 1 MiB":     vmmtest.ELF(0x7000, seg(0x7000, 0)),
		"beyond RAM":      vmmtest.ELF(vmmtest.KernelEntry, seg(vmmtest.KernelEntry, 64<<20)),
		"wraps":           vmmtest.ELF(vmmtest.KernelEntry, seg(^uint64(0)-1, 16)),
		"no segments":     vmmtest.ELF(vmmtest.KernelEntry),
		"truncated":       vmmtest.ELF(vmmtest.KernelEntry, seg(vmmtest.KernelEntry, 0))[:100],
		"not a kernel":    []byte("#!/bin/sh\necho hello\n"),
		"32-bit ELF":      append([]byte("\x7fELF\x01\x01\x01"), make([]byte, 60)...),
		"filesz > memsz?": patchFilesz(vmmtest.ELF(vmmtest.KernelEntry, seg(vmmtest.KernelEntry, 0)), 0x10000),
	} {
		if _, err := LoadKernelFile(m, writeFile(t, img)); !errors.Is(err, ErrBadKernel) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// patchFilesz overwrites the first program header's p_filesz.
func patchFilesz(img []byte, v uint64) []byte {
	binary.LittleEndian.PutUint64(img[64+32:], v)
	return img
}

// bzImage builds a synthetic bzImage: setup_sects 1, a 64-bit capable 2.15 header and pm as
// the protected-mode code.
func bzImage(pm []byte, initSize uint32) []byte {
	img := make([]byte, 1024)
	le := binary.LittleEndian
	img[setupSectsOff] = 1
	le.PutUint16(img[bootFlagOff:], bootFlagMagic)
	img[jumpOff], img[jumpOff+1] = 0xeb, 0x66
	copy(img[setupHeaderMagicOff:], "HdrS")
	le.PutUint16(img[versionOff:], 0x020f)
	img[loadflagsOff] = loadflagLoadedHigh
	le.PutUint32(img[initrdAddrMaxOff:], 0x7fff_ffff)
	le.PutUint16(img[xloadflagsOff:], xlfKernel64)
	le.PutUint32(img[cmdlineSizeOff:], 255)
	le.PutUint32(img[initSizeOff:], initSize)
	return append(img, pm...)
}

func TestLoadBzImage(t *testing.T) {
	m := newMem(t, 32<<20)
	pm := bytes.Repeat([]byte{0xf4}, 0x400)
	k, err := LoadKernelFile(m, writeFile(t, bzImage(pm, 0x20_0000)))
	if err != nil {
		t.Fatal(err)
	}
	if k.Format != FormatBzImage || k.Entry != 0x10_0200 || k.End != 0x30_0000 || k.CmdlineMax != 256 || k.InitrdAddrMax != 0x7fff_ffff {
		t.Errorf("kernel %+v", k)
	}
	if len(k.Setup) != 0x268-0x1f1 || string(k.Setup[0x202-0x1f1:][:4]) != "HdrS" {
		t.Errorf("setup header %d bytes", len(k.Setup))
	}
	got := make([]byte, len(pm))
	m.ReadAt(got, HighMemStart)
	if !bytes.Equal(got, pm) {
		t.Error("protected-mode code not at 1 MiB")
	}
	// The zero page carries the kernel's own setup header.
	zp, err := (&BootParams{Setup: k.Setup}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if le := binary.LittleEndian; le.Uint16(zp[bpVersion:]) != 0x020f || zp[bpTypeOfLoader] != 0xff {
		t.Errorf("zero page version %#x loader %#x", le.Uint16(zp[bpVersion:]), zp[bpTypeOfLoader])
	}

	bad := map[string][]byte{
		"init_size beyond RAM": bzImage(pm, 64<<20),
		"no 64-bit entry": func() []byte {
			b := bzImage(pm, 0x1000)
			b[xloadflagsOff] = 0
			return b
		}(),
		"old protocol": func() []byte {
			b := bzImage(pm, 0x1000)
			binary.LittleEndian.PutUint16(b[versionOff:], 0x0204)
			return b
		}(),
		"no code": bzImage(nil, 0x1000),
	}
	for name, img := range bad {
		if _, err := LoadKernelFile(m, writeFile(t, img)); !errors.Is(err, ErrBadKernel) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestInitrdPlacement(t *testing.T) {
	m := newMem(t, 128<<20)
	k := &Kernel{End: 0x1e2_8000, InitrdAddrMax: guestmem.MMIOHoleStart - 1}
	// The spike's numbers: a 128 MiB guest puts a 0x1e4_000-byte initrd at 0x7e1b000.
	addr, err := InitrdAddr(m, k, 0x1e4_e00)
	if err != nil || addr != 0x7e1_b000 {
		t.Errorf("addr %#x, %v", addr, err)
	}
	if _, err := InitrdAddr(m, k, 120<<20); err == nil {
		t.Error("initrd overlapping the kernel accepted")
	}
	k.InitrdAddrMax = 0x3fff_ffff
	big := newMem(t, 2<<30)
	if addr, _ := InitrdAddr(big, k, 4096); addr != 0x3fff_f000 {
		t.Errorf("initrd_addr_max not honoured: %#x", addr)
	}
}

// walk translates a linear address through the boot page tables in guest memory.
func walk(t *testing.T, m *guestmem.Memory, va uint64) uint64 {
	t.Helper()
	pml4e, _ := m.Uint64(PML4Addr + 8*(va>>39&511))
	pdpte, _ := m.Uint64(pml4e&^0xfff + 8*(va>>30&511))
	pde, _ := m.Uint64(pdpte&^0xfff + 8*(va>>21&511))
	if pml4e&1 == 0 || pdpte&1 == 0 || pde&1 == 0 || pde&ptePS == 0 {
		t.Fatalf("%#x not mapped: %#x %#x %#x", va, pml4e, pdpte, pde)
	}
	return pde&^0x1f_ffff | va&0x1f_ffff
}

func TestLongModeTables(t *testing.T) {
	m := newMem(t, 64<<20)
	if err := WriteLongModeTables(m); err != nil {
		t.Fatal(err)
	}
	for _, va := range []uint64{0, ZeroPageAddr, 0x100_0000, 0x3fff_ffff, 0xc000_0000, 0xfee0_0300, 0xffff_ffff} {
		if pa := walk(t, m, va); pa != va {
			t.Errorf("%#x maps to %#x", va, pa)
		}
	}
	s := LongModeSregs(kvm.Sregs{})
	if s.CS.L != 1 || s.CS.DB != 0 || s.CS.Limit != 0xffff_ffff || s.CS.Type != 0xb || s.CS.Selector != 8 || s.CS.Present != 1 {
		t.Errorf("CS %+v", s.CS)
	}
	if s.SS.DB != 1 || s.SS.Type != 3 || s.SS.Selector != 0x10 || s.TR.Type != 0xb || s.TR.S != 0 {
		t.Errorf("SS %+v TR %+v", s.SS, s.TR)
	}
	if s.CR0 != 0x8000_0011 || s.CR4 != 0x20 || s.EFER != 0x500 || s.CR3 != PML4Addr || s.GDT.Limit != 31 || s.IDT.Limit != 7 {
		t.Errorf("CR0 %#x CR4 %#x EFER %#x CR3 %#x GDT %+v IDT %+v", s.CR0, s.CR4, s.EFER, s.CR3, s.GDT, s.IDT)
	}
	r := BootRegs(0x100_0000)
	if r.RIP != 0x100_0000 || r.RSI != ZeroPageAddr || r.RSP != BootStackAddr || r.RFLAGS != 2 {
		t.Errorf("regs %+v", r)
	}
}

func TestMPTable(t *testing.T) {
	for _, n := range []int{1, 2, 4, 32, MaxVCPUs} {
		b, err := MPTable(n, 0xf61, 0x0781_abfd)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MPTableSize {
			t.Fatalf("%d vCPUs: %d bytes exceed the reserved area", n, len(b))
		}
		if string(b[:4]) != "_MP_" || checksum(b[:16]) != 0 {
			t.Errorf("%d: floating pointer %x", n, b[:16])
		}
		tbl := b[16:]
		le := binary.LittleEndian
		if string(tbl[:4]) != "PCMP" || int(le.Uint16(tbl[4:])) != len(tbl) || checksum(tbl) != 0 {
			t.Errorf("%d: table header", n)
		}
		if got := int(le.Uint16(tbl[34:])); got != n+2+ioapicPins+2 {
			t.Errorf("%d vCPUs: %d entries", n, got)
		}
		// Processor entries: APIC IDs 0..n-1, BSP flag on the first only.
		for i := range n {
			e := tbl[mpcHeaderSize+i*mpcCPUSize:]
			wantFlags := byte(1)
			if i == 0 {
				wantFlags = 3
			}
			if e[0] != mpEntryCPU || int(e[1]) != i || e[3] != wantFlags || le.Uint32(e[4:]) != 0xf61 {
				t.Errorf("cpu entry %d: %x", i, e[:20])
			}
		}
	}
	if _, err := MPTable(MaxVCPUs+1, 0, 0); err == nil {
		t.Error("too many vCPUs accepted")
	}
}
