package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/internal/osthread"
)

// DefaultInit is where rootfs installs the init in an image.
const DefaultInit = "/.bencher/init"

// Config describes one sandbox.
type Config struct {
	// Image is the per-run root filesystem image. An ext4 image is mounted read-write and
	// modified: pass a private copy. A squashfs image is only read.
	Image string
	// Format of Image; "" detects it from the superblock.
	Format Format
	// Init is the init's path inside the image; "" means DefaultInit.
	Init string
	// CPUs restricts the sandbox to the first CPUs of those the runner may use (scheduler
	// affinity, which nproc and sched_getaffinity see) and, through the CPU controller, to that
	// much CPU time; 0 means no restriction.
	CPUs int
	// Limits are applied through cgroups (v2, else v1) when the host offers the controllers.
	Limits Limits
	// Console receives the init's own stdout and stderr (its log); nil logs each line with
	// slog at debug level.
	Console io.Writer
	// TempDir is where the sandbox's own scratch directory goes (the runner passes the run
	// directory); "" means os.TempDir().
	TempDir string
}

// Sandbox is a running sandbox. Its methods are safe for concurrent use.
type Sandbox struct {
	conn net.Conn
	pid  int
	cpus int
	cg   *cgroup
	tmp  string

	done     chan struct{} // closed when the init was reaped and everything cleaned up
	state    *os.ProcessState
	waitErr  error
	oomKills int64
	console  sync.WaitGroup
}

// Start creates the sandbox and starts its init. The returned sandbox's Conn speaks the
// protocol with the init. On error nothing is left behind.
func Start(ctx context.Context, cfg Config) (_ *Sandbox, err error) {
	if cfg.Format == "" {
		if cfg.Format, err = DetectFormat(cfg.Image); err != nil {
			return nil, err
		}
	}
	if cfg.Format != FormatExt4 && cfg.Format != FormatSquashfs {
		return nil, fmt.Errorf("sandbox: unknown image format %q", cfg.Format)
	}
	if cfg.Init == "" {
		cfg.Init = DefaultInit
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	tmp, err := os.MkdirTemp(cfg.TempDir, "bencher-sandbox-")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	undo = append(undo, func() { os.RemoveAll(tmp) })

	loop, err := attachLoop(cfg.Image, cfg.Format == FormatSquashfs)
	if err != nil {
		return nil, err
	}
	// Closing our descriptor is safe once mounted; before that it detaches the device.
	defer loop.Close()

	cg, err := newCgroup(cfg.Limits)
	if err != nil {
		return nil, err
	}
	if cg != nil {
		undo = append(undo, cg.remove)
	}

	host, guest, err := socketPair()
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { host.Close() })
	defer guest.Close()

	consoleR, consoleW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	undo = append(undo, func() { consoleR.Close() })
	defer consoleW.Close()

	s := &Sandbox{conn: host, cg: cg, tmp: tmp, done: make(chan struct{})}
	started := make(chan error, 1)
	exited := make(chan exitState, 1)
	osthread.RunDisposable(func() { s.run(cfg, newRootLayout(tmp), loop.Name(), guest, consoleW, started, exited) })
	if err := <-started; err != nil {
		return nil, err
	}
	s.console.Go(func() { copyConsole(consoleR, cfg.Console) })
	go func() {
		e := <-exited
		s.state, s.waitErr = e.state, e.err
		if s.cg != nil {
			s.oomKills = s.cg.oomKills()
		}
		s.cleanup()
		close(s.done)
	}()
	return s, nil
}

type exitState struct {
	state *os.ProcessState
	err   error
}

// run is the body of the sandbox's own OS thread (osthread.RunDisposable): it enters the root,
// starts the init and waits for it. The thread dies afterwards; its mount namespace (and
// every mount in it) goes away once the init has exited too. Cleanup of host paths happens
// elsewhere: this thread's root is the sandbox's.
func (s *Sandbox) run(cfg Config, l rootLayout, loopDev string, guest, console *os.File, started chan<- error, exited chan<- exitState) {
	p, err := s.startInit(cfg, l, loopDev, guest, console)
	started <- err
	if err != nil {
		return
	}
	state, err := p.Wait()
	exited <- exitState{state, err}
}

// Precondition: on the disposable thread of run.
func (s *Sandbox) startInit(cfg Config, l rootLayout, loopDev string, guest, console *os.File) (*os.Process, error) {
	if cfg.CPUs > 0 {
		if err := restrictCPUs(cfg.CPUs); err != nil {
			return nil, err
		}
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		s.cpus = set.Count()
	}
	if err := enterRoot(l, loopDev, cfg.Format); err != nil {
		return nil, err
	}
	devnull, err := os.Open(os.DevNull) // the sandbox's /dev/null now
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer devnull.Close()
	sys := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP,
		Setsid:     true,
		// This thread lives until the init exits, so the init dies with the runner only.
		Pdeathsig: syscall.SIGKILL,
	}
	if s.cg != nil && s.cg.fd >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, s.cg.fd
	}
	p, err := os.StartProcess(cfg.Init, []string{cfg.Init, "--fd=3"}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []*os.File{devnull, console, console, guest},
		Sys:   sys,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: start init: %w", err)
	}
	if s.cg != nil {
		if err := s.cg.attach(p.Pid); err != nil {
			p.Kill()
			p.Wait()
			return nil, err
		}
	}
	s.pid = p.Pid
	return p, nil
}

// restrictCPUs sets the calling thread's affinity to the first n CPUs it may use; the init
// inherits it.
func restrictCPUs(n int) error {
	var have, want unix.CPUSet
	if err := unix.SchedGetaffinity(0, &have); err != nil {
		return fmt.Errorf("sandbox: cpu affinity: %w", err)
	}
	if n > have.Count() {
		return fmt.Errorf("sandbox: %d CPUs requested, %d available", n, have.Count())
	}
	for cpu := 0; want.Count() < n; cpu++ {
		if have.IsSet(cpu) {
			want.Set(cpu)
		}
	}
	if err := unix.SchedSetaffinity(0, &want); err != nil {
		return fmt.Errorf("sandbox: cpu affinity: %w", err)
	}
	return nil
}

func (s *Sandbox) cleanup() {
	if s.cg != nil {
		s.cg.remove()
	}
	if err := os.RemoveAll(s.tmp); err != nil {
		slog.Warn("sandbox: remove temporary directory", "dir", s.tmp, "err", err)
	}
}

// CPUs is the number of CPUs the init and its workload may run on.
func (s *Sandbox) CPUs() int { return s.cpus }

// Conn is the protocol connection to the init.
func (s *Sandbox) Conn() net.Conn { return s.conn }

// Pid is the init's process id (in the runner's PID namespace).
func (s *Sandbox) Pid() int { return s.pid }

// Kill ends the sandbox now: SIGKILL to its init ends the whole PID namespace.
func (s *Sandbox) Kill() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	if err := unix.Kill(s.pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
		return fmt.Errorf("sandbox: kill init: %w", err)
	}
	return nil
}

// Wait waits for the init to exit and the sandbox to be cleaned up, and returns the init's
// exit state.
func (s *Sandbox) Wait() (*os.ProcessState, error) {
	<-s.done
	s.console.Wait()
	return s.state, s.waitErr
}

// Done is closed when the sandbox has ended and been cleaned up.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// OOMKilled reports whether the cgroup's OOM killer killed a process (false without
// cgroup limits). Valid after Wait.
func (s *Sandbox) OOMKilled() bool { return s.oomKills > 0 }

// HasMemoryLimit reports whether the sandbox runs under a memory cgroup, which makes
// OOMKilled the run's own count rather than unknown.
func (s *Sandbox) HasMemoryLimit() bool { return s.cg != nil && s.cg.oomEvents != "" }

// Close kills the sandbox if it still runs, waits for its cleanup and closes the
// connection.
func (s *Sandbox) Close() error {
	err := s.Kill()
	_, werr := s.Wait()
	cerr := s.conn.Close()
	if errors.Is(cerr, net.ErrClosed) {
		cerr = nil
	}
	return errors.Join(err, werr, cerr)
}

// socketPair returns a connected Unix stream pair: the host end as a net.Conn, the init's
// end as a file to hand down.
func socketPair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	hostFile := os.NewFile(uintptr(fds[0]), "sandbox-host")
	defer hostFile.Close()
	host, err := net.FileConn(hostFile)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	return host, os.NewFile(uintptr(fds[1]), "sandbox-guest"), nil
}

// copyConsole forwards the init's log lines.
func copyConsole(r *os.File, w io.Writer) {
	defer r.Close()
	if w != nil {
		io.Copy(w, r)
		return
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		slog.Debug("sandbox: init", "line", sc.Text())
	}
}
