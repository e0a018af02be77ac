package vmm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/internal/syncbuf"
	"github.com/vmbench/runner/vmm"
	"github.com/vmbench/runner/vmm/arch/x86"
	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/blk"
	"github.com/vmbench/runner/vmm/kvm"
	"github.com/vmbench/runner/vmm/vmmtest"
)

// console is a concurrency-safe console sink the test watches as the guest writes.
type console struct{ syncbuf.Buffer }

// waitFor polls until the console contains s (the guest got that far).
func (c *console) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("console never showed %q; got %q", s, c.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func requireKVM(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(kvm.DefaultPath); errors.Is(err, os.ErrNotExist) {
		t.Skip("/dev/kvm absent: these tests run guest code under KVM")
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newMachine boots code (entered in long mode at 16 MiB by the VMM's boot path).
func newMachine(t testing.TB, cfg vmm.Config, code []byte, extra ...vmmtest.Segment) (*vmm.Machine, *console) {
	t.Helper()
	requireKVM(t)
	k, err := vmmtest.WriteKernel(t.TempDir(), code, extra...)
	if err != nil {
		t.Fatal(err)
	}
	out := &console{}
	cfg.Kernel = k
	if cfg.Console == nil {
		cfg.Console = out
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	m, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, out
}

func run(t *testing.T, m *vmm.Machine) (vmm.Exit, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return m.Run(ctx)
}

// TestLongModeGuestDevices: our boot code enters the guest in long mode; the guest writes
// the UART (PIO exits), stamps the boot timer and reads unclaimed MMIO (MMIO exits), and
// resets through the i8042.
func TestLongModeGuestDevices(t *testing.T) {
	m, out := newMachine(t, vmm.Config{}, vmmtest.LongDevices)
	exit, err := run(t, m)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Reason != vmm.ExitReset || exit.VCPU != 0 || !exit.Normal() {
		t.Fatalf("exit %+v", exit)
	}
	m.Close() // flushes the console
	if got, want := out.String(), "hello from long mode\nFF\n"; got != want {
		t.Errorf("console %q, want %q", got, want)
	}
	if bt, ok := m.BootTime(); !ok || bt <= 0 || bt > exit.Duration {
		t.Errorf("boot time %v %v (run %v)", bt, ok, exit.Duration)
	}
	if exit.IOExits < 24 || exit.MMIOExits != 2 {
		t.Errorf("exits: io %d mmio %d", exit.IOExits, exit.MMIOExits)
	}
	if fr, ok := m.FirstRunTime(); !ok || fr < m.SetupTime() {
		t.Errorf("first KVM_RUN at %v, setup %v", fr, m.SetupTime())
	}
	t.Logf("setup %v, first KVM_RUN %v after New started, run %v", m.SetupTime(), must(m.FirstRunTime()), exit.Duration)
}

// TestBzImageGuest boots the same long-mode guest packaged as a bzImage: loaded at 1 MiB,
// entered at the 64-bit entry point (+0x200) with RSI at a zero page that carries the
// image's setup header.
func TestBzImageGuest(t *testing.T) {
	requireKVM(t)
	k, err := vmmtest.WriteBzImage(t.TempDir(), vmmtest.LongDevices)
	if err != nil {
		t.Fatal(err)
	}
	out := &console{}
	m, err := vmm.New(vmm.Config{Kernel: k, MemoryMiB: 32, Console: out, Cmdline: "console=ttyS0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	exit, err := run(t, m)
	if err != nil || exit.Reason != vmm.ExitReset {
		t.Fatalf("%+v %v", exit, err)
	}
	zp := make([]byte, 4096)
	m.GuestMemory().ReadAt(zp, x86.ZeroPageAddr)
	if string(zp[0x202:0x206]) != "HdrS" || zp[0x206] != 0x0f || zp[0x210] != 0xff || zp[0x228] != 0x00 || zp[0x22a] != 0x02 {
		t.Errorf("zero page header: magic %q version %#x loader %#x cmd_line_ptr %x", zp[0x202:0x206], zp[0x206], zp[0x210], zp[0x228:0x22c])
	}
	m.Close()
	if !strings.HasPrefix(out.String(), "hello from long mode\n") {
		t.Errorf("console %q", out.String())
	}
}

func must[T any](v T, _ bool) T { return v }

func TestTripleFault(t *testing.T) {
	m, out := newMachine(t, vmm.Config{}, vmmtest.TripleFault)
	exit, err := run(t, m)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Reason != vmm.ExitShutdown || !exit.Normal() {
		t.Fatalf("exit %+v", exit)
	}
	// RIP is at the UD2 (entry + 7 bytes of preamble).
	if exit.RIP != vmmtest.KernelEntry+7 {
		t.Errorf("RIP %#x", exit.RIP)
	}
	m.Close()
	if out.String() != "!" {
		t.Errorf("console %q", out.String())
	}
}

// TestInternalError: INT3 with an empty IDT. On kvm_pvm the emulator cannot execute it
// (KVM_EXIT_INTERNAL_ERROR with the instruction bytes); on hardware KVM it triple-faults.
func TestInternalError(t *testing.T) {
	m, _ := newMachine(t, vmm.Config{}, vmmtest.Int3)
	exit, err := run(t, m)
	if !kvm.IsPVM() {
		if err != nil || exit.Reason != vmm.ExitShutdown {
			t.Fatalf("hardware KVM: %+v %v", exit, err)
		}
		return
	}
	var ie *vmm.InternalError
	if !errors.As(err, &ie) {
		t.Fatalf("kvm_pvm: want *InternalError, got %+v %v", exit, err)
	}
	if exit.Reason != vmm.ExitError || ie.RIP != vmmtest.KernelEntry+7 || len(ie.Code) == 0 || ie.Code[0] != 0xcc || ie.Suberror != kvm.InternalErrorEmulation {
		t.Fatalf("exit %+v, error %+v", exit, ie)
	}
	if !strings.Contains(err.Error(), "code cc90909090") {
		t.Errorf("message %q lacks the instruction bytes", err)
	}
}

// stopAfter runs m, waits for marker on the console, stops it with stop and returns how
// long Run took to return after the stop.
func stopAfter(t *testing.T, m *vmm.Machine, out *console, marker string, stop func()) (vmm.Exit, time.Duration) {
	t.Helper()
	type result struct {
		exit vmm.Exit
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		e, err := m.Run(context.Background())
		done <- result{e, err, time.Now()}
	}()
	out.waitFor(t, marker)
	time.Sleep(20 * time.Millisecond) // well inside the loop
	stopped := time.Now()
	stop()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.exit, r.at.Sub(stopped)
	case <-time.After(5 * time.Second): // a hang guard, not a performance assertion
		t.Fatal("Run did not return after Stop")
	}
	return vmm.Exit{}, 0
}

// TestStopSpinningGuest: a guest spinning in (emulated, on kvm_pvm) kernel code forever is
// ended by Stop from another goroutine. Latency is logged; BenchmarkStopLatency measures it.
func TestStopSpinningGuest(t *testing.T) {
	m, out := newMachine(t, vmm.Config{VCPUs: 2}, vmmtest.Spin)
	exit, lat := stopAfter(t, m, out, "S", m.Stop)
	if exit.Reason != vmm.ExitStopped || exit.Normal() {
		t.Fatalf("exit %+v", exit)
	}
	t.Logf("Stop to Run returning: %v", lat)
}

// TestStopHaltedGuest: HLT with interrupts off stays inside KVM (in-kernel irqchip); Stop
// still ends it.
func TestStopHaltedGuest(t *testing.T) {
	m, out := newMachine(t, vmm.Config{}, vmmtest.Halt)
	exit, lat := stopAfter(t, m, out, "H", m.Stop)
	if exit.Reason != vmm.ExitStopped {
		t.Fatalf("exit %+v", exit)
	}
	t.Logf("Stop to Run returning: %v", lat)
}

func TestContextEndsRun(t *testing.T) {
	m, _ := newMachine(t, vmm.Config{}, vmmtest.Spin)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	exit, err := m.Run(ctx)
	if err != nil || exit.Reason != vmm.ExitStopped || exit.VCPU != -1 {
		t.Fatalf("%+v %v", exit, err)
	}
	if _, err := m.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

// TestSMP: the BSP wakes the APs with INIT/SIPI through the in-kernel local APIC; each AP
// starts in real mode at 0x10000 and reports its APIC ID from CPUID, which the VMM's CPUID
// table sets per vCPU.
func TestSMP(t *testing.T) {
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("%dvcpus", n), func(t *testing.T) {
			m, out := newMachine(t, vmm.Config{VCPUs: n}, vmmtest.SMPBSP)
			// The AP code goes below 1 MiB, where the kernel loader (rightly) refuses to load.
			if _, err := m.GuestMemory().WriteAt(vmmtest.SMPAP, vmmtest.APStartAddr); err != nil {
				t.Fatal(err)
			}
			exit, err := run(t, m)
			if err != nil {
				t.Fatal(err)
			}
			if exit.Reason != vmm.ExitReset || exit.VCPU != 0 {
				t.Fatalf("exit %+v", exit)
			}
			m.Close()
			got := out.String()
			if !strings.HasSuffix(got, "ok\n") {
				t.Fatalf("console %q", got)
			}
			ids := strings.TrimSuffix(got, "ok\n")
			if len(ids) != n-1 {
				t.Fatalf("%d AP reports %q, want %d", len(ids), ids, n-1)
			}
			for id := 1; id < n; id++ {
				if strings.Count(ids, string(rune('0'+id))) != 1 {
					t.Errorf("APIC ID %d reported %d times (%q)", id, strings.Count(ids, string(rune('0'+id))), ids)
				}
			}
		})
	}
}

// TestVirtioWiring attaches a real virtio-blk device and lets the guest read the
// transport's identification registers at the first virtio-mmio window; the command line
// carries the device's announcement.
func TestVirtioWiring(t *testing.T) {
	requireKVM(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	disk, err := blk.New(blk.Config{Path: img, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m, out := newMachine(t, vmm.Config{Cmdline: "console=ttyS0", Devices: []virtio.Device{disk}}, vmmtest.VirtioProbe)
	exit, err := run(t, m)
	if err != nil || exit.Reason != vmm.ExitReset {
		t.Fatalf("%+v %v", exit, err)
	}
	cmdline := make([]byte, 64)
	m.GuestMemory().ReadAt(cmdline, x86.CmdlineAddr)
	if want := "console=ttyS0 virtio_mmio.device=4K@0xc0001000:5\x00"; !bytes.HasPrefix(cmdline, []byte(want)) {
		t.Errorf("command line %q", cmdline)
	}
	m.Close()
	if got, want := out.String(), "74726976 00000002 00000002\n"; got != want {
		t.Errorf("guest read %q, want %q (magic, version 2, device ID 2 = block)", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	requireKVM(t)
	k, err := vmmtest.WriteKernel(t.TempDir(), vmmtest.Halt)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]vmm.Config{
		"small memory":  {Kernel: k, MemoryMiB: 8},
		"too many cpus": {Kernel: k, VCPUs: 33},
		"template":      {Kernel: k, CPUTemplate: "fastest"},
		"no kernel":     {},
		"missing file":  {Kernel: filepath.Join(t.TempDir(), "nope")},
		"bad kvm path":  {Kernel: k, KVMPath: filepath.Join(t.TempDir(), "kvm")},
		"bad initrd":    {Kernel: k, Initrd: filepath.Join(t.TempDir(), "nope")},
		"nil device":    {Kernel: k, Devices: []virtio.Device{nil}},
		"long cmdline":  {Kernel: k, Cmdline: strings.Repeat("a", 4096)},
	} {
		fds := openFDs(t)
		m, err := vmm.New(c)
		if err == nil {
			m.Close()
			t.Errorf("%s: accepted", name)
			continue
		}
		if after := openFDs(t); after != fds {
			t.Errorf("%s: %d fds open before, %d after the failed New", name, fds, after)
		}
	}
	if _, err := vmm.New(vmm.Config{Kernel: k, MemoryMiB: 8}); err == nil || !strings.Contains(err.Error(), "at least 16 MiB") {
		t.Errorf("small memory message: %v", err)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestCloseReleasesEverything: after Close, the process has the same open files as before
// New, on the normal path and on the stop path.
func TestCloseReleasesEverything(t *testing.T) {
	requireKVM(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, code := range [][]byte{vmmtest.LongDevices, vmmtest.Spin} {
		before, goroutines := openFDs(t), runtime.NumGoroutine()
		k, err := vmmtest.WriteKernel(t.TempDir(), code)
		if err != nil {
			t.Fatal(err)
		}
		// A virtio device brings an irqfd, ioeventfds and their forwarding goroutines.
		disk, err := blk.New(blk.Config{Path: img})
		if err != nil {
			t.Fatal(err)
		}
		m, err := vmm.New(vmm.Config{Kernel: k, MemoryMiB: 32, VCPUs: 2, Logger: testLogger(t), Devices: []virtio.Device{disk}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		if _, err := m.Run(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		m.Stop() // after Close: a no-op
		if after := openFDs(t); after != before {
			t.Errorf("%d fds before New, %d after Close", before, after)
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // exiting goroutines finish asynchronously
		}
		if n := runtime.NumGoroutine(); n > goroutines {
			t.Errorf("%d goroutines before New, %d after Close", goroutines, n)
		}
	}
}

// TestHugePages: with 2 MiB pages reserved on the host the guest runs on them; without,
// New fails cleanly (nothing leaked) instead of silently using small pages.
func TestHugePages(t *testing.T) {
	requireKVM(t)
	b, err := os.ReadFile("/proc/sys/vm/nr_hugepages")
	if err != nil {
		t.Skipf("no hugetlb support: %v", err)
	}
	reserved := strings.TrimSpace(string(b)) != "0"
	k, err := vmmtest.WriteKernel(t.TempDir(), vmmtest.LongDevices)
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	m, err := vmm.New(vmm.Config{Kernel: k, MemoryMiB: 32, HugePages: true, Logger: testLogger(t)})
	if !reserved {
		if err == nil {
			m.Close()
			t.Fatal("huge pages used although none are reserved")
		}
		if after := openFDs(t); after != before {
			t.Errorf("fds %d before, %d after", before, after)
		}
		t.Logf("no huge pages reserved (vm.nr_hugepages=0): %v", err)
		return
	}
	if err != nil {
		t.Fatalf("%d huge pages reserved: %v", len(b), err)
	}
	defer m.Close()
	if exit, err := run(t, m); err != nil || exit.Reason != vmm.ExitReset {
		t.Fatalf("%+v %v", exit, err)
	}
}
