package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vmbench/runner/cache"
	"github.com/vmbench/runner/oci"
	"github.com/vmbench/runner/protocol"
	"github.com/vmbench/runner/rootfs"
	"github.com/vmbench/runner/runner/session"
)

// Backend runs a prepared root filesystem with the init in it: a microVM, or the sandbox.
type Backend interface {
	Name() string
	// Start boots m. The returned Instance must be stopped with Kill or reach Wait.
	Start(ctx context.Context, m Machine) (Instance, error)
}

// Machine is what a backend boots.
type Machine struct {
	// ID names the run (at most 20 bytes: it is also the root disk's virtio-blk serial).
	ID string
	// RunDir is the run's private directory, removed after the run. It holds Rootfs.
	RunDir string
	// Rootfs is the run's root filesystem image, RunDir/RootfsName: a private writable copy
	// for ext4; for squashfs (never written) a link to the cached image.
	Rootfs    string
	Format    rootfs.Format
	VCPUs     int // 0: the backend's default
	MemoryMiB int // 0: the backend's default
	// Console receives the guest's console (kernel and init log); nil discards it.
	Console io.Writer
}

// RootfsName is the name of the run's root filesystem image in Machine.RunDir.
const RootfsName = "rootfs.img"

// Instance is a started machine. An Instance may also report, after Wait:
//
//	BootTime() time.Duration         // the boot timer's stamp (Timings.BootTimer)
//	OOMKilled() (killed, known bool) // the host's verdict; when known it replaces Exit.OOMKilled
//	VCPUs() int                      // the vCPUs it ran with, when Machine.VCPUs was 0
type Instance interface {
	// Conn returns the init's protocol connection once the guest has connected.
	Conn(ctx context.Context) (net.Conn, error)
	// Wait waits until the machine has stopped and released what it held. A guest that
	// powered off normally is not an error.
	Wait() error
	// Kill stops the machine now.
	Kill() error
}

// Config is one run: the image and how to run it.
type Config struct {
	Image     string        // image reference, see oci.Resolve
	OCI       oci.Options   // registry, platform and cache options
	Overrides oci.Overrides // docker run's --entrypoint, command, -e, -w, -u
	Hostname  string        // "" = protocol.DefaultHostname

	Outputs   []string // guest paths of files to bring back
	OutputDir string   // where they land, as OutputDir/<base name>; "" = discard after verifying

	Timeout   time.Duration // the command's time limit; 0 = none
	KillGrace time.Duration // SIGTERM → SIGKILL at the timeout; 0 = protocol.DefaultKillGrace
	AllowPerf bool          // let the workload use perf_event_open

	Rootfs    rootfs.BuildOptions // format, disk size, init binary, cache
	VCPUs     int
	MemoryMiB int
	// RunDirParent is where the per-run directory is created ("" = os.TempDir()).
	RunDirParent string
	// HostMargin is how long past Timeout+KillGrace the host waits for the guest before
	// cancelling the run itself (a wedged guest); 0 = DefaultHostMargin.
	HostMargin time.Duration
	// BootTimeout bounds the time from the backend's start to the init's connection (a
	// kernel that never reaches its init); 0 = DefaultBootTimeout.
	BootTimeout time.Duration

	Stdout, Stderr io.Writer // the command's streams, written live
	Console        io.Writer // the guest's console; nil discards
}

// DefaultHostMargin is the host's extra patience beyond the guest's own timeout.
const DefaultHostMargin = 2 * time.Minute

// ErrHostTimeout means the guest neither finished nor reported its own timeout within the
// host's deadline (Timeout + KillGrace + HostMargin); the run is over all the same, and
// counts as timed out.
var ErrHostTimeout = errors.New("the guest did not report within the host's time limit")

// DefaultBootTimeout is the default BootTimeout: generous, because a boot on an emulated
// KVM takes tens of seconds (the CLI picks a tighter one on hardware KVM).
const DefaultBootTimeout = 10 * time.Minute

// Result is the outcome of a run.
type Result struct {
	Exit        protocol.Exit
	Files       []session.File
	ImageDigest string
	Backend     string
	VCPUs       int // as configured, or the backend's default when it reports one
	// VMM is the VMM process's memory, and GuestMemoryMiB the guest's RAM, for backends
	// with a VMM (zero otherwise).
	VMM            VMMStats
	GuestMemoryMiB int
	Kernel         string // the guest kernel image, for backends that boot one

	StdoutBytes, StderrBytes int64
	OutputErr                error // writing the command's output locally failed (it still ran)

	Timings Timings
}

// Timings are the host-side durations of a run's phases, and the guest's own.
type Timings struct {
	Resolve, Build, Copy time.Duration // image resolution, rootfs build (cached: ~0), per-run copy
	Start                time.Duration // backend start (process, namespaces, VMM)
	Boot                 time.Duration // backend start → the init's Hello
	Run                  time.Duration // Hello → Exit (command and streaming)
	Collect              time.Duration // Exit → Done (output files)
	Shutdown             time.Duration // Ack → the machine stopped
	Total                time.Duration
	// BootTimer is the guest's own boot time as the VMM's boot-timer device recorded it (the
	// init's first write), for backends that have one (Instance.BootTime); 0 otherwise.
	BootTimer time.Duration

	// Guest clock (CLOCK_BOOTTIME): kernel start → init main, init main → command start
	// (exec), and the command's own run time.
	GuestInit, GuestInitToExec, GuestCommand time.Duration
}

// Exit codes of runner run, docker run's convention.
const (
	ExitTimeout      = 124
	ExitRunnerError  = 125
	ExitCannotInvoke = 126
	ExitNotFound     = 127
)

// ExitCode maps the outcome to runner run's exit status: the command's status (128+n for a
// signal), ExitTimeout when the guest timed it out, ExitNotFound / ExitCannotInvoke when it
// could not be executed, ExitRunnerError when the guest could not set it up.
func (r *Result) ExitCode() int {
	e := r.Exit
	switch {
	case e.Failure == protocol.FailureNotFound:
		return ExitNotFound
	case e.Failure == protocol.FailureCannotInvoke:
		return ExitCannotInvoke
	case e.Failure != protocol.FailureNone:
		return ExitRunnerError
	case e.TimedOut:
		return ExitTimeout
	case e.Signal != 0:
		return 128 + int(e.Signal)
	}
	return int(e.Code)
}

// Run resolves the image, builds (or reuses) its root filesystem, makes the run's copy,
// starts it on backend and holds the protocol session. Everything created for the run is
// removed before Run returns. The error is for the runner's own failures; the command's
// outcome (including failing to start) is in the Result.
func Run(ctx context.Context, cfg Config, backend Backend) (*Result, error) {
	t0 := time.Now()
	res := &Result{Backend: backend.Name()}
	if k, ok := backend.(interface{ KernelPath() string }); ok {
		res.Kernel = k.KernelPath()
	}

	// From resolving the image to the run's private copy, the run reads the cache: a prune
	// (runner cache prune) waits meanwhile.
	cacheLock, err := cache.LockShared(ctx, cache.Dir())
	if err != nil {
		return nil, err
	}
	defer cacheLock.Unlock()

	img, err := oci.Resolve(ctx, cfg.Image, cfg.OCI)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", cfg.Image, err)
	}
	res.ImageDigest = img.Digest.String()
	imgCfg, err := img.Config.Apply(cfg.Overrides)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	rc := protocol.RunConfig{
		Argv:      imgCfg.Argv(),
		Env:       imgCfg.Env,
		WorkDir:   imgCfg.WorkingDir,
		User:      imgCfg.User,
		Hostname:  cfg.Hostname,
		Outputs:   cfg.Outputs,
		Timeout:   cfg.Timeout,
		KillGrace: cfg.KillGrace,
		AllowPerf: cfg.AllowPerf,
	}
	if len(rc.Argv) == 0 {
		return nil, fmt.Errorf("image %s has no command: set --entrypoint or a command", cfg.Image)
	}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("run config: %w", err)
	}
	res.Timings.Resolve = time.Since(t0)

	t := time.Now()
	base, err := rootfs.Build(ctx, img, cfg.Rootfs)
	if err != nil {
		return nil, fmt.Errorf("build root filesystem: %w", err)
	}
	res.Timings.Build = time.Since(t)

	if len(cfg.Outputs) > 0 && cfg.OutputDir != "" {
		if err := os.MkdirAll(cfg.OutputDir, 0o755); err != nil {
			return nil, fmt.Errorf("output directory: %w", err)
		}
	}
	id := newRunID()
	runDir, err := os.MkdirTemp(cfg.RunDirParent, "bencher-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	defer os.RemoveAll(runDir)
	t = time.Now()
	format, _ := rootfs.ParseFormat(string(cfg.Rootfs.Format))
	m := Machine{ID: id, RunDir: runDir, Rootfs: filepath.Join(runDir, RootfsName), Format: format,
		VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB, Console: cfg.Console}
	if err := runCopy(base, m.Rootfs, format); err != nil {
		return nil, fmt.Errorf("copy root filesystem: %w", err)
	}
	cacheLock.Unlock()
	res.Timings.Copy = time.Since(t)

	if err := runMachine(ctx, cfg, backend, m, rc, res); err != nil {
		return nil, err
	}
	res.Timings.Total = time.Since(t0)
	slog.Debug("runner: done", "backend", res.Backend, "timings", res.Timings)
	return res, nil
}

// runCopy makes the run's image: a private copy of an ext4 base, a hard link (falling back
// to a copy) of a squashfs base, which nothing writes.
func runCopy(base, dst string, format rootfs.Format) error {
	if format == rootfs.FormatSquashfs {
		if err := os.Link(base, dst); err == nil {
			return nil
		}
	}
	return rootfs.CopyForRun(base, dst)
}

// shutdownGrace is how long the machine gets to stop by itself after the Ack.
const shutdownGrace = 30 * time.Second

func runMachine(ctx context.Context, cfg Config, backend Backend, m Machine, rc protocol.RunConfig, res *Result) error {
	t := time.Now()
	inst, err := backend.Start(ctx, m)
	if err != nil {
		return fmt.Errorf("start %s: %w", backend.Name(), err)
	}
	stopped := false
	defer func() {
		if !stopped {
			inst.Kill()
			inst.Wait()
		}
	}()
	res.Timings.Start = time.Since(t)
	startedAt := time.Now()

	// The boot allowance: the init must connect within BootTimeout.
	bootTimeout := cfg.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = DefaultBootTimeout
	}
	bctx, bcancel := context.WithTimeout(ctx, bootTimeout)
	conn, err := inst.Conn(bctx)
	bcancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("no connection within the boot timeout of %v", bootTimeout)
	}
	if err != nil {
		return fmt.Errorf("%s: guest did not connect: %w", backend.Name(), err)
	}
	defer conn.Close()

	// The host's own deadline, from the init's connection: the guest enforces Timeout; this
	// catches a guest that cannot, and always wins.
	sctx := ctx
	if cfg.Timeout > 0 {
		margin := cfg.HostMargin
		if margin <= 0 {
			margin = DefaultHostMargin
		}
		grace := cfg.KillGrace
		if grace <= 0 {
			grace = protocol.DefaultKillGrace
		}
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, cfg.Timeout+grace+margin)
		defer cancel()
	}
	sres, err := session.Run(sctx, conn, rc, session.Options{Stdout: cfg.Stdout, Stderr: cfg.Stderr, OutputDir: cfg.OutputDir})
	hostTimedOut := errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	if err != nil {
		if hostTimedOut {
			return fmt.Errorf("%s: %w (%v): %w", backend.Name(), ErrHostTimeout, cfg.Timeout, err)
		}
		return fmt.Errorf("%s: %w", backend.Name(), err)
	}
	if hostTimedOut {
		// The guest answered the host's Cancel: it ran out of time all the same.
		sres.Exit.TimedOut = true
	}
	res.Exit, res.Files = sres.Exit, sres.Files
	res.StdoutBytes, res.StderrBytes, res.OutputErr = sres.StdoutBytes, sres.StderrBytes, sres.OutputErr
	res.Timings.Boot = sres.HelloAt.Sub(startedAt)
	res.Timings.Run = sres.ExitAt.Sub(sres.HelloAt)
	res.Timings.Collect = sres.DoneAt.Sub(sres.ExitAt)
	res.Timings.GuestInit = sres.Hello.InitStart
	if e := sres.Exit; e.Started > 0 {
		res.Timings.GuestInitToExec = e.Started - sres.Hello.InitStart
		res.Timings.GuestCommand = e.Ended - e.Started
	}

	t = time.Now()
	waited := make(chan error, 1)
	go func() { waited <- inst.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(shutdownGrace):
		slog.Warn("runner: the guest did not stop after reporting; killing it", "backend", backend.Name())
		inst.Kill()
		err = <-waited
	}
	stopped = true
	res.Timings.Shutdown = time.Since(t)
	// The init counts OOM kills in its kernel's /proc/vmstat: the run's own in a VM, but the
	// whole host's in the sandbox, where the sandbox's memory cgroup knows better.
	if o, ok := inst.(interface{ OOMKilled() (bool, bool) }); ok {
		if killed, known := o.OOMKilled(); known {
			res.Exit.OOMKilled = killed
		}
	}
	if b, ok := inst.(interface{ BootTime() time.Duration }); ok {
		res.Timings.BootTimer = b.BootTime()
	}
	if v, ok := inst.(interface{ VMMStats() VMMStats }); ok {
		res.VMM = v.VMMStats()
		res.GuestMemoryMiB = res.VMM.GuestMiB
	}
	res.VCPUs = m.VCPUs
	if v, ok := inst.(interface{ VCPUs() int }); ok && res.VCPUs == 0 {
		res.VCPUs = v.VCPUs()
	}
	if err != nil {
		// The result is complete (acknowledged); a messy shutdown is only worth a warning.
		slog.Warn("runner: machine shutdown", "backend", backend.Name(), "err", err)
	}
	return nil
}

// newRunID returns "run-" and 16 hex digits: unique per run, 20 bytes (the virtio-blk
// serial number's size).
func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "run-" + hex.EncodeToString(b[:])
}
