package guest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/protocol"
)

// Main is bencher-init's main: args are its arguments without argv[0]. In a VM it powers
// the machine off at the end and returns only if that fails; in the sandbox it returns the
// init's exit status (0 when the host received the whole result).
func Main(args []string) int {
	clock := newClock()
	start := clock()
	a, ignored := ParseArgs(args)
	pid1 := os.Getpid() == 1
	var stampErr error
	if pid1 && a.Mode == ModeVM {
		stampErr = stampBootTimer() // first: it marks "userspace reached" for the VMM
	}
	ignoreSignals()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if stampErr != nil {
		slog.Error("boot timer", "err", stampErr)
	}
	if pid1 && a.Mode == ModeVM {
		// One console line marks "userspace reached" for anyone reading the console (the
		// boot benchmarks compare VMMs by it); the boot timer above is the precise stamp.
		slog.Info(StartedMessage)
	}
	if len(ignored) > 0 {
		slog.Debug("ignored arguments", "args", ignored)
	}

	var setupErr error
	if pid1 {
		setupErr = setupSystem(a.Mode)
		if setupErr == nil {
			setupErr = bringUpLoopback()
		}
		if setupErr != nil {
			slog.Error("system setup", "err", setupErr)
		}
	}

	status := 0
	conn, err := Connect(a)
	if err == nil {
		err = Serve(conn, Options{SetupErr: setupErr, PID1: pid1, Root: SystemRoot, Clock: clock, Start: start})
	}
	if err != nil {
		slog.Error("bencher-init", "err", err)
		status = 1
	}
	if pid1 && a.Mode == ModeVM {
		if err := powerOff(); err != nil {
			slog.Error("bencher-init", "err", err)
		}
		return 1
	}
	return status
}

// StartedMessage is the init's first console line in a VM.
const StartedMessage = "bencher-init started"

// newClock returns a clock reading CLOCK_BOOTTIME with one syscall at start and the Go
// monotonic clock afterwards.
func newClock() func() time.Duration {
	start, t0 := bootTime(), time.Now()
	return func() time.Duration { return start + time.Since(t0) }
}

// ignoredSignals would end or stop a Go process by default. The init takes them all and
// drops them: a workload must not end the run by signalling PID 1 (busybox "reboot" without
// -f sends SIGTERM to PID 1). Handlers, unlike SIG_IGN, are reset at exec, so the workload
// still gets default dispositions.
var ignoredSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTSTP, syscall.SIGTTIN,
	syscall.SIGTTOU, syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGVTALRM, syscall.SIGPROF,
	syscall.SIGPWR, syscall.SIGSTKFLT, syscall.SIGIO,
}

func ignoreSignals() {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, ignoredSignals...)
	go func() {
		for range ch {
		}
	}()
}

// Options configure Serve.
type Options struct {
	// SetupErr is a system setup failure; it is reported as the run's Failure instead of
	// running the command.
	SetupErr error
	// PID1 says the init owns the system: it sets the hostname and signals and reaps every
	// process. Tests run Serve as an ordinary process with PID1 false.
	PID1 bool
	Root Root
	// Clock gives the timestamps of Hello and Exit; nil uses CLOCK_BOOTTIME.
	Clock func() time.Duration
	// Start is when the init's main began, on Clock (Hello.InitStart); 0 means now.
	Start time.Duration
}

// Serve runs one conversation on conn: Hello, RunConfig, the command with live output,
// Exit, the output files, Done, and then waits for the host's Ack (or for the connection to
// close). It closes conn. The error reports a protocol failure; the command's own failure
// travels in Exit.
func Serve(conn net.Conn, opts Options) error {
	defer conn.Close()
	if opts.Clock == nil {
		opts.Clock = newClock()
	}
	w := protocol.NewWriter(conn)
	r := protocol.NewReader(conn)
	if opts.Start == 0 {
		opts.Start = opts.Clock()
	}
	if err := w.Write(protocol.Hello{Version: protocol.Version, InitStart: opts.Start}); err != nil {
		return err
	}
	m, err := r.Read()
	if err != nil {
		return fmt.Errorf("read run config: %w", err)
	}
	cfg, ok := m.(protocol.RunConfig)
	if !ok {
		return fmt.Errorf("read run config: got %v", m.Type())
	}
	received := opts.Clock()

	host := watchHost(r)
	exit, runErr := execute(&cfg, w, host.cancel, opts)
	exit.ConfigReceived = received
	exit.InitMaxRSS = maxRSS()
	if runErr != nil {
		return runErr
	}
	slog.Info("command ended", "code", exit.Code, "signal", exit.Signal, "timed_out", exit.TimedOut, "failure", exit.Failure)
	if err := w.Write(exit); err != nil {
		return err
	}
	// One frame buffer carries every file's chunks (the pumps' buffers are garbage now).
	buf := make([]byte, protocol.HeaderSize+protocol.MaxChunk)
	if err := SendOutputs(w, cfg.Outputs, cfg.MaxFileSize, buf); err != nil {
		return err
	}
	if err := w.Write(protocol.Done{}); err != nil {
		return err
	}
	<-host.ended
	if !host.acked {
		return fmt.Errorf("no acknowledgement from the host: %w", host.err)
	}
	return nil
}

// execute runs cfg and returns its Exit; the error is for the protocol stream breaking.
func execute(cfg *protocol.RunConfig, w *protocol.Writer, cancel <-chan struct{}, opts Options) (protocol.Exit, error) {
	if opts.SetupErr != nil {
		return protocol.Exit{Failure: protocol.FailureSetup, Message: opts.SetupErr.Error()}, nil
	}
	if opts.PID1 {
		name := cfg.Hostname
		if name == "" {
			name = protocol.DefaultHostname
		}
		if err := unix.Sethostname([]byte(name)); err != nil {
			return protocol.Exit{Failure: protocol.FailureSetup, Message: fmt.Sprintf("hostname: %v", err)}, nil
		}
	}
	cmd, err := Prepare(cfg, opts.Root)
	if err != nil {
		var f *Failure
		if !errors.As(err, &f) {
			f = &Failure{protocol.FailureSetup, err}
		}
		return protocol.Exit{Failure: f.Kind, Message: f.Error()}, nil
	}
	grace := cfg.KillGrace
	if grace == 0 {
		grace = protocol.DefaultKillGrace
	}
	return Run(cmd, w, RunOptions{
		Tree:      ProcessTree{All: opts.PID1},
		Timeout:   cfg.Timeout,
		KillGrace: grace,
		Cancel:    cancel,
		Clock:     opts.Clock,
	})
}

// hostWatch follows what the host sends after RunConfig: Cancel, then Ack.
type hostWatch struct {
	cancel chan struct{} // closed on Cancel or when the host goes away
	ended  chan struct{} // closed on Ack or when the host goes away
	acked  bool          // valid after ended is closed
	err    error         // why the host went away; valid after ended is closed
}

func watchHost(r *protocol.Reader) *hostWatch {
	h := &hostWatch{cancel: make(chan struct{}), ended: make(chan struct{})}
	var once sync.Once
	stop := func() { once.Do(func() { close(h.cancel) }) }
	go func() {
		defer close(h.ended)
		defer stop()
		for {
			m, err := r.Read()
			if err != nil {
				h.err = err
				return
			}
			switch m.(type) {
			case protocol.Cancel:
				stop()
			case protocol.Ack:
				h.acked = true
				return
			default:
				h.err = fmt.Errorf("unexpected %v from the host", m.Type())
				return
			}
		}
	}()
	return h
}
