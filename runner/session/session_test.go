package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/guest"
	"github.com/vmbench/runner/protocol"
)

// socketPair returns the two ends of a connected Unix stream socket pair.
func socketPair(t testing.TB) (host, guestEnd net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// withGuest runs the real init logic (guest.Serve, as an ordinary process on this host)
// on one end of a socket pair and the session on the other.
func withGuest(t *testing.T, ctx context.Context, cfg protocol.RunConfig, opts Options) (*Result, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the guest hardens its workload, which needs root (CAP_SETPCAP, CAP_SETUID)")
	}
	host, g := socketPair(t)
	served := make(chan error, 1)
	go func() { served <- guest.Serve(g, guest.Options{Root: guest.SystemRoot}) }()
	res, err := Run(ctx, host, cfg, opts)
	if serr := <-served; err == nil && serr != nil {
		t.Fatalf("guest: %v", serr)
	}
	return res, err
}

func sh(script string) protocol.RunConfig {
	return protocol.RunConfig{Argv: []string{"/bin/sh", "-c", script}, WorkDir: "/"}
}

func TestBasicRun(t *testing.T) {
	var out, errb bytes.Buffer
	res, err := withGuest(t, context.Background(), sh("echo hello from vm; echo oops >&2; exit 3"),
		Options{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello from vm\n" || errb.String() != "oops\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
	if res.Exit.Code != 3 || res.Hello.Version != protocol.Version || res.StdoutBytes != 14 || res.StderrBytes != 5 {
		t.Fatalf("result %+v", res)
	}
	if res.Exit.InitMaxRSS <= 0 || res.DoneAt.Before(res.HelloAt) {
		t.Fatalf("result %+v", res)
	}
}

func TestOutputFiles(t *testing.T) {
	src := t.TempDir()
	dst := t.TempDir()
	content := bytes.Repeat([]byte("x"), 3<<20+17)
	os.WriteFile(filepath.Join(src, "big.bin"), content, 0o600)
	cfg := sh(`echo '{"result": 42}' > ` + src + `/output.json`)
	cfg.Outputs = []string{src + "/output.json", src + "/missing.txt", src + "/big.bin"}
	res, err := withGuest(t, context.Background(), cfg, Options{OutputDir: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 3 {
		t.Fatalf("files %+v", res.Files)
	}
	got, err := os.ReadFile(filepath.Join(dst, "output.json"))
	if err != nil || string(got) != "{\"result\": 42}\n" || res.Files[0].LocalPath != filepath.Join(dst, "output.json") {
		t.Fatalf("output.json: %q %v %+v", got, err, res.Files[0])
	}
	if f := res.Files[1]; f.Err == "" || f.LocalPath != "" || !strings.Contains(f.Err, "no such file") {
		t.Fatalf("missing file: %+v", f)
	}
	big, err := os.ReadFile(filepath.Join(dst, "big.bin"))
	if err != nil || !bytes.Equal(big, content) || res.Files[2].Sha256 != sha256.Sum256(content) {
		t.Fatalf("big.bin: %d bytes, %v", len(big), err)
	}
	if st, _ := os.Stat(filepath.Join(dst, "big.bin")); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	entries, _ := os.ReadDir(dst)
	if len(entries) != 2 {
		t.Fatalf("output dir has %d entries (temporary files left?)", len(entries))
	}
}

// Cancelling the context makes the guest stop the workload and still report.
func TestCancelReports(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, err := withGuest(t, ctx, sh("echo started; sleep 30"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Exit.Cancelled || res.Exit.Signal != int32(syscall.SIGTERM) || time.Since(start) > 5*time.Second {
		t.Fatalf("exit %+v after %v", res.Exit, time.Since(start))
	}
}

func TestGuestTimeout(t *testing.T) {
	cfg := sh("sleep 30")
	cfg.Timeout = 300 * time.Millisecond
	res, err := withGuest(t, context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Exit.TimedOut {
		t.Fatalf("exit %+v", res.Exit)
	}
}

// A stdout writer that fails does not stop the run; the error is reported.
func TestOutputWriterFailure(t *testing.T) {
	res, err := withGuest(t, context.Background(), sh("echo a; echo b >&2"), Options{Stdout: failWriter{}, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if res.OutputErr == nil || res.Exit.Code != 0 || res.StderrBytes != 2 {
		t.Fatalf("result %+v", res)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

// fakeGuest plays a hostile or broken guest: it sends Hello, reads the RunConfig and then
// writes the given messages.
func fakeGuest(t *testing.T, hello protocol.Hello, msgs ...protocol.Message) net.Conn {
	t.Helper()
	host, g := socketPair(t)
	go func() {
		w := protocol.NewWriter(g)
		w.Write(hello)
		if _, err := protocol.NewReader(g).Read(); err != nil {
			return
		}
		for _, m := range msgs {
			if w.Write(m) != nil {
				return
			}
		}
		g.Close()
	}()
	return host
}

func TestProtocolViolations(t *testing.T) {
	v := protocol.Hello{Version: protocol.Version}
	content := []byte("abc")
	sum := sha256.Sum256(content)
	cfg := sh("true")
	cfg.Outputs = []string{"/out/a.txt"}
	tests := []struct {
		name string
		msgs []protocol.Message
		want any
	}{
		{"exit before hello is answered twice", []protocol.Message{protocol.Hello{Version: protocol.Version}}, &ProtocolError{}},
		{"file before exit", []protocol.Message{protocol.File{Path: "/out/a.txt"}}, &ProtocolError{}},
		{"wrong file path", []protocol.Message{protocol.Exit{}, protocol.File{Path: "/etc/passwd", Size: 3}}, &ProtocolError{}},
		{"more bytes than announced", []protocol.Message{protocol.Exit{}, protocol.File{Path: "/out/a.txt", Size: 2},
			protocol.FileData{Bytes: content}}, &ProtocolError{}},
		{"fewer bytes than announced", []protocol.Message{protocol.Exit{}, protocol.File{Path: "/out/a.txt", Size: 4},
			protocol.FileData{Bytes: content}, protocol.FileEnd{Sha256: sum}}, &ProtocolError{}},
		{"wrong digest", []protocol.Message{protocol.Exit{}, protocol.File{Path: "/out/a.txt", Size: 3},
			protocol.FileData{Bytes: content}, protocol.FileEnd{Sha256: [32]byte{1}}}, &ProtocolError{}},
		{"data after exit", []protocol.Message{protocol.Exit{}, protocol.Data{Stream: protocol.Stdout, Bytes: content}}, &ProtocolError{}},
		{"no done", []protocol.Message{protocol.Exit{}, protocol.File{Path: "/out/a.txt", Err: "gone"}, protocol.Exit{}}, &ProtocolError{}},
		{"hangs up before exit", []protocol.Message{protocol.Data{Stream: protocol.Stdout, Bytes: content}}, ErrNoExit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := t.TempDir()
			_, err := Run(context.Background(), fakeGuest(t, v, tt.msgs...), cfg, Options{OutputDir: dst})
			switch want := tt.want.(type) {
			case *ProtocolError:
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("got %v, want a ProtocolError", err)
				}
			case error:
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
			if entries, _ := os.ReadDir(dst); len(entries) != 0 {
				t.Fatalf("left %d files in the output dir", len(entries))
			}
		})
	}
}

func TestVersionMismatch(t *testing.T) {
	_, err := Run(context.Background(), fakeGuest(t, protocol.Hello{Version: 99}), sh("true"), Options{})
	var ve *protocol.VersionError
	if !errors.As(err, &ve) || ve.Got != 99 {
		t.Fatalf("got %v", err)
	}
}

func TestInvalidConfigRejectedBeforeSending(t *testing.T) {
	if _, err := Run(context.Background(), nil, protocol.RunConfig{WorkDir: "/"}, Options{}); err == nil {
		t.Fatal("empty command accepted")
	}
}

func TestLocalName(t *testing.T) {
	for in, want := range map[string]string{"/tmp/output.json": "output.json", "/a/b/": "b", "/": "", "/x/..": ""} {
		if got := LocalName(in); got != want {
			t.Errorf("LocalName(%q) = %q, want %q", in, got, want)
		}
	}
}

// A system setup failure in the guest (say, the root could not be made writable) is
// reported as the run's failure; the command is not started.
func TestGuestSetupFailureReported(t *testing.T) {
	host, g := socketPair(t)
	go guest.Serve(g, guest.Options{Root: guest.SystemRoot, SetupErr: errors.New("root: remount read-write: EROFS")})
	res, err := Run(context.Background(), host, sh("echo should not run"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Exit.Failure != protocol.FailureSetup || !strings.Contains(res.Exit.Message, "EROFS") || res.StdoutBytes != 0 {
		t.Fatalf("exit %+v", res.Exit)
	}
}
