package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmbench/runner/vmm"
	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/blk"
	"github.com/vmbench/runner/vmm/devices/virtio/vsock"
	"github.com/vmbench/runner/vmm/jail"
	"github.com/vmbench/runner/vmm/kvm"
)

// Child file descriptors (exec.Cmd.ExtraFiles start at 3).
const (
	childConfigFD = 3
	childEventsFD = 4
)

// ChildMain is the body of the hidden `runner vmm` command: it reads its ChildConfig from
// fd 3, builds and confines the VM, runs it and reports on fd 4. The guest console goes to
// console (the child's stdout). It returns the process exit status.
func ChildMain(console io.Writer, logw io.Writer) int {
	start := time.Now()
	events := os.NewFile(childEventsFD, "events")
	enc := json.NewEncoder(events)
	report := func(ev Event) {
		if err := enc.Encode(ev); err != nil {
			fmt.Fprintf(logw, "vmm: report %s: %v\n", ev.Kind, err)
		}
	}
	fail := func(err error) int {
		report(Event{Kind: "exit", Reason: "error", Error: err.Error()})
		return 1
	}

	var cfg ChildConfig
	if err := json.NewDecoder(os.NewFile(childConfigFD, "config")).Decode(&cfg); err != nil {
		return fail(fmt.Errorf("vmm: read config: %w", err))
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level})).With("component", "vmm")

	m, err := buildMachine(cfg, console, log)
	if err != nil {
		return fail(err)
	}
	defer m.Close()

	if cfg.Jail {
		if err := jail.DropCapabilities(); err != nil {
			return fail(err)
		}
		if err := jail.InstallSeccomp(jail.VMMPolicy()); err != nil {
			return fail(err)
		}
	}
	if cfg.SelfTest == "forbidden-syscall" {
		// Must never return: the seccomp filter kills the process.
		err := syscall.Exec("/vmlinux", []string{"vmlinux"}, nil)
		return fail(fmt.Errorf("vmm: self-test: execve was not blocked: %v", err))
	}

	// SIGTERM/SIGINT from the parent: stop the vCPUs and report normally.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	report(Event{Kind: "started", SetupTime: time.Since(start)})

	exit, runErr := m.Run(ctx)
	ev := Event{Kind: "exit", Reason: exit.Reason.String(), GuestMiB: cfg.MemoryMiB}
	if runErr != nil {
		ev.Error = runErr.Error()
	}
	ev.BootTime, ev.BootTimed = m.BootTime()
	ev.MaxRSSKiB = maxRSSKiB()
	if res, err := m.GuestMemory().Resident(); err == nil {
		ev.GuestResidentKiB = int64(res >> 10)
	}
	report(ev)
	if runErr != nil {
		return 1
	}
	return 0
}

// buildMachine confines the process (when cfg.Jail) and creates the VM with its devices.
// The VM is fully built — files opened, memory mapped — before capabilities are dropped.
func buildMachine(cfg ChildConfig, console io.Writer, log *slog.Logger) (*vmm.Machine, error) {
	kernelPath := cfg.Kernel
	rootfsPath := filepath.Join(cfg.RunDir, RootfsName)
	vsockPath := filepath.Join(cfg.RunDir, VsockName)
	kvmPath := cfg.KVMDevice
	if kvmPath == "" {
		kvmPath = "/dev/kvm"
	}
	// /sys is out of sight once jailed: find out what kind of KVM this is first.
	pvm := kvm.IsPVM()
	if cfg.Jail {
		err := jail.EnterRoot(cfg.RunDir, []jail.Bind{
			{Source: kvmPath, Target: "dev/kvm"},
			{Source: cfg.Kernel, Target: kernelName, ReadOnly: true},
		})
		if err != nil {
			return nil, err
		}
		kernelPath, rootfsPath, vsockPath, kvmPath = "/"+kernelName, "/"+RootfsName, "/"+VsockName, "/dev/kvm"
		st, err := os.Stat(rootfsPath)
		if err != nil {
			return nil, fmt.Errorf("vmm: rootfs: %w", err)
		}
		if err := jail.SetRlimits(jail.DefaultLimits(uint64(st.Size()))); err != nil {
			return nil, err
		}
	}

	disk, err := blk.New(blk.Config{Path: rootfsPath, ReadOnly: cfg.ReadOnly, Serial: cfg.Serial, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("vmm: rootfs disk: %w", err)
	}
	sock, err := vsock.New(vsock.Config{GuestCID: GuestCID, UDSPath: vsockPath, Logger: log})
	if err != nil {
		disk.Close()
		return nil, fmt.Errorf("vmm: vsock: %w", err)
	}
	m, err := vmm.New(vmm.Config{
		Kernel:      kernelPath,
		Cmdline:     cfg.Cmdline,
		VCPUs:       cfg.VCPUs,
		MemoryMiB:   cfg.MemoryMiB,
		CPUTemplate: cfg.CPUTemplate,
		PVM:         &pvm,
		Console:     console,
		Devices:     []virtio.Device{disk, sock},
		KVMPath:     kvmPath,
		Logger:      log,
	})
	if err != nil {
		disk.Close()
		sock.Close()
		return nil, err
	}
	return m, nil
}

func maxRSSKiB() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss
}

// errChildGone is returned when the child exits without an exit event.
var errChildGone = errors.New("vmm process ended without a report")
