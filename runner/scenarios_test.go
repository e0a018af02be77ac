package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmbench/runner/oci"
	"github.com/vmbench/runner/rootfs"
	"github.com/vmbench/runner/runner/runnertest"
	"github.com/vmbench/runner/testimages"
	"golang.org/x/sys/unix"
)

// The spec's scenarios (testing-plan.md 1–10, S1–S3) through the whole pipeline on the
// sandbox backend: test images from package testimages in an OCI layout, oci.Resolve,
// rootfs.Build with the real bencher-init, the namespace sandbox and the protocol session.

var (
	layoutOnce sync.Once
	layoutDir  string
	layoutErr  error
)

// scenarioLayout writes every test image into one OCI layout, once per test process.
func scenarioLayout(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("the sandbox backend needs root (loop devices, mounts, namespaces)")
	}
	for _, tool := range []string{"mkfs.ext4", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
	layoutOnce.Do(func() {
		imgs, err := testimages.BuildAll()
		if err != nil {
			layoutErr = err
			return
		}
		layoutDir = filepath.Join(shared.dir, "layout")
		layoutErr = testimages.WriteLayout(layoutDir, imgs)
	})
	if layoutErr != nil {
		t.Fatal(layoutErr)
	}
	return layoutDir
}

// shared holds what the scenario tests share: the layout and the rootfs/blob caches.
var shared struct{ dir string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "runner-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// outcome is a finished scenario.
type outcome struct {
	res            *Result
	stdout, stderr string
	elapsed        time.Duration
}

// scenarioConfig is the Config of image name, with the test's caches and init.
func scenarioConfig(t *testing.T, name string) Config {
	layout := scenarioLayout(t)
	return Config{
		Image: "oci:" + layout + ":" + name,
		OCI:   oci.Options{CacheDir: filepath.Join(shared.dir, "blobs")},
		Rootfs: rootfs.BuildOptions{
			InitPath: runnertest.InitBinary(t),
			CacheDir: filepath.Join(shared.dir, "rootfs"),
		},
	}
}

func run(t *testing.T, cfg Config) outcome {
	t.Helper()
	var out, errb bytes.Buffer
	if cfg.Stdout == nil {
		cfg.Stdout = &out
	}
	if cfg.Stderr == nil {
		cfg.Stderr = &errb
	}
	start := time.Now()
	res, err := Run(context.Background(), cfg, SandboxBackend{})
	if err != nil {
		t.Fatalf("run %s: %v", cfg.Image, err)
	}
	return outcome{res: res, stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
}

func expect(t *testing.T, o outcome, code int, stdout, stderr string) {
	t.Helper()
	if got := o.res.ExitCode(); got != code {
		t.Errorf("exit code %d, want %d (exit %+v, stderr %q)", got, code, o.res.Exit, o.stderr)
	}
	if stdout != "*" && o.stdout != stdout {
		t.Errorf("stdout %q, want %q", o.stdout, stdout)
	}
	if stderr != "*" && o.stderr != stderr {
		t.Errorf("stderr %q, want %q", o.stderr, stderr)
	}
}

func TestScenario1Basic(t *testing.T) {
	expect(t, run(t, scenarioConfig(t, "basic")), 0, "hello from vm\n", "")
}

func TestScenario2Env(t *testing.T) {
	expect(t, run(t, scenarioConfig(t, "env")), 0, "test_value\n", "")
}

func TestScenario3Workdir(t *testing.T) {
	expect(t, run(t, scenarioConfig(t, "workdir")), 0, "/app\n", "")
}

func TestScenario4OutputFile(t *testing.T) {
	cfg := scenarioConfig(t, "output")
	cfg.Outputs = []string{"/tmp/output.json", "/tmp/not-written.json"}
	cfg.OutputDir = t.TempDir()
	o := run(t, cfg)
	expect(t, o, 0, "", "")
	b, err := os.ReadFile(filepath.Join(cfg.OutputDir, "output.json"))
	if err != nil || string(b) != "{\"result\": 42}\n" {
		t.Fatalf("output.json: %q, %v", b, err)
	}
	if f := o.res.Files[1]; !strings.Contains(f.Err, "no such file") || f.LocalPath != "" {
		t.Fatalf("missing output: %+v", f)
	}
}

func TestScenario5ExitCode(t *testing.T) {
	expect(t, run(t, scenarioConfig(t, "exit")), 42, "", "")
}

// sleep 3600 with a 5 s timeout ends in 5 s ± 1 s, as a timeout, with nothing left running.
func TestScenario6Timeout(t *testing.T) {
	cfg := scenarioConfig(t, "timeout")
	cfg.Timeout = 5 * time.Second
	o := run(t, cfg)
	expect(t, o, ExitTimeout, "", "")
	if !o.res.Exit.TimedOut {
		t.Fatalf("exit %+v", o.res.Exit)
	}
	if d := o.res.Timings.GuestCommand; d < 5*time.Second || d > 6*time.Second {
		t.Errorf("the command ran %v in the guest, want 5 s ± 1 s", d)
	}
	if d := o.res.Timings.Run; d < 4*time.Second || d > 6*time.Second {
		t.Errorf("the run phase took %v on the host, want 5 s ± 1 s", d)
	}
	if pids := processesRunning(t, "sleep", "3600"); len(pids) > 0 {
		t.Errorf("processes left behind: %v", pids)
	}
}

// processesRunning returns the pids whose command line is exactly argv.
func processesRunning(t *testing.T, argv ...string) []string {
	t.Helper()
	want := strings.Join(argv, "\x00") + "\x00"
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []string
	for _, c := range cmdlines {
		if b, err := os.ReadFile(c); err == nil && string(b) == want {
			pids = append(pids, filepath.Base(filepath.Dir(c)))
		}
	}
	return pids
}

// Scenario 7 as in the spec: 10 MiB of random data, base64-encoded.
func TestScenario7LargeOutput(t *testing.T) {
	o := run(t, scenarioConfig(t, "large"))
	expect(t, o, 0, "*", "*")
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(o.stdout, "\n", ""))
	if err != nil || len(raw) != 10<<20 {
		t.Fatalf("stdout is %d bytes, decodes to %d (%v), want 10 MiB", len(o.stdout), len(raw), err)
	}
}

// The same output, compared byte for byte with a digest computed inside the guest, and
// also fetched as an output file.
func TestLargeOutputByteExact(t *testing.T) {
	cfg := scenarioConfig(t, "large")
	cfg.Overrides = oci.Overrides{CmdSet: true, Cmd: []string{"sh", "-c",
		"dd if=/dev/urandom bs=1M count=10 2>/dev/null | base64 > /tmp/large.txt && sha256sum /tmp/large.txt >&2 && cat /tmp/large.txt"}}
	cfg.Outputs = []string{"/tmp/large.txt"}
	cfg.OutputDir = t.TempDir()
	o := run(t, cfg)
	expect(t, o, 0, "*", "*")
	guestSum, _, _ := strings.Cut(o.stderr, " ")
	hostSum := sha256.Sum256([]byte(o.stdout))
	if hex.EncodeToString(hostSum[:]) != guestSum || len(o.stdout) < 13<<20 {
		t.Fatalf("stdout: %d bytes, sha256 %x; guest says %q", len(o.stdout), hostSum, o.stderr)
	}
	if f := o.res.Files[0]; hex.EncodeToString(f.Sha256[:]) != guestSum || f.Size != int64(len(o.stdout)) {
		t.Fatalf("output file %+v differs from the guest's digest", f)
	}
}

// countingHash consumes a stream, keeping only its length and digest.
type countingHash struct {
	n int64
	h hash.Hash
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// 100 MiB on stdout and stderr at once: no deadlock, everything arrives, and the init's
// memory stays bounded (it streams; it never holds the output).
func TestHugeOutputBothStreams(t *testing.T) {
	cfg := scenarioConfig(t, "large")
	cfg.Overrides = oci.Overrides{CmdSet: true, Cmd: []string{"sh", "-c",
		"head -c 104857600 /dev/zero | tr '\\0' a & head -c 104857600 /dev/zero | tr '\\0' b >&2; wait"}}
	out, errs := &countingHash{h: sha256.New()}, &countingHash{h: sha256.New()}
	cfg.Stdout, cfg.Stderr = out, errs
	o := run(t, cfg)
	expect(t, o, 0, "*", "*")
	wantOut := sha256.Sum256(bytes.Repeat([]byte("a"), 100<<20))
	wantErr := sha256.Sum256(bytes.Repeat([]byte("b"), 100<<20))
	if out.n != 100<<20 || errs.n != 100<<20 || !bytes.Equal(out.h.Sum(nil), wantOut[:]) || !bytes.Equal(errs.h.Sum(nil), wantErr[:]) {
		t.Fatalf("got %d and %d bytes", out.n, errs.n)
	}
	const bound = 48 << 20
	if rss := o.res.Exit.InitMaxRSS; rss <= 0 || rss > bound {
		t.Fatalf("init peak RSS %d MiB, want under %d MiB", rss>>20, bound>>20)
	}
	t.Logf("200 MiB streamed in %v (%.0f MB/s), init peak RSS %.1f MiB",
		o.res.Timings.Run, 200*1.048576/o.res.Timings.Run.Seconds(), float64(o.res.Exit.InitMaxRSS)/(1<<20))
}

func TestScenario8WritableFilesystem(t *testing.T) {
	expect(t, run(t, scenarioConfig(t, "write")), 0, "test\n", "")
}

func TestScenario8WritableSquashfs(t *testing.T) {
	cfg := scenarioConfig(t, "write")
	cfg.Rootfs.Format = rootfs.FormatSquashfs
	expect(t, run(t, cfg), 0, "test\n", "")
}

func TestScenario9Stderr(t *testing.T) {
	expect(t, run(t, scenarioConfig(t, "stderr")), 0, "stdout\n", "stderr\n")
}

// Scenario 10 in the sandbox: the kernel is the host's, so /proc/cpuinfo lists the host's
// CPUs whatever the limit; the limit is the CPU affinity (what nproc and
// sched_getaffinity report), here one CPU.
func TestScenario10CPUs(t *testing.T) {
	cfg := scenarioConfig(t, "cpu")
	cfg.VCPUs = 1
	expect(t, run(t, cfg), 0, fmt.Sprintf("%d\n", hostProcessors(t)), "")

	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	first := 0
	for !set.IsSet(first) {
		first++
	}
	cfg.Overrides = oci.Overrides{CmdSet: true, Cmd: []string{"grep", "Cpus_allowed_list", "/proc/self/status"}}
	expect(t, run(t, cfg), 0, fmt.Sprintf("Cpus_allowed_list:\t%d\n", first), "")
}

func hostProcessors(t *testing.T) int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "processor") {
			n++
		}
	}
	return n
}

// S1: busybox reboot (no -f) signals PID 1; the seccomp filter refuses, reboot fails, and
// the run completes normally.
func TestScenarioS1Seccomp(t *testing.T) {
	o := run(t, scenarioConfig(t, "seccomp"))
	if o.res.ExitCode() == 0 || !strings.Contains(o.stderr, "Operation not permitted") {
		t.Fatalf("reboot: exit %+v, stderr %q", o.res.Exit, o.stderr)
	}
	// reboot -f calls reboot(2) itself: refused too.
	cfg := scenarioConfig(t, "seccomp")
	cfg.Overrides = oci.Overrides{CmdSet: true, Cmd: []string{"reboot", "-f"}}
	o = run(t, cfg)
	if o.res.ExitCode() == 0 || !strings.Contains(o.stderr, "Operation not permitted") {
		t.Fatalf("reboot -f: exit %+v, stderr %q", o.res.Exit, o.stderr)
	}
}

func TestScenarioS2Capabilities(t *testing.T) {
	o := run(t, scenarioConfig(t, "caps"))
	expect(t, o, 0, "*", "")
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if !strings.Contains(o.stdout, set+":\t0000000000000000\n") {
			t.Errorf("%s is not empty:\n%s", set, o.stdout)
		}
	}
}

func TestScenarioS3NoNetwork(t *testing.T) {
	o := run(t, scenarioConfig(t, "network"))
	expect(t, o, 0, "*", "")
	if !strings.Contains(o.stdout, "no network") && !strings.Contains(o.stdout, "unreachable") {
		t.Fatalf("stdout %q", o.stdout)
	}
}

// Docker's exit codes for a command that cannot run: 127 not found, 126 not executable,
// 125 for a setup error (unknown user).
func TestExitCodesForStartFailures(t *testing.T) {
	tests := []struct {
		name string
		ov   oci.Overrides
		code int
	}{
		{"not in PATH", oci.Overrides{EntrypointSet: true, Entrypoint: []string{"no-such-command"}}, ExitNotFound},
		{"missing path", oci.Overrides{EntrypointSet: true, Entrypoint: []string{"/no/such/file"}}, ExitNotFound},
		{"not executable", oci.Overrides{EntrypointSet: true, Entrypoint: []string{"/etc/passwd"}}, ExitCannotInvoke},
		{"unknown user", oci.Overrides{User: "nosuchuser"}, ExitRunnerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := scenarioConfig(t, "basic")
			cfg.Overrides = tt.ov
			o := run(t, cfg)
			if o.res.ExitCode() != tt.code || o.res.Exit.Message == "" {
				t.Fatalf("exit %+v → %d, want %d", o.res.Exit, o.res.ExitCode(), tt.code)
			}
		})
	}
}

// --user, -e and -w as docker run applies them; a missing working directory is created
// root-owned with mode 0755, as the Docker daemon does.
func TestUserEnvWorkdirOverrides(t *testing.T) {
	cfg := scenarioConfig(t, "basic")
	cfg.Overrides = oci.Overrides{
		CmdSet: true, Cmd: []string{"sh", "-c", `id; echo "$HOME $MY_VAR $PWD"; stat -c 'owner=%u mode=%a' .`},
		User: "bench", Env: []string{"MY_VAR=over"}, WorkingDir: "/home/bench/work",
	}
	o := run(t, cfg)
	expect(t, o, 0, "*", "")
	for _, want := range []string{"uid=1000(bench) gid=1000(bench)", "/home/bench over /home/bench/work", "owner=0 mode=755"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s\nstderr %s", want, o.stdout, o.stderr)
		}
	}
}

// The guest's and the host's timings are filled in.
func TestTimings(t *testing.T) {
	o := run(t, scenarioConfig(t, "basic"))
	tm := o.res.Timings
	if tm.GuestInitToExec <= 0 || tm.Boot <= 0 || tm.Total < tm.Boot || o.res.Exit.Started <= 0 {
		t.Fatalf("timings %+v exit %+v", tm, o.res.Exit)
	}
}
