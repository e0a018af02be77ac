package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/runner/runnertest"
)

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "5": 5 * time.Second, "1.5": 1500 * time.Millisecond, "90s": 90 * time.Second, "2m": 2 * time.Minute,
	} {
		if got, err := parseTimeout(in); err != nil || got != want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1", "soon", "-5s", ""} {
		if _, err := parseTimeout(bad); err == nil {
			t.Errorf("parseTimeout(%q) accepted", bad)
		}
	}
}

func TestCheckOutputs(t *testing.T) {
	if err := checkOutputs([]string{"/tmp/a.json", "/data/b.json"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"rel/a"}, {"/"}, {"/x/a.json", "/y/a.json"}} {
		if err := checkOutputs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// -e follows docker run: KEY=VALUE as given, a bare KEY from the caller's environment or
// dropped when unset there.
func TestResolveEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOSTVAR": "from host", "EMPTY": ""}[k]
		return v, ok
	}
	got := resolveEnv([]string{"A=1", "HOSTVAR", "EMPTY", "UNSET", "B="}, lookup)
	want := []string{"A=1", "HOSTVAR=from host", "EMPTY=", "B="}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestRunFlagConflicts(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := execute([]string{"run", "--image", "x", "--init", "/bin/true", "--cmd", "a", "--", "b"}, &stdout, &stderr)
	if code != exitRunnerError || !strings.Contains(stderr.String(), "either with --cmd or after --") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	code = execute([]string{"run", "--image", "x", "--init", "/bin/true", "--backend", "cloud"}, &stdout, &stderr)
	if code != exitRunnerError || !strings.Contains(stderr.String(), "--backend") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// runner run end to end on the sandbox backend: output, exit codes, timeout, output files.
func TestRunSandbox(t *testing.T) {
	sandboxTest(t)
	layout := writeTestLayout(t, "basic", "exit", "timeout", "output", "stderr")
	initBin := runnertest.InitBinary(t)
	outDir := filepath.Join(t.TempDir(), "out")
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string // substrings
	}{
		{"basic", []string{"--image", "oci:" + layout + ":basic"}, 0, "hello from vm\n", ""},
		{"exit code", []string{"--image", "oci:" + layout + ":exit"}, 42, "", ""},
		{"stderr", []string{"--image", "oci:" + layout + ":stderr"}, 0, "stdout\n", "stderr\n"},
		{"timeout", []string{"--image", "oci:" + layout + ":timeout", "--timeout", "1"}, exitTimeout, "", "timed out"},
		{"not found", []string{"--image", "oci:" + layout + ":basic", "--entrypoint", "nosuch"}, exitNotFound, "", "not found"},
		{"command after --", []string{"--image", "oci:" + layout + ":basic", "-e", "X=y", "--", "sh", "-c", "echo $X; exit 3"}, 3, "y\n", ""},
		{"output file", []string{"--image", "oci:" + layout + ":output", "--output", "/tmp/output.json", "--output-dir", outDir}, 0, "", ""},
		{"missing output", []string{"--image", "oci:" + layout + ":basic", "--output", "/nope.txt", "--output-dir", outDir}, 0, "", "output /nope.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"run", "--backend", "sandbox", "--init", initBin}, tt.args...)
			code := execute(args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)",
					code, tt.code, stdout.String(), tt.stdout, stderr.String(), tt.stderr)
			}
		})
	}
	b, err := os.ReadFile(filepath.Join(outDir, "output.json"))
	if err != nil || string(b) != "{\"result\": 42}\n" {
		t.Fatalf("output.json: %q %v", b, err)
	}
}

// --json prints one object with the result and the command's stdout; RUNNER_WORK_DIR holds
// the run's files while it runs and nothing afterwards.
func TestRunJSON(t *testing.T) {
	sandboxTest(t)
	work := t.TempDir()
	t.Setenv("RUNNER_WORK_DIR", work)
	layout := writeTestLayout(t, "basic", "timeout")
	initBin := runnertest.InitBinary(t)

	var stdout, stderr bytes.Buffer
	code := execute([]string{"run", "--backend", "sandbox", "--init", initBin, "--json", "--vcpus", "1",
		"--image", "oci:" + layout + ":timeout", "--timeout", "1"}, &stdout, &stderr)
	var j jsonReport
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	if code != exitTimeout || j.Exit != exitTimeout || !j.TimedOut || j.VCPUs != 1 || j.Backend != "sandbox" {
		t.Fatalf("exit %d, report %+v", code, j)
	}
	if j.Dur.Command < 0.9 || j.Dur.Command > 2 || j.Dur.Total < j.Dur.Command || j.Dur.InitToExec <= 0 {
		t.Fatalf("durations %+v", j.Dur)
	}

	stdout.Reset()
	code = execute([]string{"run", "--backend", "sandbox", "--init", initBin, "--json", "--image", "oci:" + layout + ":basic"}, &stdout, &stderr)
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil || code != 0 || j.Stdout != "hello from vm\n" || j.Exit != 0 {
		t.Fatalf("exit %d, report %+v, %v", code, j, err)
	}

	stdout.Reset()
	code = execute([]string{"run", "--backend", "sandbox", "--init", initBin, "--json", "--image", "oci:/nonexistent:x"}, &stdout, &stderr)
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil || code != exitRunnerError || j.Exit != exitRunnerError || j.Error == "" {
		t.Fatalf("exit %d, report %+v, %v", code, j, err)
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Fatalf("the work directory still holds %d entries", len(entries))
	}
}

// --iter N runs N times; with --json the report lists every run and a summary.
func TestRunIterJSON(t *testing.T) {
	sandboxTest(t)
	t.Setenv("RUNNER_WORK_DIR", t.TempDir())
	layout := writeTestLayout(t, "basic")
	initBin := runnertest.InitBinary(t)
	var stdout, stderr bytes.Buffer
	code := execute([]string{"run", "--backend", "sandbox", "--init", initBin, "--json", "--iter", "3",
		"--image", "oci:" + layout + ":basic", "--", "sh", "-c", "echo run; exit 7"}, &stdout, &stderr)
	var j jsonIterations
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	if code != 7 || j.Exit != 7 || len(j.Iterations) != 3 || j.Summary.Runs != 3 {
		t.Fatalf("exit %d, report exit %d, %d iterations, summary %+v", code, j.Exit, len(j.Iterations), j.Summary)
	}
	for i, r := range j.Iterations {
		if r.Stdout != "run\n" || r.Code != 7 {
			t.Errorf("run %d: %+v", i, r)
		}
	}
	if s := j.Summary.Total; s.Min <= 0 || s.Min > s.Median || s.Median > s.Max {
		t.Errorf("total summary %+v", s)
	}
	if n := strings.Count(stderr.String(), "runner: run "); n != 3 {
		t.Errorf("stderr reports %d runs, want 3:\n%s", n, stderr.String())
	}
}

// --backend auto (the default) falls back to the sandbox when the KVM device is missing or
// is not KVM: the run succeeds, the report names the sandbox, and one warning says why.
func TestAutoBackendFallsBackToSandbox(t *testing.T) {
	sandboxTest(t)
	layout := writeTestLayout(t, "basic")
	initBin := runnertest.InitBinary(t)
	notKVM := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(notKVM, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"/nonexistent/kvm", notKVM} {
		t.Run(dev, func(t *testing.T) {
			t.Setenv("RUNNER_KVM_DEVICE", dev)
			var stdout, stderr bytes.Buffer
			code := execute([]string{"run", "--init", initBin, "--json", "--image", "oci:" + layout + ":basic"}, &stdout, &stderr)
			var j jsonReport
			if err := json.Unmarshal(stdout.Bytes(), &j); err != nil || code != 0 || j.Backend != "sandbox" || j.Stdout != "hello from vm\n" {
				t.Fatalf("exit %d, report %+v, %v\nstderr %s", code, j, err, stderr.String())
			}
			warn := stderr.String()
			if strings.Count(warn, "\n") != 1 || !strings.Contains(warn, "sandbox backend") || !strings.Contains(warn, dev) {
				t.Fatalf("want one warning naming the sandbox and %s, got %q", dev, warn)
			}
		})
	}
}

// sandboxTest skips unless this host can run the sandbox backend (root, mkfs.ext4) and
// gives the test a cache of its own.
func sandboxTest(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("the sandbox backend needs root")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed (scripts/install-deps.sh installs it)")
	}
	t.Setenv("RUNNER_CACHE_DIR", t.TempDir())
}
