package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/vmbench/runner/protocol"
)

// Options say where the guest's output goes.
type Options struct {
	Stdout, Stderr io.Writer // written live, chunk by chunk; nil discards
	// OutputDir receives each requested output file as OutputDir/<base name of the guest
	// path>. Empty: files are received and verified, then discarded.
	OutputDir string
	// CancelGrace is how long the guest gets to report after Cancel (sent when ctx is
	// done) before the session gives up on the connection. 0 means DefaultCancelGrace.
	CancelGrace time.Duration
}

// DefaultCancelGrace covers the guest's own SIGTERM→SIGKILL grace plus reporting.
const DefaultCancelGrace = 10 * time.Second

// Result is what the guest reported.
type Result struct {
	Hello protocol.Hello
	Exit  protocol.Exit
	Files []File // one per requested output, in request order

	StdoutBytes, StderrBytes int64
	// OutputErr is the first error writing to Options.Stdout or Stderr (say, a closed pipe);
	// output after it was discarded, the run itself went on.
	OutputErr error

	// Host wall-clock times of the conversation's milestones.
	HelloAt, ExitAt, DoneAt time.Time
}

// File is one requested output file.
type File struct {
	Path      string // the guest path, as requested
	LocalPath string // where it was written; "" if discarded or failed
	Size      int64
	Mode      uint32 // st_mode in the guest
	Sha256    [32]byte
	Err       string // the guest's error (missing, not regular, too large, read error) or ours
}

// ProtocolError reports a guest that broke the conversation.
type ProtocolError struct {
	State string // what the session was waiting for
	Err   error
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("session: protocol error while %s: %v", e.State, e.Err)
}
func (e *ProtocolError) Unwrap() error { return e.Err }

// ErrNoExit is wrapped when the connection ended before the guest reported an Exit.
var ErrNoExit = errors.New("guest ended without reporting an exit status")

// Run holds one conversation on conn with cfg and returns the guest's report. When ctx is
// done it sends Cancel (the guest stops the workload as at a timeout and still reports)
// and gives the guest CancelGrace before abandoning the connection. Run does not close
// conn.
func Run(ctx context.Context, conn net.Conn, cfg protocol.RunConfig, opts Options) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.CancelGrace <= 0 {
		opts.CancelGrace = DefaultCancelGrace
	}
	s := &session{
		conn: conn,
		w:    protocol.NewWriter(conn),
		r:    protocol.NewReader(conn),
		cfg:  cfg,
		opts: opts,
		res:  &Result{},
	}
	stop := context.AfterFunc(ctx, s.cancel)
	defer stop()
	err := s.run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (cancelled: %w)", err, context.Cause(ctx))
	}
	return s.res, err
}

type session struct {
	conn net.Conn
	w    *protocol.Writer
	r    *protocol.Reader
	cfg  protocol.RunConfig
	opts Options
	res  *Result

	cancelOnce sync.Once
}

// cancel asks the guest to stop and bounds how long the session still waits.
func (s *session) cancel() {
	s.cancelOnce.Do(func() {
		if err := s.w.Write(protocol.Cancel{}); err != nil {
			slog.Debug("session: send cancel", "err", err)
		}
		s.conn.SetReadDeadline(time.Now().Add(s.opts.CancelGrace))
	})
}

func (s *session) run() error {
	m, err := s.r.Read()
	if err != nil {
		return s.readErr("waiting for Hello", err)
	}
	hello, ok := m.(protocol.Hello)
	if !ok {
		return &ProtocolError{"waiting for Hello", fmt.Errorf("got %v", m.Type())}
	}
	s.res.HelloAt = time.Now()
	s.res.Hello = hello
	if err := protocol.CheckHello(hello); err != nil {
		return err
	}
	if err := s.w.Write(s.cfg); err != nil {
		return fmt.Errorf("session: send run config: %w", err)
	}
	if err := s.streams(); err != nil {
		return err
	}
	s.res.ExitAt = time.Now()
	s.res.Files = make([]File, 0, len(s.cfg.Outputs))
	for _, want := range s.cfg.Outputs {
		f, err := s.receiveFile(want)
		if err != nil {
			return err
		}
		s.res.Files = append(s.res.Files, f)
	}
	if m, err = s.r.Read(); err != nil {
		return s.readErr("waiting for Done", err)
	}
	if _, ok := m.(protocol.Done); !ok {
		return &ProtocolError{"waiting for Done", fmt.Errorf("got %v", m.Type())}
	}
	s.res.DoneAt = time.Now()
	if err := s.w.Write(protocol.Ack{}); err != nil {
		return fmt.Errorf("session: send ack: %w", err)
	}
	return nil
}

// streams copies Stdout/Stderr chunks to the writers until Exit arrives.
func (s *session) streams() error {
	for {
		m, err := s.r.Read()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("session: %w: %w", ErrNoExit, err)
			}
			return s.readErr("streaming output", err)
		}
		switch m := m.(type) {
		case protocol.Data:
			s.output(m)
		case protocol.Exit:
			s.res.Exit = m
			return nil
		default:
			return &ProtocolError{"streaming output", fmt.Errorf("got %v", m.Type())}
		}
	}
}

func (s *session) output(d protocol.Data) {
	w := s.opts.Stdout
	if d.Stream == protocol.Stderr {
		w = s.opts.Stderr
		s.res.StderrBytes += int64(len(d.Bytes))
	} else {
		s.res.StdoutBytes += int64(len(d.Bytes))
	}
	if w == nil || s.res.OutputErr != nil {
		return
	}
	if _, err := w.Write(d.Bytes); err != nil {
		s.res.OutputErr = fmt.Errorf("session: write %v: %w", d.Stream, err)
	}
}

// readErr wraps an error from the reader: protocol violations become *ProtocolError,
// transport errors stay as they are.
func (s *session) readErr(state string, err error) error {
	if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrFrameTooLarge) {
		return &ProtocolError{state, err}
	}
	return fmt.Errorf("session: %s: %w", state, err)
}
