package guest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/internal/syncbuf"
	"github.com/vmbench/runner/protocol"
)

// The test binary doubles as a workload (os/exec's helper-process pattern): with
// GUEST_TEST_HELPER set it runs that helper instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("GUEST_TEST_HELPER") {
	case "":
		os.Exit(m.Run())
	case "probe":
		probe()
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper")
		os.Exit(2)
	}
}

// probe prints what the workload sees of its own privileges, one "key=value" per line.
func probe() {
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Seccomp") {
			fmt.Printf("%s=%s\n", k, strings.TrimSpace(v))
		}
	}
	groups, _ := unix.Getgroups()
	fmt.Printf("uid=%d\ngid=%d\ngroups=%v\n", unix.Getuid(), unix.Getgid(), groups)
	sid, _ := unix.Getsid(0)
	fmt.Printf("own_session=%v\n", sid == unix.Getpid())
	n, err := os.Stdin.Read(make([]byte, 1))
	fmt.Printf("stdin=%d,%v\n", n, err)
	wd, _ := os.Getwd()
	fmt.Printf("cwd=%s\nhome=%s\n", wd, os.Getenv("HOME"))
	errno := func(err error) string {
		if err == nil {
			return "ok"
		}
		return err.(unix.Errno).Error()
	}
	_, err = unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
	fmt.Printf("keyctl=%s\n", errno(err))
	fmt.Printf("kill_init_probe=%s\n", errno(unix.Kill(1, 0)))
	fmt.Printf("tgkill_init=%s\n", errno(unix.Tgkill(1, 1, 0)))
	_, err = unix.PidfdOpen(1, 0)
	fmt.Printf("pidfd_open_init=%s\n", errno(err))
	// Without the filter this would fail with ENOENT (the target is looked up before any
	// permission check); the filter answers EPERM before the kernel looks at anything.
	fmt.Printf("mount=%s\n", errno(unix.Mount("none", "/nonexistent-bencher-probe", "tmpfs", 0, "")))
}

// helperCopy copies the test binary into a world-readable directory, so that any uid can
// execute it, and returns its path.
func helperCopy(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "guest-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "helper")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// testRoot writes passwd and group files and returns a Root pointing at them.
func testRoot(t *testing.T) Root {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/passwd", []byte(testPasswd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/group", []byte(testGroup), 0o644); err != nil {
		t.Fatal(err)
	}
	return Root{Passwd: dir + "/passwd", Group: dir + "/group"}
}

// captured is what Run sent, decoded.
type captured struct {
	stdout, stderr string
	order          []protocol.Stream
	exit           protocol.Exit
	err            error
	elapsed        time.Duration
}

// runConfig prepares and runs cfg as an ordinary (non-PID-1) process and decodes the
// stream it produced.
func runConfig(t *testing.T, cfg protocol.RunConfig, root Root, cancel <-chan struct{}) captured {
	t.Helper()
	needRoot(t)
	if cfg.WorkDir == "" {
		cfg.WorkDir = "/"
	}
	var c captured
	cmd, err := Prepare(&cfg, root)
	if err != nil {
		c.err = err
		return c
	}
	var buf syncbuf.Buffer
	start := time.Now()
	grace := cfg.KillGrace
	if grace == 0 {
		grace = time.Second
	}
	exit, err := Run(cmd, protocol.NewWriter(&buf), RunOptions{
		Timeout: cfg.Timeout, KillGrace: grace, Cancel: cancel, Clock: newClock(),
	})
	c.elapsed = time.Since(start)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.exit = exit
	var out, errb strings.Builder
	r := protocol.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		m, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d := m.(protocol.Data)
		if d.Stream == protocol.Stdout {
			out.Write(d.Bytes)
		} else {
			errb.Write(d.Bytes)
		}
		c.order = append(c.order, d.Stream)
	}
	c.stdout, c.stderr = out.String(), errb.String()
	return c
}

// probeValues parses the probe's key=value lines.
func probeValues(t *testing.T, out string) map[string]string {
	t.Helper()
	v := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("probe line %q", line)
		}
		v[k] = val
	}
	return v
}

// needRoot skips a test that starts a hardened workload: dropping the bounding set and
// switching users need CAP_SETPCAP, CAP_SETUID and CAP_SETGID.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starting a hardened workload needs root (CAP_SETPCAP, CAP_SETUID, CAP_SETGID)")
	}
}
