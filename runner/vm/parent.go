package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vmbench/runner/vmm/jail"
)

// Config describes one microVM run.
type Config struct {
	// Exe is the runner binary re-executed as the VMM child ("" = this executable).
	Exe string
	// RunDir is the per-run directory; it must already hold the rootfs copy (RootfsName).
	RunDir string
	// ReadOnly: the rootfs is a read-only image (squashfs).
	ReadOnly bool
	// Kernel is the host path of the guest kernel.
	Kernel string
	// KVMDevice is the KVM device ("" = /dev/kvm).
	KVMDevice string
	// Cmdline is the complete kernel command line except the virtio-mmio device words.
	Cmdline     string
	VCPUs       int
	MemoryMiB   int
	CPUTemplate string
	// Serial is the virtio-blk serial number (the run ID).
	Serial string
	// InitPort is the host vsock port the guest init connects to.
	InitPort uint32
	// Console receives the guest's serial console as it comes (nil = discard); the last
	// ConsoleTailSize bytes are kept for error messages either way.
	Console io.Writer
	// NoJail runs the VMM child unconfined (debugging only).
	NoJail   bool
	LogLevel string
	// SelfTest is passed to the child (tests only).
	SelfTest string
	Logger   *slog.Logger
}

// ConsoleTailSize is how much of the end of the guest console is kept for diagnostics.
const ConsoleTailSize = 16 << 10

// VM is a running microVM.
type VM struct {
	cfg       Config
	cmd       *exec.Cmd
	listener  *net.UnixListener
	started   chan Event // receives the "started" event (or is closed without one)
	exit      chan Event // receives the "exit" event (or is closed without one)
	console   *tailBuffer
	copied    sync.WaitGroup // console copier
	waitOnce  sync.Once
	waitErr   error
	done      chan struct{} // closed when the child has been reaped
	cmdErr    error         // the child's exit status; set before done is closed
	exitEvent Event
}

// Start listens for the guest init's connection and starts the VMM child. The VM runs
// until the guest powers off, Stop or Kill is called, or the child fails.
func Start(cfg Config) (*VM, error) {
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("vm: find runner executable: %w", err)
		}
		cfg.Exe = exe
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l, err := listenIn(cfg.RunDir, VsockName+"_"+strconv.FormatUint(uint64(cfg.InitPort), 10))
	if err != nil {
		return nil, fmt.Errorf("vm: listen for the guest init: %w", err)
	}

	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("vm: %w", err)
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		l.Close()
		cfgR.Close()
		cfgW.Close()
		return nil, fmt.Errorf("vm: %w", err)
	}
	conR, conW, err := os.Pipe()
	if err != nil {
		l.Close()
		cfgR.Close()
		cfgW.Close()
		evR.Close()
		evW.Close()
		return nil, fmt.Errorf("vm: %w", err)
	}

	cmd := exec.Command(cfg.Exe, "vmm")
	cmd.Env = []string{} // the VMM needs nothing from the runner's environment
	cmd.Stdin = nil
	cmd.Stdout = conW
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{cfgR, evW}
	if !cfg.NoJail {
		cmd.SysProcAttr = jail.SysProcAttr()
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	}
	err = cmd.Start()
	// The child holds its own copies now.
	cfgR.Close()
	evW.Close()
	conW.Close()
	if err != nil {
		l.Close()
		cfgW.Close()
		evR.Close()
		conR.Close()
		return nil, fmt.Errorf("vm: start VMM process: %w", err)
	}

	v := &VM{
		cfg:      cfg,
		cmd:      cmd,
		listener: l,
		started:  make(chan Event, 1),
		exit:     make(chan Event, 1),
		console:  newTailBuffer(ConsoleTailSize),
		done:     make(chan struct{}),
	}
	go func() {
		// Reap the child as soon as it ends, so Accept and Started notice at once.
		v.cmdErr = v.cmd.Wait()
		close(v.done)
	}()
	v.copied.Add(1)
	go v.copyConsole(conR)
	go v.readEvents(evR)

	cc := ChildConfig{
		RunDir:      cfg.RunDir,
		Kernel:      cfg.Kernel,
		KVMDevice:   cfg.KVMDevice,
		ReadOnly:    cfg.ReadOnly,
		Cmdline:     cfg.Cmdline,
		VCPUs:       cfg.VCPUs,
		MemoryMiB:   cfg.MemoryMiB,
		CPUTemplate: cfg.CPUTemplate,
		Serial:      cfg.Serial,
		Jail:        !cfg.NoJail,
		LogLevel:    cfg.LogLevel,
		SelfTest:    cfg.SelfTest,
	}
	err = json.NewEncoder(cfgW).Encode(cc)
	cfgW.Close()
	if err != nil {
		v.Kill()
		v.Wait()
		return nil, fmt.Errorf("vm: send config to the VMM process: %w", err)
	}
	return v, nil
}

// PID is the VMM child's process ID (in the runner's PID namespace).
func (v *VM) PID() int { return v.cmd.Process.Pid }

func (v *VM) copyConsole(r *os.File) {
	defer v.copied.Done()
	defer r.Close()
	var w io.Writer = v.console
	if v.cfg.Console != nil {
		w = io.MultiWriter(v.console, v.cfg.Console)
	}
	io.Copy(w, r) //nolint:errcheck // ends when the child exits
}

func (v *VM) readEvents(r *os.File) {
	defer r.Close()
	defer close(v.exit)
	defer close(v.started)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			v.cfg.Logger.Warn("vm: bad event from the VMM process", "err", err)
			continue
		}
		switch ev.Kind {
		case "started":
			select {
			case v.started <- ev:
			default:
			}
		case "exit":
			select {
			case v.exit <- ev:
			default:
			}
		}
	}
}

// Started waits until the VM is built and confined and its vCPUs are about to run.
func (v *VM) Started(ctx context.Context) (Event, error) {
	select {
	case ev, ok := <-v.started:
		if !ok {
			return Event{}, v.failure()
		}
		return ev, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// Accept waits for the guest init to connect (through hybrid vsock) and returns the
// connection. It fails when ctx ends or the VM ends first.
func (v *VM) Accept(ctx context.Context) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := v.listener.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("vm: accept the guest init: %w", r.err)
		}
		// One init per VM: nobody else may connect.
		v.listener.Close()
		return r.c, nil
	case <-v.done:
		v.listener.Close()
		return nil, v.failure()
	case <-ctx.Done():
		v.listener.Close()
		return nil, ctx.Err()
	}
}

// failure explains why the VM ended before doing what was expected of it.
func (v *VM) failure() error {
	ev, err := v.Wait()
	if err != nil {
		return err
	}
	return fmt.Errorf("vm: the guest ended (%s) before its init connected%s", ev.Reason, v.consoleHint())
}

func (v *VM) consoleHint() string {
	if tail := v.ConsoleTail(); tail != "" {
		return "; end of the guest console:\n" + tail
	}
	return ""
}

// Wait waits for the VMM process to end and returns its exit report.
func (v *VM) Wait() (Event, error) {
	v.waitOnce.Do(func() {
		<-v.done
		err := v.cmdErr
		v.listener.Close()
		v.copied.Wait()
		ev, ok := <-v.exit
		switch {
		case !ok && err != nil:
			v.waitErr = fmt.Errorf("vm: VMM process: %w%s", describeExit(err), v.consoleHint())
		case !ok:
			v.waitErr = fmt.Errorf("vm: %w", errChildGone)
		case ev.Error != "":
			v.waitErr = fmt.Errorf("%s%s", ev.Error, v.consoleHint())
		}
		v.exitEvent = ev
	})
	return v.exitEvent, v.waitErr
}

func describeExit(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			if ws.Signal() == syscall.SIGSYS {
				return fmt.Errorf("killed by its seccomp filter (SIGSYS: a forbidden system call)")
			}
			return fmt.Errorf("killed by %v", ws.Signal())
		}
	}
	return err
}

// Stop asks the VMM to stop the VM (SIGTERM; it reports and exits), and kills it if it has
// not ended within grace.
func (v *VM) Stop(grace time.Duration) {
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(grace):
		v.Kill()
	}
}

// Kill ends the VM at once (SIGKILL to the VMM, PID 1 of its namespace).
func (v *VM) Kill() { _ = v.cmd.Process.Kill() }

// ConsoleTail returns the last ConsoleTailSize bytes of the guest console.
func (v *VM) ConsoleTail() string { return v.console.String() }

// maxSunPath is the longest Unix socket path bind(2) takes (sizeof(sun_path) - 1).
const maxSunPath = 107

// listenIn listens on the Unix socket dir/name. A socket path longer than sun_path allows
// (a deep work directory) is bound through /proc/self/fd/N/name, a short name for the same
// directory. The socket file goes away with the run directory.
func listenIn(dir, name string) (*net.UnixListener, error) {
	path := filepath.Join(dir, name)
	if len(path) > maxSunPath {
		d, err := os.Open(dir)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		path = fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	return l, nil
}
