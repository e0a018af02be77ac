package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/protocol"
	"github.com/vmbench/runner/runner/runnertest"
	"github.com/vmbench/runner/runner/session"
)

// needTools skips when a host tool the test images need is absent.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh installs it): %v", tool, err)
		}
	}
	if os.Getuid() != 0 {
		t.Skip("the sandbox needs root (loop devices, mounts, namespaces)")
	}
}

// imageTree makes a minimal root: busybox with its applets, passwd/group, the init at
// /.bencher/init and the mount points.
func imageTree(t testing.TB, withInit bool) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "run", "root", ".bencher/rw"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "/bin/busybox", filepath.Join(dir, "bin/busybox"), 0o755)
	for _, applet := range []string{"sh", "echo", "cat", "ls", "id", "hostname", "ps", "nproc", "sleep", "sha256sum", "ping", "grep", "wc", "mount", "reboot", "true", "tr", "sort", "setsid"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644)
	if withInit {
		copyFile(t, runnertest.InitBinary(t), filepath.Join(dir, ".bencher/init"), 0o755)
	}
	return dir
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// makeImage builds an ext4 or squashfs image of tree with the host's tools.
func makeImage(t testing.TB, tree string, format Format) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "rootfs."+string(format))
	var cmd *exec.Cmd
	switch format {
	case FormatExt4:
		needTools(t, "mkfs.ext4")
		cmd = exec.Command("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-d", tree, img, "64M")
	case FormatSquashfs:
		needTools(t, "mksquashfs")
		cmd = exec.Command("mksquashfs", tree, img, "-noappend", "-quiet", "-all-root")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", cmd.Args, err, out)
	}
	return img
}

type run struct {
	stdout, stderr string
	res            *session.Result
}

// runIn starts a sandbox on img, runs script with sh through the real protocol session,
// and closes the sandbox.
func runIn(t *testing.T, cfg Config, script string, timeout time.Duration) run {
	t.Helper()
	sb, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sb.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	var out, errb bytes.Buffer
	rc := protocol.RunConfig{Argv: []string{"sh", "-c", script}, WorkDir: "/", Timeout: timeout}
	res, err := session.Run(context.Background(), sb.Conn(), rc, session.Options{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("session: %v (stderr %q)", err, errb.String())
	}
	state, err := sb.Wait()
	if err != nil || !state.Success() {
		t.Fatalf("init exit: %v %v", state, err)
	}
	return run{out.String(), errb.String(), res}
}

func TestSandboxNamespaces(t *testing.T) {
	needTools(t, "mkfs.ext4")
	img := makeImage(t, imageTree(t, true), FormatExt4)
	r := runIn(t, Config{Image: img}, `echo pid=$$; echo host=$(hostname); echo init=$(cat /proc/1/cmdline | tr '\0' ' ');
		echo net=$(ls /sys/class/net); echo loflags=$(cat /sys/class/net/lo/flags); echo dev=$(ls /dev | sort | tr '\n' ' '); echo procs=$(ls /proc | grep -c '^[0-9]')`, 0)
	if r.res.Exit.Code != 0 {
		t.Fatalf("exit %+v stderr %q", r.res.Exit, r.stderr)
	}
	// lo is up (IFF_UP|IFF_LOOPBACK) and the only interface.
	for _, want := range []string{"host=bencher", "init=/.bencher/init --fd=3", "net=lo\n", "loflags=0x9\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "pid=1\n") {
		t.Errorf("the workload is PID 1:\n%s", r.stdout)
	}
	// Only the container device set, none of the host's block devices.
	if !strings.Contains(r.stdout, "dev=fd full null ptmx pts random shm stderr stdin stdout tty urandom zero") {
		t.Errorf("unexpected /dev:\n%s", r.stdout)
	}
}

// As PID 1 the init signals and reaps every process: daemons in their own sessions are
// killed when the command exits, and at a timeout.
func TestSandboxKillsDetachedProcesses(t *testing.T) {
	needTools(t, "mkfs.ext4")
	img := makeImage(t, imageTree(t, true), FormatExt4)
	start := time.Now()
	r := runIn(t, Config{Image: img}, `setsid sleep 100 & setsid sh -c 'sleep 101 & sleep 102' & echo started`, 0)
	if r.res.Exit.Code != 0 || r.stdout != "started\n" || time.Since(start) > 10*time.Second {
		t.Fatalf("exit %+v stdout %q after %v", r.res.Exit, r.stdout, time.Since(start))
	}
	start = time.Now()
	r = runIn(t, Config{Image: img}, `setsid sleep 100 & trap '' TERM; sleep 103`, 300*time.Millisecond)
	if !r.res.Exit.TimedOut || time.Since(start) > 10*time.Second {
		t.Fatalf("exit %+v after %v", r.res.Exit, time.Since(start))
	}
}

func TestSandboxSquashfsOverlay(t *testing.T) {
	needTools(t, "mksquashfs")
	img := makeImage(t, imageTree(t, true), FormatSquashfs)
	before := fileSum(t, img)
	r := runIn(t, Config{Image: img}, `echo test > /data.txt && cat /data.txt && grep ' / ' /proc/mounts`, 0)
	if r.res.Exit.Code != 0 || !strings.HasPrefix(r.stdout, "test\n") || !strings.Contains(r.stdout, "overlay") {
		t.Fatalf("exit %+v stdout %q stderr %q", r.res.Exit, r.stdout, r.stderr)
	}
	if fileSum(t, img) != before {
		t.Fatal("the squashfs image changed")
	}
}

func TestSandboxExt4IsWritable(t *testing.T) {
	needTools(t, "mkfs.ext4")
	img := makeImage(t, imageTree(t, true), FormatExt4)
	r := runIn(t, Config{Image: img}, `echo test > /data.txt && cat /data.txt`, 0)
	if r.res.Exit.Code != 0 || r.stdout != "test\n" {
		t.Fatalf("exit %+v stdout %q stderr %q", r.res.Exit, r.stdout, r.stderr)
	}
}

func TestSandboxCPUs(t *testing.T) {
	needTools(t, "mkfs.ext4")
	img := makeImage(t, imageTree(t, true), FormatExt4)
	r := runIn(t, Config{Image: img, CPUs: 1}, `nproc`, 0)
	if r.stdout != "1\n" {
		t.Fatalf("nproc = %q", r.stdout)
	}
}

// Kill ends a running sandbox at once; everything is cleaned up.
func TestSandboxKillAndCleanup(t *testing.T) {
	needTools(t, "mkfs.ext4")
	img := makeImage(t, imageTree(t, true), FormatExt4)
	privateTmp(t)
	tmpBefore := sandboxTempDirs(t)
	sb, err := Start(context.Background(), Config{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	go session.Run(context.Background(), sb.Conn(), protocol.RunConfig{Argv: []string{"sleep", "3600"}, WorkDir: "/"}, session.Options{})
	if loops := loopsBacking(t, img); len(loops) != 1 {
		t.Fatalf("loop devices for the image while running: %v", loops)
	}
	time.Sleep(200 * time.Millisecond) // let the workload start
	start := time.Now()
	if err := sb.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Wait(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("kill took %v", time.Since(start))
	}
	sb.Close()
	assertCleanedUp(t, img, tmpBefore)
}

func TestSandboxStartFailureLeavesNothing(t *testing.T) {
	needTools(t, "mkfs.ext4")
	img := makeImage(t, imageTree(t, false), FormatExt4) // no init in the image
	privateTmp(t)
	tmpBefore := sandboxTempDirs(t)
	_, err := Start(context.Background(), Config{Image: img})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a missing init", err)
	}
	assertCleanedUp(t, img, tmpBefore)
}

func TestDetectFormat(t *testing.T) {
	needTools(t, "mkfs.ext4", "mksquashfs")
	tree := t.TempDir()
	for _, f := range []Format{FormatExt4, FormatSquashfs} {
		got, err := DetectFormat(makeImage(t, tree, f))
		if err != nil || got != f {
			t.Errorf("%s: got %q, %v", f, got, err)
		}
	}
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("not an image"), 0o644)
	if _, err := DetectFormat(junk); err == nil {
		t.Error("junk detected as an image")
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// loopsBacking lists the loop devices whose backing file is path.
func loopsBacking(t *testing.T, path string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(b)) == path {
			out = append(out, f)
		}
	}
	return out
}

// sandboxTempDirs lists the sandbox scratch directories in $TMPDIR. Tests that use it give
// themselves a private $TMPDIR first (privateTmp): other packages' tests run sandboxes at the
// same time.
func sandboxTempDirs(t *testing.T) map[string]bool {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "bencher-sandbox-*"))
	m := map[string]bool{}
	for _, d := range dirs {
		m[d] = true
	}
	return m
}

// assertCleanedUp checks that no loop device still backs img and no new sandbox temporary
// directory is left. Loop autoclear runs when the namespace's last mount reference goes,
// which the kernel finishes asynchronously after the init is reaped: allow it a moment.
func assertCleanedUp(t *testing.T, img string, tmpBefore map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(loopsBacking(t, img)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if loops := loopsBacking(t, img); len(loops) > 0 {
		t.Errorf("loop devices left: %v", loops)
	}
	for d := range sandboxTempDirs(t) {
		if !tmpBefore[d] {
			t.Errorf("temporary directory left: %s", d)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), "bencher-sandbox-") {
		t.Errorf("mounts left in the host namespace:\n%s", mi)
	}
}

// privateTmp points $TMPDIR (and so os.TempDir) at a directory of this test's own.
func privateTmp(t *testing.T) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
}
