package runner

import (
	"context"
	"fmt"
	"net"

	"github.com/vmbench/runner/rootfs"
	"github.com/vmbench/runner/runner/sandbox"
)

// SandboxBackend runs the machine without a VM (package runner/sandbox): the same image and
// init, in namespaces on the host kernel. VCPUs restricts CPU affinity; MemoryMiB and the
// CPU count become cgroup limits where the host offers the controllers (v2, else v1).
type SandboxBackend struct {
	// Pids limits the number of processes (pids.max); 0 = unlimited.
	Pids int64
}

// Name implements Backend.
func (SandboxBackend) Name() string { return "sandbox" }

// Start implements Backend.
func (b SandboxBackend) Start(ctx context.Context, m Machine) (Instance, error) {
	format := sandbox.FormatExt4
	if m.Format == rootfs.FormatSquashfs {
		format = sandbox.FormatSquashfs
	}
	sb, err := sandbox.Start(ctx, sandbox.Config{
		Image:   m.Rootfs,
		Format:  format,
		Init:    rootfs.InitPath,
		CPUs:    m.VCPUs,
		Console: m.Console,
		TempDir: m.RunDir,
		Limits: sandbox.Limits{
			MemoryBytes: int64(m.MemoryMiB) << 20,
			Pids:        b.Pids,
			CPUs:        float64(m.VCPUs),
		},
	})
	if err != nil {
		return nil, err
	}
	return sandboxInstance{sb}, nil
}

type sandboxInstance struct{ sb *sandbox.Sandbox }

// Conn returns the socket pair end: the init is connected from the start.
func (i sandboxInstance) Conn(context.Context) (net.Conn, error) { return i.sb.Conn(), nil }

func (i sandboxInstance) Kill() error { return i.sb.Kill() }

func (i sandboxInstance) Wait() error {
	state, err := i.sb.Wait()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if !state.Success() {
		return fmt.Errorf("sandbox: init %v", state)
	}
	return nil
}

// OOMKilled reports an OOM kill seen by the sandbox's memory cgroup; known is false when
// the sandbox has none (no memory limit, or none available on this host).
func (i sandboxInstance) OOMKilled() (killed, known bool) {
	return i.sb.OOMKilled(), i.sb.HasMemoryLimit()
}

// VCPUs reports how many CPUs the sandbox could use.
func (i sandboxInstance) VCPUs() int { return i.sb.CPUs() }
