package vmm

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmbench/runner/vmm/arch/x86"
	"github.com/vmbench/runner/vmm/bus"
	"github.com/vmbench/runner/vmm/devices/boottimer"
	"github.com/vmbench/runner/vmm/devices/i8042"
	"github.com/vmbench/runner/vmm/devices/serial"
	"github.com/vmbench/runner/vmm/guestmem"
	"github.com/vmbench/runner/vmm/kvm"
)

// Machine is one microVM. Its methods are safe for concurrent use, except that Close must
// not race with New's return.
type Machine struct {
	cfg      Config
	log      *slog.Logger
	template x86.CPUTemplate
	created  time.Time // when New started (for the start-up timings)
	setup    time.Duration

	sys   *kvm.System
	vm    *kvm.VM
	mem   *guestmem.Memory
	boot  *x86.BootInfo
	vcpus []*vcpu

	pio, mmio *bus.Bus
	console   *serial.Console
	uart      *serial.UART
	kbd       *i8042.Device
	timer     *boottimer.Device
	virtio    []*virtioSlot

	// Run state.
	runMu      sync.Mutex // held by Run for its whole duration; Close waits on it
	ran        atomic.Bool
	stopping   atomic.Bool
	resetReq   atomic.Bool
	firstRunNs atomic.Int64 // ns from created to the first KVM_RUN

	// lifeMu guards closed against Stop and Close: Stop takes it shared.
	lifeMu sync.RWMutex
	closed bool // guarded by lifeMu
}

// vcpu is one virtual CPU and the thread running it.
type vcpu struct {
	id  int
	cpu *kvm.VCPU
	tid atomic.Int32 // OS thread ID while the vCPU thread runs, else 0

	ioExits, mmioExits atomic.Uint64
}

// New creates a machine from cfg: it opens KVM, creates the VM, guest RAM, the boot
// structures and the vCPUs, and attaches the devices. No guest code runs until Run.
// On failure everything New created is released (cfg.Devices stay open: the caller
// still owns them).
func New(cfg Config) (_ *Machine, err error) {
	created := time.Now()
	if cfg, err = cfg.withDefaults(); err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg, log: cfg.Logger, created: created, pio: bus.New("pio"), mmio: bus.New("mmio")}
	defer func() {
		if err != nil {
			m.release(false)
		}
	}()
	if m.sys, err = kvm.Open(cfg.KVMPath); err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}
	if err = m.sys.RequireExtensions(kvm.CapIRQChip, kvm.CapUserMemory, kvm.CapSetTSSAddr, kvm.CapPIT2,
		kvm.CapIRQFD, kvm.CapImmediateExit, kvm.CapExtCPUID, kvm.CapMPState); err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}
	pvm := kvm.IsPVM()
	if cfg.PVM != nil {
		pvm = *cfg.PVM
	}
	if m.template, err = chooseTemplate(cfg.CPUTemplate, pvm, m.log); err != nil {
		return nil, err
	}
	if maxV, err := m.sys.CheckExtension(kvm.CapMaxVCPUs); err == nil && maxV > 0 && cfg.VCPUs > maxV {
		return nil, fmt.Errorf("vmm: %d vCPUs: KVM allows at most %d", cfg.VCPUs, maxV)
	}
	if err = m.createVM(); err != nil {
		return nil, err
	}
	if err = m.loadGuest(); err != nil {
		return nil, err
	}
	if err = m.createVCPUs(pvm); err != nil {
		return nil, err
	}
	if err = m.attachDevices(); err != nil {
		return nil, err
	}
	m.setup = time.Since(created)
	m.log.Debug("vmm: machine ready", "vcpus", cfg.VCPUs, "memory_mib", cfg.MemoryMiB,
		"kernel", m.boot.Kernel.Format, "cpu_template", m.template, "devices", len(cfg.Devices),
		"setup", m.setup)
	return m, nil
}

// createVM creates the VM, registers guest RAM, and adds the in-kernel irqchip and PIT.
// RAM is registered first: KVM_SET_USER_MEMORY_REGION after KVM_CREATE_IRQCHIP waits for
// an SRCU grace period (4–11 ms measured here, against 0.2 ms before), the largest item of
// start-up.
func (m *Machine) createVM() (err error) {
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	size := uint64(m.cfg.MemoryMiB) << 20
	if m.mem, err = guestmem.New(size, guestmem.Options{HugePages: m.cfg.HugePages}); err != nil {
		return fmt.Errorf("vmm: guest memory: %w", err)
	}
	for i, r := range m.mem.Regions() {
		if err := m.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot: uint32(i), GuestPhysAddr: r.GuestAddr, MemorySize: r.Size, UserspaceAddr: uint64(r.HostAddr()),
		}); err != nil {
			return fmt.Errorf("vmm: %w", err)
		}
	}
	// Intel VT-x needs the TSS region for real mode (the APs' trampoline); elsewhere it is
	// harmless.
	if err := m.vm.SetTSSAddr(x86.TSSAddr); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := m.vm.CreatePIT2(0); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	return nil
}

// loadGuest loads kernel, initrd and command line (with the virtio-mmio words) and writes
// the boot structures.
func (m *Machine) loadGuest() (err error) {
	devices := make([]string, len(m.cfg.Devices))
	for i := range m.cfg.Devices {
		devices[i] = virtioCmdlineArg(i)
	}
	m.boot, err = x86.LoadLinux(m.mem, x86.BootConfig{
		Kernel: m.cfg.Kernel, Initrd: m.cfg.Initrd, Cmdline: withKernelWords(m.cfg.Cmdline, devices),
	})
	if err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	return nil
}

// createVCPUs creates every vCPU with its CPUID table, writes the MP table and puts the
// boot vCPU into 64-bit mode at the kernel entry. Application processors stay in KVM's
// wait-for-SIPI state: the guest starts them through the in-kernel local APIC.
func (m *Machine) createVCPUs(pvm bool) error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	tscDeadline, _ := m.sys.CheckExtension(kvm.CapTSCDeadlineTimer)
	opts := x86.CPUIDOptions{Template: m.template, VCPUs: m.cfg.VCPUs, PVM: pvm, TSCDeadline: tscDeadline > 0}
	for id := range m.cfg.VCPUs {
		table, err := x86.CPUID(supported, id, opts)
		if err != nil {
			return fmt.Errorf("vmm: %w", err)
		}
		cpu, err := m.vm.CreateVCPU(id)
		if err != nil {
			return fmt.Errorf("vmm: %w", err)
		}
		m.vcpus = append(m.vcpus, &vcpu{id: id, cpu: cpu})
		if err := cpu.SetCPUID2(table); err != nil {
			return fmt.Errorf("vmm: %w", err)
		}
		if id == 0 {
			sig, features := x86.Signature(table)
			if err := x86.WriteMPTable(m.mem, m.cfg.VCPUs, sig, features); err != nil {
				return fmt.Errorf("vmm: %w", err)
			}
			sregs, err := cpu.Sregs()
			if err != nil {
				return fmt.Errorf("vmm: %w", err)
			}
			if err := cpu.SetSregs(x86.LongModeSregs(sregs)); err != nil {
				return fmt.Errorf("vmm: %w", err)
			}
			if err := cpu.SetRegs(x86.BootRegs(m.boot.Kernel.Entry)); err != nil {
				return fmt.Errorf("vmm: %w", err)
			}
		}
	}
	return nil
}

// attachDevices registers the legacy devices and the virtio-mmio transports.
func (m *Machine) attachDevices() error {
	m.console = serial.NewConsole(m.cfg.Console, 0)
	m.uart = serial.New(m.console, irqLine{vm: m.vm, irq: serialIRQ})
	m.kbd = i8042.New(func() { m.resetReq.Store(true) })
	m.timer = boottimer.New()
	if err := m.pio.Register(serialPort, serial.Size, "serial", m.uart); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := m.pio.Register(i8042.Base, i8042.Size, "i8042", m.kbd); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := m.mmio.Register(boottimer.Addr, boottimer.Size, "boot-timer", m.timer); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	ioeventfd, _ := m.sys.CheckExtension(kvm.CapIOEventFD)
	for i, dev := range m.cfg.Devices {
		slot, err := m.attachVirtio(i, dev, ioeventfd > 0)
		if slot != nil {
			m.virtio = append(m.virtio, slot)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// irqLine drives one in-kernel irqchip input with KVM_IRQ_LINE (the UART's IRQ 4).
type irqLine struct {
	vm  *kvm.VM
	irq uint32
}

func (l irqLine) SetLevel(high bool) error { return l.vm.IRQLine(l.irq, high) }

// CPUTemplate is the CPU template in effect.
func (m *Machine) CPUTemplate() string { return string(m.template) }

// SetupTime is how long New took.
func (m *Machine) SetupTime() time.Duration { return m.setup }

// FirstRunTime is the time from the start of New to the first KVM_RUN (false before Run).
func (m *Machine) FirstRunTime() (time.Duration, bool) {
	ns := m.firstRunNs.Load()
	return time.Duration(ns), ns != 0
}

// BootTime is the time from the first KVM_RUN to the guest's boot-timer write (false if
// the guest has not written it).
func (m *Machine) BootTime() (time.Duration, bool) {
	if m.timer == nil {
		return 0, false
	}
	return m.timer.BootTime()
}

// GuestMemory is the guest's RAM (for inspection by tests and tools).
func (m *Machine) GuestMemory() *guestmem.Memory { return m.mem }

// Close stops the machine if it is running, then releases every resource: devices (their
// goroutines stop before guest memory goes away), eventfds, vCPUs, the VM, guest memory,
// and the console (flushed). It is idempotent.
func (m *Machine) Close() error {
	m.Stop()
	m.runMu.Lock() // wait for a running Run to finish
	defer m.runMu.Unlock()
	m.lifeMu.Lock()
	if m.closed {
		m.lifeMu.Unlock()
		return nil
	}
	m.closed = true
	m.lifeMu.Unlock()
	return m.release(true)
}

// release frees resources in dependency order. With ownDevices false (New failing) the
// virtio devices themselves are not closed.
func (m *Machine) release(ownDevices bool) error {
	var errs []error
	for _, s := range m.virtio {
		errs = append(errs, s.close(ownDevices))
	}
	m.virtio = nil
	for _, v := range m.vcpus {
		errs = append(errs, v.cpu.Close())
	}
	m.vcpus = nil
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
	}
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
		m.mem = nil
	}
	if m.console != nil {
		errs = append(errs, m.console.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vmm: close: %w", err)
	}
	return nil
}

// withKernelWords adds words to the kernel's part of a command line: before " -- ", after
// which Linux hands everything to init as arguments.
func withKernelWords(cmdline string, words []string) string {
	kernelPart, initPart, hasInit := strings.Cut(" "+strings.TrimSpace(cmdline)+" ", " -- ")
	out := strings.Fields(kernelPart)
	out = append(out, words...)
	if hasInit {
		out = append(out, "--")
		out = append(out, strings.Fields(initPart)...)
	}
	return strings.Join(out, " ")
}
