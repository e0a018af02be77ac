//go:build slow

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// jsonResult is the part of `runner run --json` these tests read.
type jsonResult struct {
	Exit      int    `json:"exit"`
	TimedOut  bool   `json:"timed_out"`
	Stdout    string `json:"stdout"`
	Durations struct {
		Boot    float64 `json:"boot_s"`
		Command float64 `json:"command_s"`
		Total   float64 `json:"total_s"`
	} `json:"durations"`
	BootTime float64 `json:"boot_time_s"`
	VCPUs    int     `json:"vcpus"`
}

func parseJSON(t *testing.T, r result) jsonResult {
	t.Helper()
	var j jsonResult
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, tail(r.stdout))
	}
	return j
}

// The spec's scenarios 1–10 and S1–S3, each through a real boot of our kernel in our VMM.
// Commands with shell pipelines are replaced by pipeline-free equivalents (see doc.go).
func TestScenarios(t *testing.T) {
	needKVM(t)
	outDir := t.TempDir()
	cases := []struct {
		name  string
		ci    bool // part of the CI subset
		args  []string
		check func(t *testing.T, r result)
	}{
		{"1-basic", true, []string{"--image", image("basic")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			wantStdout(t, r, "hello from vm\n")
		}},
		{"2-env", false, []string{"--image", image("env")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			wantStdout(t, r, "test_value\n")
		}},
		{"3-workdir", false, []string{"--image", image("workdir")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			wantStdout(t, r, "/app\n")
		}},
		{"4-output", false, []string{"--image", image("output"), "--output", "/tmp/output.json", "--output-dir", outDir}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			b, err := os.ReadFile(filepath.Join(outDir, "output.json"))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != "{\"result\": 42}\n" {
				t.Errorf("output.json = %q", b)
			}
		}},
		{"5-exit", true, []string{"--image", image("exit")}, func(t *testing.T, r result) {
			wantExit(t, r, 42)
		}},
		{"6-timeout", false, []string{"--image", image("timeout"), "--timeout", "5", "--json"}, func(t *testing.T, r result) {
			wantExit(t, r, 124)
			j := parseJSON(t, r)
			if !j.TimedOut || j.Exit != 124 {
				t.Errorf("json: timed_out=%v exit=%d, want true 124", j.TimedOut, j.Exit)
			}
			// The command's time runs from its fork: under the emulated KVM of the
			// development machines the fork and exec of busybox alone take several seconds
			// (each first touch of a page is emulated), so only the lower bound is tight here;
			// the sandbox tier checks 5 ± 1 s exactly (runner.TestScenario6Timeout).
			if d := j.Durations.Command; d < 5 || d > 30 {
				t.Errorf("command ran %.2f s, want from 5 s (the timeout) to 30 s (the emulated exec on top)", d)
			}
		}},
		{"7-large", false, []string{"--image", image("large-vm")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(r.stdout, "\n", ""))
			if err != nil {
				t.Fatalf("stdout is not base64: %v", err)
			}
			if len(raw) != 256<<10 {
				t.Errorf("decoded %d bytes, want %d", len(raw), 256<<10)
			}
		}},
		{"8-write", false, []string{"--image", image("write")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			wantStdout(t, r, "test\n")
		}},
		{"9-stderr", false, []string{"--image", image("stderr")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			wantStdout(t, r, "stdout\n")
			if !strings.Contains(r.stderr, "stderr\n") {
				t.Errorf("stderr %q lacks the guest's stderr line", tail(r.stderr))
			}
		}},
		{"10-cpu", false, []string{"--image", image("cpu-nopipe"), "--vcpus", "4", "--json"}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			j := parseJSON(t, r)
			if j.Stdout != "4\n" || j.VCPUs != 4 {
				t.Errorf("json: stdout %q vcpus %d, want \"4\\n\" and 4", j.Stdout, j.VCPUs)
			}
			if j.BootTime <= 0 {
				t.Errorf("json: boot_time_s = %v, want the boot timer's stamp", j.BootTime)
			}
		}},
		{"S1-seccomp", false, []string{"--image", image("seccomp")}, func(t *testing.T, r result) {
			if r.code == 0 || r.code >= 124 {
				t.Errorf("exit %d: want reboot to fail with an ordinary error status", r.code)
			}
			if !strings.Contains(r.stderr, "reboot") {
				t.Errorf("stderr %q: want busybox's reboot error", tail(r.stderr))
			}
		}},
		{"S2-caps", false, []string{"--image", image("caps-nopipe")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			if !strings.Contains(r.stdout, "CapEff:\t0000000000000000") {
				t.Errorf("stdout %q: want CapEff 0", r.stdout)
			}
		}},
		{"S3-network", false, []string{"--image", image("network")}, func(t *testing.T, r result) {
			wantExit(t, r, 0)
			if !strings.Contains(r.stdout, "no network") && !strings.Contains(r.stdout, "unreachable") {
				t.Errorf("stdout %q: want no network", r.stdout)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			skipUnlessSelected(t, c.ci)
			r := run(t, append([]string{"run", "--backend", "kvm"}, c.args...)...)
			if t.Failed() {
				return
			}
			c.check(t, r)
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", tail(r.stdout), tail(r.stderr))
			}
		})
	}
}

func wantExit(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d", r.code, code)
	}
}

func wantStdout(t *testing.T, r result, s string) {
	t.Helper()
	if r.stdout != s {
		t.Errorf("stdout %q, want %q", tail(r.stdout), s)
	}
}

// Four VMs at once all succeed and leave nothing behind.
func TestParallelRuns(t *testing.T) {
	needKVM(t)
	skipUnlessSelected(t, false)
	before := openFDs(t)
	var wg sync.WaitGroup
	results := make([]result, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = run(t, "run", "--backend", "kvm", "--image", image("basic"))
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 || r.stdout != "hello from vm\n" {
			t.Errorf("run %d: exit %d stdout %q stderr %s", i, r.code, r.stdout, tail(r.stderr))
		}
	}
	// No VMM process survives its runner.
	time.Sleep(200 * time.Millisecond)
	if left := vmmProcesses(t); len(left) > 0 {
		t.Errorf("VMM processes left: %v", left)
	}
	if after := openFDs(t); after > before {
		t.Errorf("test process holds %d fds, %d before", after, before)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// vmmProcesses lists processes running our built runner binary.
func vmmProcesses(t *testing.T) []string {
	t.Helper()
	es, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range es {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && exe == runnerBin {
			out = append(out, e.Name())
		}
	}
	return out
}

// SIGINT to the runner while its VM runs shuts the VM down and removes the run directory.
func TestInterruptStopsVMAndCleansUp(t *testing.T) {
	needKVM(t)
	skipUnlessSelected(t, false)
	work := t.TempDir()
	cmd := exec.Command(runnerBin, "run", "--backend", "kvm", "--image", image("timeout"))
	cmd.Env = append(os.Environ(), "RUNNER_WORK_DIR="+work)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Wait until the VMM runs (the run directory holds the VMM's vsock socket).
	deadline := time.Now().Add(time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(work, "*", "vsock.sock")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VM did not start; stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the runner did not end within 30 s of SIGINT")
	}
	t.Logf("runner ended %v after SIGINT, exit %d: %s", time.Since(start).Round(time.Millisecond),
		cmd.ProcessState.ExitCode(), strings.TrimSpace(stderr.String()))
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("an interrupted run exited %d, want 130", code)
	}
	assertEmptyDir(t, work)
	if left := vmmProcesses(t); len(left) > 0 {
		t.Errorf("VMM processes left: %v", left)
	}
}
