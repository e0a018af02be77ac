package kvm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/vmm/guestmem"
	"github.com/vmbench/runner/vmm/kvm"
	"github.com/vmbench/runner/vmm/vmmtest"
)

func openKVM(t *testing.T) *kvm.System {
	t.Helper()
	if _, err := os.Stat(kvm.DefaultPath); errors.Is(err, os.ErrNotExist) {
		t.Skip("/dev/kvm absent: level-2 tests need KVM")
	}
	s, err := kvm.Open("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenErrors(t *testing.T) {
	_, err := kvm.Open(filepath.Join(t.TempDir(), "no-such-kvm"))
	if !errors.Is(err, kvm.ErrNoDevice) || !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing device: %v", err)
	}
	// A device that is not KVM: the API-version ioctl fails.
	if _, err := kvm.Open("/dev/null"); err == nil || !errors.Is(err, unix.ENOTTY) {
		t.Errorf("/dev/null: %v", err)
	}
	if os.Geteuid() != 0 {
		// Only meaningful without root (root bypasses file permissions).
		p := filepath.Join(t.TempDir(), "kvm")
		if err := os.WriteFile(p, nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := kvm.Open(p); !errors.Is(err, kvm.ErrPermission) {
			t.Errorf("unreadable device: %v", err)
		}
	}
}

func TestCapabilitiesAndCPUID(t *testing.T) {
	s := openKVM(t)
	if err := s.RequireExtensions(kvm.CapIRQChip, kvm.CapUserMemory, kvm.CapSetTSSAddr, kvm.CapPIT2,
		kvm.CapIRQFD, kvm.CapIOEventFD, kvm.CapImmediateExit, kvm.CapExtCPUID); err != nil {
		t.Fatal(err)
	}
	if err := s.RequireExtensions(kvm.Cap(100000)); !errors.Is(err, kvm.ErrMissingCap) {
		t.Errorf("bogus capability: %v", err)
	}
	entries, err := s.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	var sawKVM bool
	for _, e := range entries {
		if e.Function == 0x4000_0000 {
			var sig [12]byte
			binary.LittleEndian.PutUint32(sig[0:], e.EBX)
			binary.LittleEndian.PutUint32(sig[4:], e.ECX)
			binary.LittleEndian.PutUint32(sig[8:], e.EDX)
			sawKVM = string(sig[:9]) == "KVMKVMKVM"
		}
	}
	if len(entries) < 10 || !sawKVM {
		t.Errorf("KVM_GET_SUPPORTED_CPUID: %d entries, KVM signature leaf present: %v", len(entries), sawKVM)
	}
	msrs, err := s.MSRIndexList()
	if err != nil || len(msrs) == 0 {
		t.Errorf("MSR index list: %d, %v", len(msrs), err)
	}
}

// newVM makes a VM with size bytes of RAM of which the first slotSize bytes are a memslot.
func newVM(t *testing.T, s *kvm.System, slotSize uint64) (*kvm.VM, *guestmem.Memory) {
	t.Helper()
	vm, err := s.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	mem, err := guestmem.New(1<<20, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	r := mem.Regions()[0]
	if err := vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
		Slot: 0, GuestPhysAddr: 0, MemorySize: slotSize, UserspaceAddr: uint64(r.HostAddr()),
	}); err != nil {
		t.Fatal(err)
	}
	return vm, mem
}

// realModeVCPU creates vCPU 0 in real mode with CS base 0 and IP at code (loaded at 0x1000).
func realModeVCPU(t *testing.T, vm *kvm.VM, mem *guestmem.Memory, code []byte) *kvm.VCPU {
	t.Helper()
	if _, err := mem.WriteAt(code, 0x1000); err != nil {
		t.Fatal(err)
	}
	c, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sregs, err := c.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	if err := c.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRegs(kvm.Regs{RIP: 0x1000, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRealModeGuest runs 16-bit code and checks each exit it makes: port write, MMIO write,
// MMIO read (value supplied by the test and echoed back by the guest), HLT.
func TestRealModeGuest(t *testing.T) {
	s := openKVM(t)
	vm, mem := newVM(t, s, 0x10000) // GPA 0x20000 is outside the slot: MMIO
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c := realModeVCPU(t, vm, mem, vmmtest.RealModeIO)
	run := c.Run()

	next := func(want kvm.ExitReason) {
		t.Helper()
		if err := c.RunOnce(); err != nil {
			t.Fatal(err)
		}
		if got := run.ExitReason(); got != want {
			regs, _ := c.Regs()
			t.Fatalf("exit %v, want %v (RIP %#x)", got, want, regs.RIP)
		}
	}
	next(kvm.ExitIO)
	io, err := run.IO()
	if err != nil {
		t.Fatal(err)
	}
	if io.Direction != kvm.IODirectionOut || io.Port != 0x3f8 || io.Size != 1 || io.Count != 1 || !bytes.Equal(io.Data, []byte("A")) {
		t.Fatalf("io exit %+v", io)
	}
	next(kvm.ExitMMIO)
	m, err := run.MMIO()
	if err != nil {
		t.Fatal(err)
	}
	if !m.IsWrite || m.PhysAddr != 0x20000 || !bytes.Equal(m.Data, []byte{0x5a}) {
		t.Fatalf("mmio write exit %+v", m)
	}
	next(kvm.ExitMMIO)
	if m, err = run.MMIO(); err != nil {
		t.Fatal(err)
	}
	if m.IsWrite || m.PhysAddr != 0x20004 || len(m.Data) != 2 {
		t.Fatalf("mmio read exit %+v", m)
	}
	binary.LittleEndian.PutUint16(m.Data, 0xbeef)
	next(kvm.ExitIO)
	if io, err = run.IO(); err != nil {
		t.Fatal(err)
	}
	if io.Port != 0x10 || io.Size != 2 || binary.LittleEndian.Uint16(io.Data) != 0xbeef {
		t.Fatalf("echo io exit %+v", io)
	}
	next(kvm.ExitHLT)
	regs, err := c.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(0x1000 + len(vmmtest.RealModeIO)); regs.RIP != want {
		t.Errorf("RIP after HLT %#x, want %#x", regs.RIP, want)
	}
	if gpa, ok, err := c.Translate(0x1234); err != nil || !ok || gpa != 0x1234 {
		t.Errorf("real-mode translate: %#x %v %v", gpa, ok, err)
	}
}

// TestImmediateExit: with immediate_exit set KVM_RUN returns EINTR without running the
// guest; cleared, the guest runs.
func TestImmediateExit(t *testing.T) {
	s := openKVM(t)
	vm, mem := newVM(t, s, 0x10000)
	c := realModeVCPU(t, vm, mem, vmmtest.RealModeIO)
	c.Run().SetImmediateExit(true)
	if !c.Run().ImmediateExit() {
		t.Fatal("immediate_exit not set")
	}
	if err := c.RunOnce(); !errors.Is(err, unix.EINTR) {
		t.Fatalf("KVM_RUN with immediate_exit: %v", err)
	}
	if regs, _ := c.Regs(); regs.RIP != 0x1000 {
		t.Fatalf("guest ran: RIP %#x", regs.RIP)
	}
	c.Run().SetImmediateExit(false)
	if err := c.RunOnce(); err != nil || c.Run().ExitReason() != kvm.ExitIO {
		t.Fatalf("after clearing: %v %v", err, c.Run().ExitReason())
	}
}

// TestIOEventFD: a guest port write that matches an ioeventfd signals the eventfd instead
// of exiting; the next exit is the following instruction's.
func TestIOEventFD(t *testing.T) {
	s := openKVM(t)
	vm, mem := newVM(t, s, 0x10000)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	match := uint64(0x41)
	spec := kvm.IOEventFDSpec{Addr: 0x3f8, Len: 1, PIO: true, Datamatch: &match}
	if err := vm.RegisterIOEventFD(efd, spec); err != nil {
		t.Fatal(err)
	}
	c := realModeVCPU(t, vm, mem, vmmtest.RealModeIO)
	if err := c.RunOnce(); err != nil {
		t.Fatal(err)
	}
	if got := c.Run().ExitReason(); got != kvm.ExitMMIO {
		t.Fatalf("first exit %v, want the MMIO write (the port write went to the eventfd)", got)
	}
	var buf [8]byte
	if n, err := unix.Read(efd, buf[:]); err != nil || n != 8 || binary.LittleEndian.Uint64(buf[:]) != 1 {
		t.Fatalf("eventfd: n=%d %v %x", n, err, buf)
	}
	if err := vm.UnregisterIOEventFD(efd, spec); err != nil {
		t.Fatal(err)
	}
}

func TestIRQChipAndState(t *testing.T) {
	s := openKVM(t)
	vm, _ := newVM(t, s, 0x10000)
	if err := vm.SetTSSAddr(0xfffb_d000); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreatePIT2(0); err != nil {
		t.Fatal(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := vm.RegisterIRQFD(efd, 5); err != nil {
		t.Fatal(err)
	}
	if err := vm.UnregisterIRQFD(efd, 5); err != nil {
		t.Fatal(err)
	}
	if err := vm.IRQLine(4, true); err != nil {
		t.Fatal(err)
	}
	if err := vm.IRQLine(4, false); err != nil {
		t.Fatal(err)
	}
	bsp, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer bsp.Close()
	ap, err := vm.CreateVCPU(1)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	if st, err := bsp.MPState(); err != nil || st != kvm.MPStateRunnable {
		t.Errorf("BSP mp_state %d %v", st, err)
	}
	if st, err := ap.MPState(); err != nil || st != kvm.MPStateUninitialized {
		t.Errorf("AP mp_state %d %v (want waiting for INIT)", st, err)
	}
	lapic, err := ap.LAPIC()
	if err != nil {
		t.Fatal(err)
	}
	if id := lapic.Regs[0x23]; id != 1 { // APIC ID register (0x20), bits 31:24
		t.Errorf("AP local APIC ID %d", id)
	}
	// Register round trips.
	want := kvm.Regs{RAX: 1, RBX: 2, R15: 15, RIP: 0xfff0, RFLAGS: 0x202}
	if err := bsp.SetRegs(want); err != nil {
		t.Fatal(err)
	}
	if got, err := bsp.Regs(); err != nil || got != want {
		t.Errorf("regs round trip: %+v %v", got, err)
	}
	fpu, err := bsp.FPU()
	if err != nil {
		t.Fatal(err)
	}
	fpu.XMM[3][0] = 0x42
	fpu.MXCSR = 0x1f80
	if err := bsp.SetFPU(fpu); err != nil {
		t.Fatal(err)
	}
	if got, err := bsp.FPU(); err != nil || got.XMM[3][0] != 0x42 {
		t.Errorf("fpu round trip: %v", err)
	}
	const msrKernelGSBase = 0xc000_0102
	if err := bsp.SetMSRs([]kvm.MSREntry{{Index: msrKernelGSBase, Data: 0xffff_8000_1234_0000}}); err != nil {
		t.Fatal(err)
	}
	if got, err := bsp.MSRs(msrKernelGSBase); err != nil || got[0].Data != 0xffff_8000_1234_0000 {
		t.Errorf("MSR round trip: %+v %v", got, err)
	}
	if err := bsp.SetMSRs([]kvm.MSREntry{{Index: 0xdead_beef}}); err == nil {
		t.Error("bogus MSR accepted")
	}
	cpuid, err := s.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := bsp.SetCPUID2(cpuid); err != nil {
		t.Fatal(err)
	}
	if got, err := bsp.CPUID2(); err != nil || len(got) != len(cpuid) {
		t.Errorf("cpuid round trip: %d entries, %v", len(got), err)
	}
}

// TestClosedFDs: every level's calls fail with EBADF once closed, and Close is idempotent.
func TestClosedFDs(t *testing.T) {
	s := openKVM(t)
	vm, err := s.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	c, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, closer := range []interface{ Close() error }{c, vm, s} {
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
		if err := closer.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	}
	calls := map[string]error{}
	_, calls["CheckExtension"] = s.CheckExtension(kvm.CapIRQChip)
	_, calls["SupportedCPUID"] = s.SupportedCPUID()
	_, calls["CreateVM"] = s.CreateVM()
	calls["CreateIRQChip"] = vm.CreateIRQChip()
	calls["IRQLine"] = vm.IRQLine(4, true)
	_, calls["CreateVCPU"] = vm.CreateVCPU(1)
	calls["RunOnce"] = c.RunOnce()
	_, calls["Regs"] = c.Regs()
	calls["SetSregs"] = c.SetSregs(kvm.Sregs{})
	calls["SetCPUID2"] = c.SetCPUID2(nil)
	for name, err := range calls {
		if !errors.Is(err, unix.EBADF) {
			t.Errorf("%s on closed fd: %v", name, err)
		}
	}
}
