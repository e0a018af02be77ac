package guest

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/protocol"
)

// ProcessTree is the set of processes the init is responsible for, and how it signals and
// reaps them.
type ProcessTree struct {
	// All is set when the init is PID 1 of a VM or PID namespace: every other process is the
	// workload's, so it signals them with kill(-1, sig) (which spares the caller) and reaps
	// with wait4(-1) until none is left, including orphans re-parented to it. Otherwise (tests)
	// only the command's process group is signalled and only the command is reaped.
	All bool
}

// signal sends sig to the workload: every process, or the process group pgid.
func (t ProcessTree) signal(pgid int, sig syscall.Signal) {
	target := -pgid
	if t.All {
		target = -1
	}
	if err := unix.Kill(target, sig); err != nil && err != unix.ESRCH {
		slog.Error("signal workload", "signal", sig, "err", err)
	}
}

// reap waits for the command pid and sends its status on status. With All it then keeps
// reaping until the init has no child left. It returns when there is nothing left to reap.
func (t ProcessTree) reap(pid int, status chan<- unix.WaitStatus) {
	wpid := pid
	if t.All {
		wpid = -1
	}
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(wpid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // ECHILD: nothing left
		}
		if got == pid {
			status <- ws
			if !t.All {
				return
			}
		}
	}
}

// RunOptions are the limits and hooks of one run.
type RunOptions struct {
	Tree      ProcessTree
	Timeout   time.Duration   // 0 = none
	KillGrace time.Duration   // between SIGTERM and SIGKILL at timeout or cancel
	Cancel    <-chan struct{} // closed when the host asks to stop the workload
	// Clock returns the guest timestamp recorded in Exit (CLOCK_BOOTTIME based).
	Clock func() time.Duration
}

// terminator ends the workload once: SIGTERM to the tree, then SIGKILL after the grace
// period unless the command is reaped first.
type terminator struct {
	tree  ProcessTree
	pgid  int
	grace time.Duration

	mu       sync.Mutex
	started  bool        // guarded by mu
	finished bool        // guarded by mu: the command was reaped; nothing more to do
	kill     *time.Timer // guarded by mu
}

func (k *terminator) terminate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.started || k.finished {
		return
	}
	k.started = true
	k.tree.signal(k.pgid, syscall.SIGTERM)
	k.kill = time.AfterFunc(k.grace, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if !k.finished {
			k.tree.signal(k.pgid, syscall.SIGKILL)
		}
	})
}

func (k *terminator) finish() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.finished = true
	if k.kill != nil {
		k.kill.Stop()
	}
}

// pipeSize is requested for the stdout/stderr pipes: one read then drains up to a MaxChunk
// frame, so a fast writer costs few guest syscalls per MiB.
const pipeSize = protocol.MaxChunk

// Run starts cmd, streams its stdout and stderr to w as they arrive, enforces the timeout
// and cancellation on the whole tree, and returns its Exit once the command was reaped, every
// remaining process killed and both streams drained. Start failures are reported in the Exit
// (Failure), never as an error; the error is for the protocol stream breaking.
func Run(cmd *Command, w *protocol.Writer, opts RunOptions) (protocol.Exit, error) {
	var exit protocol.Exit
	outR, outW, err := os.Pipe()
	if err != nil {
		return setupFailure(exit, fmt.Errorf("stdout pipe: %w", err)), nil
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return setupFailure(exit, fmt.Errorf("stderr pipe: %w", err)), nil
	}
	setPipeSize(outR)
	setPipeSize(errR)

	oomBefore := oomKills()
	exit.Started = opts.Clock()
	p, err := cmd.start(outW, errW)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		var f *Failure
		if !errors.As(err, &f) {
			f = &Failure{protocol.FailureSetup, err}
		}
		exit.Failure, exit.Message = f.Kind, f.Error()
		exit.Ended = opts.Clock()
		return exit, nil
	}
	pid := p.Pid

	kill := &terminator{tree: opts.Tree, pgid: pid, grace: opts.KillGrace}
	var streamErr atomic.Pointer[error]
	onWriteErr := func(err error) {
		// The host is gone: nobody will see the result, stop the workload now.
		streamErr.CompareAndSwap(nil, &err)
		kill.terminate()
	}
	var pumps sync.WaitGroup
	pumps.Go(func() { pump(outR, protocol.TypeStdout, w, onWriteErr) })
	pumps.Go(func() { pump(errR, protocol.TypeStderr, w, onWriteErr) })

	status := make(chan unix.WaitStatus, 1)
	reaped := make(chan struct{})
	go func() {
		opts.Tree.reap(pid, status)
		close(reaped)
	}()

	var timedOut, cancelled atomic.Bool
	var timer *time.Timer
	if opts.Timeout > 0 {
		timer = time.AfterFunc(opts.Timeout, func() {
			timedOut.Store(true)
			kill.terminate()
		})
	}
	cancel := opts.Cancel
	var ws unix.WaitStatus
wait:
	for {
		select {
		case ws = <-status:
			break wait
		case <-cancel:
			cancelled.Store(true)
			kill.terminate()
			cancel = nil
		}
	}
	exit.Ended = opts.Clock()
	if timer != nil {
		timer.Stop()
	}
	kill.finish()
	// Like a container whose main process ended: whatever it left behind is killed, so no
	// process outlives the run and both pipes reach EOF.
	opts.Tree.signal(pid, syscall.SIGKILL)
	pumps.Wait()
	<-reaped
	p.Release()

	exit.TimedOut = timedOut.Load()
	exit.Cancelled = cancelled.Load()
	switch {
	case ws.Exited():
		exit.Code = int32(ws.ExitStatus())
	case ws.Signaled():
		exit.Signal = int32(ws.Signal())
	}
	if oomBefore >= 0 && oomKills() > oomBefore {
		exit.OOMKilled = true
	}
	if e := streamErr.Load(); e != nil {
		return exit, *e
	}
	return exit, nil
}

func setupFailure(exit protocol.Exit, err error) protocol.Exit {
	exit.Failure, exit.Message = protocol.FailureSetup, err.Error()
	return exit
}

// pump copies one of the command's streams to w, a frame per read, until EOF. After a
// write error it keeps draining (and discarding) so that the writer never blocks on a full
// pipe while it is being killed.
func pump(r *os.File, t protocol.Type, w *protocol.Writer, onWriteErr func(error)) {
	defer r.Close()
	buf := make([]byte, protocol.HeaderSize+protocol.MaxChunk)
	failed := false
	for {
		n, err := r.Read(buf[protocol.HeaderSize:])
		if n > 0 && !failed {
			if werr := w.WriteFrame(t, buf[:protocol.HeaderSize+n]); werr != nil {
				failed = true
				onWriteErr(werr)
			}
		}
		if err != nil {
			return
		}
	}
}

// setPipeSize enlarges a pipe (best effort; the default is 64 KiB).
func setPipeSize(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize)
	})
}

// oomKills returns the kernel's count of OOM kills (the oom_kill line of /proc/vmstat), or
// -1 if unknown.
func oomKills() int64 {
	b, err := readSmallFile("/proc/vmstat")
	if err != nil {
		return -1
	}
	return vmstatField(b, "oom_kill")
}

// vmstatField returns the value of the "name value" line in /proc/vmstat content, or -1.
func vmstatField(b []byte, name string) int64 {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) > len(name)+1 && string(line[:len(name)]) == name && line[len(name)] == ' ' {
			var n int64
			for _, c := range line[len(name)+1:] {
				if c < '0' || c > '9' {
					return -1
				}
				n = n*10 + int64(c-'0')
			}
			return n
		}
	}
	return -1
}
