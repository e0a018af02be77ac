package vmm

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/vmbench/runner/vmm/arch/x86"
	"github.com/vmbench/runner/vmm/devices/virtio"
)

// Limits on the machine's shape.
const (
	// MaxVCPUs is the most vCPUs a Machine has (Firecracker's limit; the MP table holds more).
	MaxVCPUs = 32
	// MinMemoryMiB is the smallest guest: the kernel is loaded at 16 MiB.
	MinMemoryMiB = 16
	// MaxMemoryMiB bounds guest RAM (1 TiB).
	MaxMemoryMiB = 1 << 20
	// MaxDevices is the number of virtio-mmio slots (IRQs 5..23).
	MaxDevices = lastDeviceIRQ - firstDeviceIRQ + 1
)

// Guest-physical and interrupt layout of the devices (see the package comment of
// vmm/arch/x86 for RAM).
const (
	serialPort     = 0x3f8
	serialIRQ      = 4
	firstDeviceIRQ = 5
	lastDeviceIRQ  = 23
	// VirtioMMIOBase is where the first virtio-mmio device's window starts (after the boot
	// timer's page at 0xc0000000); device i is at VirtioMMIOBase + i*0x1000 with IRQ 5+i.
	VirtioMMIOBase = 0xc000_1000
)

// Config describes a machine.
type Config struct {
	// Kernel is the guest kernel: an uncompressed vmlinux (ELF) or a bzImage.
	Kernel string
	// Initrd is an optional initial ramdisk (cpio, possibly compressed).
	Initrd string
	// Cmdline is the kernel command line. The Machine adds one
	// "virtio_mmio.device=4K@<base>:<irq>" word per device, before any " -- " (words after
	// it are the init's arguments).
	Cmdline string
	// VCPUs is the number of vCPUs, 1..MaxVCPUs (0 means 1).
	VCPUs int
	// MemoryMiB is the guest RAM size in MiB, at least MinMemoryMiB (0 means 128).
	MemoryMiB int
	// CPUTemplate is "host", "baseline", or "" for automatic: baseline when /dev/kvm is
	// kvm_pvm (its emulator needs it and it makes runs comparable), host otherwise.
	CPUTemplate string
	// PVM says whether /dev/kvm is kvm_pvm (the CPUID workarounds and the automatic
	// template depend on it). nil means detect it (kvm.IsPVM, from /sys/module); a VMM
	// that runs where /sys is not visible (jailed) detects it beforehand and sets it.
	PVM *bool
	// Console receives the guest's serial output. Writes happen on a goroutine behind a
	// bounded buffer, so a slow writer never blocks a vCPU; overflow is dropped and counted
	// (Exit.ConsoleDropped). nil discards the output.
	Console io.Writer
	// Devices are attached as virtio-mmio devices, device i at VirtioMMIOBase + i*0x1000 with
	// IRQ 5+i. After a successful New the Machine owns them (Close closes them); if New
	// fails they are left open for the caller.
	Devices []virtio.Device
	// KVMPath is the KVM device ("" means /dev/kvm).
	KVMPath string
	// HugePages backs guest RAM with 2 MiB huge pages (they must be reserved on the host).
	HugePages bool
	// Logger receives the machine's log (nil: slog.Default()).
	Logger *slog.Logger
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Kernel == "" {
		return c, fmt.Errorf("vmm: config: no kernel")
	}
	if c.VCPUs == 0 {
		c.VCPUs = 1
	}
	if c.VCPUs < 1 || c.VCPUs > MaxVCPUs {
		return c, fmt.Errorf("vmm: config: %d vCPUs: must be 1..%d", c.VCPUs, MaxVCPUs)
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 128
	}
	if c.MemoryMiB < MinMemoryMiB {
		return c, fmt.Errorf("vmm: config: %d MiB of memory: the guest needs at least %d MiB (the kernel loads at 16 MiB)",
			c.MemoryMiB, MinMemoryMiB)
	}
	if c.MemoryMiB > MaxMemoryMiB {
		return c, fmt.Errorf("vmm: config: %d MiB of memory: at most %d", c.MemoryMiB, MaxMemoryMiB)
	}
	if c.HugePages && c.MemoryMiB%2 != 0 {
		return c, fmt.Errorf("vmm: config: %d MiB of memory: huge pages need a multiple of 2 MiB", c.MemoryMiB)
	}
	if c.CPUTemplate != "" {
		if _, err := x86.ParseCPUTemplate(c.CPUTemplate); err != nil {
			return c, fmt.Errorf("vmm: config: %w", err)
		}
	}
	if len(c.Devices) > MaxDevices {
		return c, fmt.Errorf("vmm: config: %d devices: at most %d", len(c.Devices), MaxDevices)
	}
	for i, d := range c.Devices {
		if d == nil {
			return c, fmt.Errorf("vmm: config: device %d is nil", i)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
