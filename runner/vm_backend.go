package runner

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/protocol"
	"github.com/vmbench/runner/rootfs"
	"github.com/vmbench/runner/runner/vm"
)

// Defaults of a microVM when the run does not say.
const (
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 512
)

// VMBackend runs the machine in a KVM microVM (package runner/vm): our kernel, our VMM in a
// jailed child process, the root filesystem as virtio-blk and the protocol over
// virtio-vsock.
type VMBackend struct {
	Kernel      kernel.Kernel
	KVMDevice   string // "" = /dev/kvm
	CPUTemplate string // "host", "baseline" or "" (automatic)
	// KernelArgs are extra kernel command-line words (appended to the defaults).
	KernelArgs []string
	// Verbose keeps the kernel's boot messages on the console (no "quiet").
	Verbose  bool
	NoJail   bool   // debugging only: run the VMM unconfined
	Exe      string // the runner binary to re-execute as the VMM ("" = this one)
	LogLevel string // the VMM child's log level
	SelfTest string // tests only, see vm.ChildConfig
}

// Name implements Backend.
func (VMBackend) Name() string { return "kvm" }

// KernelPath is the guest kernel the backend boots.
func (b VMBackend) KernelPath() string { return b.Kernel.Path }

// Cmdline is the kernel command line for a run of the given root filesystem format. The
// init finds the host at protocol.VsockPort, its default, so it needs no arguments.
func (b VMBackend) Cmdline(format rootfs.Format) []string {
	words := kernel.Cmdline(b.Kernel.Flavour)
	if b.Verbose {
		words = slices.DeleteFunc(words, func(w string) bool { return w == "quiet" })
	}
	if format == rootfs.FormatSquashfs {
		// The init puts a tmpfs overlay on top of the read-only root.
		words = append(words, "root=/dev/vda", "rootfstype=squashfs", "ro")
	} else {
		words = append(words, "root=/dev/vda", "rootfstype=ext4", "rw")
	}
	words = append(words, "init="+rootfs.InitPath)
	return append(words, b.KernelArgs...)
}

// Start implements Backend.
func (b VMBackend) Start(ctx context.Context, m Machine) (Instance, error) {
	vcpus, mem := m.VCPUs, m.MemoryMiB
	if vcpus == 0 {
		vcpus = DefaultVCPUs
	}
	if mem == 0 {
		mem = DefaultMemoryMiB
	}
	v, err := vm.Start(vm.Config{
		Exe:         b.Exe,
		RunDir:      m.RunDir,
		ReadOnly:    m.Format == rootfs.FormatSquashfs,
		Kernel:      b.Kernel.Path,
		KVMDevice:   b.KVMDevice,
		Cmdline:     kernel.Join(b.Cmdline(m.Format)),
		VCPUs:       vcpus,
		MemoryMiB:   mem,
		CPUTemplate: b.CPUTemplate,
		Serial:      m.ID,
		InitPort:    protocol.VsockPort,
		Console:     m.Console,
		NoJail:      b.NoJail,
		LogLevel:    b.LogLevel,
		SelfTest:    b.SelfTest,
		Logger:      slog.Default(),
	})
	if err != nil {
		return nil, err
	}
	return &vmInstance{v: v, vcpus: vcpus}, nil
}

type vmInstance struct {
	v     *vm.VM
	vcpus int

	mu   sync.Mutex
	exit vm.Event
}

// Conn waits for the guest init's vsock connection.
func (i *vmInstance) Conn(ctx context.Context) (net.Conn, error) { return i.v.Accept(ctx) }

// Wait waits for the VMM to end. A guest that powered off (reset or triple fault) is
// the normal end.
func (i *vmInstance) Wait() error {
	ev, err := i.v.Wait()
	i.mu.Lock()
	i.exit = ev
	i.mu.Unlock()
	return err
}

// Kill ends the VM at once.
func (i *vmInstance) Kill() error { i.v.Kill(); return nil }

// BootTime is the boot timer's stamp: VM start to the init's first write.
func (i *vmInstance) BootTime() time.Duration {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.exit.BootTimed {
		return 0
	}
	return i.exit.BootTime
}

// VCPUs is the number of vCPUs the VM ran with.
func (i *vmInstance) VCPUs() int { return i.vcpus }

// VMMStats reports, after Wait, the VMM process's peak RSS, how much of it was guest RAM
// the guest touched, and the guest memory size.
func (i *vmInstance) VMMStats() VMMStats {
	i.mu.Lock()
	defer i.mu.Unlock()
	return VMMStats{MaxRSSKiB: i.exit.MaxRSSKiB, GuestResidentKiB: i.exit.GuestResidentKiB, GuestMiB: i.exit.GuestMiB}
}

// VMMStats describe the memory of a VMM process.
type VMMStats struct {
	MaxRSSKiB        int64 // peak resident set of the VMM process, guest RAM included
	GuestResidentKiB int64 // guest RAM backed by host pages at the end of the run
	GuestMiB         int   // guest RAM size
}

// OverheadKiB is the VMM's own memory: its peak RSS minus the guest RAM in it.
func (s VMMStats) OverheadKiB() int64 { return s.MaxRSSKiB - s.GuestResidentKiB }
