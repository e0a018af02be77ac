package guest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/internal/syncbuf"
	"github.com/vmbench/runner/protocol"
)

func sh(script string) protocol.RunConfig {
	return protocol.RunConfig{Argv: []string{"/bin/sh", "-c", script}, WorkDir: "/"}
}

func TestExitStatus(t *testing.T) {
	root := testRoot(t)
	tests := []struct {
		script       string
		code, signal int32
	}{
		{"exit 0", 0, 0},
		{"exit 42", 42, 0},
		{"exit 255", 255, 0},
		{"kill -KILL $$", 0, 9},
		{"kill -TERM $$", 0, 15},
	}
	for _, tt := range tests {
		c := runConfig(t, sh(tt.script), root, nil)
		if c.exit.Code != tt.code || c.exit.Signal != tt.signal || c.exit.Failure != 0 || c.exit.TimedOut {
			t.Errorf("%q: exit %+v, want code %d signal %d", tt.script, c.exit, tt.code, tt.signal)
		}
		if c.exit.Started <= 0 || c.exit.Ended < c.exit.Started {
			t.Errorf("%q: timings %v..%v", tt.script, c.exit.Started, c.exit.Ended)
		}
	}
}

func TestStreamsSeparateAndOrdered(t *testing.T) {
	c := runConfig(t, sh(`for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done`), testRoot(t), nil)
	if c.stdout != "out1\nout2\nout3\nout4\nout5\n" || c.stderr != "err1\nerr2\nerr3\nerr4\nerr5\n" {
		t.Fatalf("stdout %q stderr %q", c.stdout, c.stderr)
	}
}

// Exec failures carry docker's distinction: not found (127) vs cannot invoke (126).
func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "plain"), []byte("echo hi\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "noexec-format"), []byte("\x00\x01garbage"), 0o755)
	os.WriteFile(filepath.Join(dir, "bad-interp"), []byte("#!/no/such/interpreter\n"), 0o755)
	root := testRoot(t)
	tests := []struct {
		argv string
		kind protocol.FailureKind
	}{
		{"/no/such/binary", protocol.FailureNotFound},
		{filepath.Join(dir, "bad-interp"), protocol.FailureNotFound},
		{filepath.Join(dir, "plain"), protocol.FailureCannotInvoke},
		{filepath.Join(dir, "noexec-format"), protocol.FailureCannotInvoke},
		{dir, protocol.FailureCannotInvoke},
	}
	for _, tt := range tests {
		c := runConfig(t, protocol.RunConfig{Argv: []string{tt.argv}, WorkDir: "/"}, root, nil)
		if c.exit.Failure != tt.kind || c.exit.Message == "" {
			t.Errorf("%s: exit %+v, want %v", tt.argv, c.exit, tt.kind)
		}
	}
}

// groupGone reports whether no live (non-zombie) process of process group pgid is left,
// allowing up to two seconds for SIGKILL, which the kernel delivers asynchronously.
func groupGone(pgid int) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if liveMembers(pgid) == 0 {
			return true
		}
	}
	return false
}

// liveMembers counts the processes of group pgid that are not zombies, from /proc.
func liveMembers(pgid int) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	n := 0
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces, so split after ')'.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		var state string
		var ppid, pgrp int
		fmt.Sscan(rest, &state, &ppid, &pgrp)
		if pgrp == pgid && state != "Z" {
			n++
		}
	}
	return n
}

// A timeout ends the whole tree with SIGTERM; nothing is left behind.
func TestTimeoutKillsTree(t *testing.T) {
	cfg := sh(`sleep 30 & sleep 31 & echo $$; wait`)
	cfg.Timeout = 300 * time.Millisecond
	c := runConfig(t, cfg, testRoot(t), nil)
	if !c.exit.TimedOut || c.exit.Signal != int32(syscall.SIGTERM) {
		t.Fatalf("exit %+v", c.exit)
	}
	if c.elapsed > 3*time.Second {
		t.Fatalf("took %v", c.elapsed)
	}
	var pgid int
	fmt.Sscan(c.stdout, &pgid)
	if pgid <= 0 || !groupGone(pgid) {
		t.Fatalf("process group %d still has members", pgid)
	}
}

// A workload that ignores SIGTERM is killed after the grace period.
func TestTimeoutEscalatesToKill(t *testing.T) {
	cfg := sh(`trap '' TERM; sleep 30 & wait; sleep 30`)
	cfg.Timeout = 200 * time.Millisecond
	cfg.KillGrace = 300 * time.Millisecond
	c := runConfig(t, cfg, testRoot(t), nil)
	if !c.exit.TimedOut || c.exit.Signal != int32(syscall.SIGKILL) {
		t.Fatalf("exit %+v", c.exit)
	}
	if c.elapsed < 500*time.Millisecond || c.elapsed > 5*time.Second {
		t.Fatalf("took %v, want about timeout+grace", c.elapsed)
	}
}

func TestCancel(t *testing.T) {
	cancel := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(cancel) })
	c := runConfig(t, sh("sleep 30"), testRoot(t), cancel)
	if !c.exit.Cancelled || c.exit.TimedOut || c.exit.Signal != int32(syscall.SIGTERM) {
		t.Fatalf("exit %+v", c.exit)
	}
}

// Processes the command leaves behind are killed when it exits (as when a container's main
// process ends), so the streams end and nothing outlives the run.
func TestLeftoversKilledAtExit(t *testing.T) {
	c := runConfig(t, sh(`sleep 30 & echo $$`), testRoot(t), nil)
	if c.exit.Code != 0 || c.elapsed > 5*time.Second {
		t.Fatalf("exit %+v after %v", c.exit, c.elapsed)
	}
	var pgid int
	fmt.Sscan(c.stdout, &pgid)
	if !groupGone(pgid) {
		t.Fatalf("process group %d still has members", pgid)
	}
}

// Large output on both streams at once arrives complete (no deadlock between the pumps).
func TestLargeOutputBothStreams(t *testing.T) {
	const mib = 16
	c := runConfig(t, sh(fmt.Sprintf(`head -c %d /dev/zero | tr '\0' o & head -c %d /dev/zero | tr '\0' e >&2; wait`, mib<<20, mib<<20)), testRoot(t), nil)
	if len(c.stdout) != mib<<20 || len(c.stderr) != mib<<20 {
		t.Fatalf("got %d and %d bytes", len(c.stdout), len(c.stderr))
	}
	if strings.Trim(c.stdout, "o") != "" || strings.Trim(c.stderr, "e") != "" {
		t.Fatal("content mixed up between streams")
	}
}

func TestVmstatField(t *testing.T) {
	b := []byte("nr_free_pages 100\noom_kill 7\nother 1\n")
	if got := vmstatField(b, "oom_kill"); got != 7 {
		t.Fatalf("got %d", got)
	}
	if got := vmstatField(b, "oom"); got != -1 {
		t.Fatalf("prefix matched: %d", got)
	}
	if got := vmstatField([]byte("oom_kill x\n"), "oom_kill"); got != -1 {
		t.Fatalf("garbage parsed: %d", got)
	}
	if oomKills() < 0 {
		t.Fatal("/proc/vmstat has no oom_kill line on this kernel")
	}
}

func TestSendOutputs(t *testing.T) {
	dir := t.TempDir()
	content := []byte(strings.Repeat("0123456789", 300000)) // 3 MB: several chunks
	os.WriteFile(dir+"/big", content, 0o640)
	os.Mkdir(dir+"/adir", 0o755)
	unix.Mkfifo(dir+"/fifo", 0o644)
	os.WriteFile(dir+"/toolarge", make([]byte, 100), 0o644)

	var buf syncbuf.Buffer
	w := protocol.NewWriter(&buf)
	paths := []string{dir + "/big", dir + "/missing", dir + "/adir", dir + "/fifo"}
	if err := SendOutputs(w, paths, 0, make([]byte, protocol.HeaderSize+protocol.MaxChunk)); err != nil {
		t.Fatal(err)
	}
	if err := SendOutputs(w, []string{dir + "/toolarge"}, 99, make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	r := protocol.NewReader(bytes.NewReader(buf.Bytes()))
	next := func() protocol.Message {
		m, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	hdr := next().(protocol.File)
	if hdr.Path != dir+"/big" || hdr.Size != int64(len(content)) || hdr.Mode != 0o100640 || hdr.Err != "" {
		t.Fatalf("header %+v", hdr)
	}
	var got []byte
	var end protocol.FileEnd
	for end.Sha256 == ([32]byte{}) {
		switch m := next().(type) {
		case protocol.FileData:
			got = append(got, m.Bytes...)
		case protocol.FileEnd:
			end = m
		}
	}
	if string(got) != string(content) || end.Sha256 != sha256.Sum256(content) {
		t.Fatal("content or digest differs")
	}
	for _, want := range []string{"no such file", "not a regular file", "not a regular file", "larger than the limit"} {
		f := next().(protocol.File)
		if !strings.Contains(f.Err, want) {
			t.Errorf("%s: error %q, want %q", f.Path, f.Err, want)
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", 200<<10) // several reads, beyond the first buffer
	os.WriteFile(dir+"/big", []byte(big), 0o644)
	b, err := readFile(dir+"/big", 300<<10)
	if err != nil || string(b) != big {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
	if _, err := readFile(dir+"/big", 100<<10); err == nil {
		t.Fatal("a file over the limit was accepted")
	}
	if b, err := readFile(dir+"/big", len(big)); err != nil || len(b) != len(big) {
		t.Fatalf("a file of exactly the limit: %d, %v", len(b), err)
	}
	if _, err := readFile(dir+"/missing", 10); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if b, err := readSmallFile("/proc/self/status"); err != nil || statusKiB(b, "VmHWM") <= 0 {
		t.Fatalf("status: %v", err)
	}
}
