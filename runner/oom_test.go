package runner

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vmbench/runner/oci"
)

// hostOOMKills is the host's count of OOM kills (/proc/vmstat).
func hostOOMKills(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("oom_kill ")); ok {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			return n
		}
	}
	t.Skip("/proc/vmstat has no oom_kill counter")
	return 0
}

// In the sandbox the init's /proc/vmstat is the host's. A run's own OOM kill is reported;
// an OOM kill elsewhere on the host during a run is not, when the run's memory cgroup says
// it lost nothing.
func TestSandboxOOMVerdictIsTheRunsOwn(t *testing.T) {
	hog := scenarioConfig(t, "basic")
	hog.MemoryMiB = 64
	hog.Overrides = oci.Overrides{CmdSet: true, Cmd: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"}}
	o := run(t, hog)
	if o.res.ExitCode() == 0 {
		t.Skip("this host applies no memory limit to the sandbox (no memory cgroup controller)")
	}
	if o.res.ExitCode() != 137 || !o.res.Exit.OOMKilled {
		t.Fatalf("over its limit: exit %+v, want 137 and OOM-killed", o.res.Exit)
	}

	// A bystander with its own (ample) memory limit runs while the hog is killed again.
	bystander := scenarioConfig(t, "basic")
	bystander.MemoryMiB = 256
	bystander.Overrides = oci.Overrides{CmdSet: true, Cmd: []string{"sleep", "3"}}
	before := hostOOMKills(t)
	bystander.Stdout, bystander.Stderr = io.Discard, io.Discard
	var wg sync.WaitGroup
	var b *Result
	var bErr error
	// Run, not run: no t.Fatal off the test goroutine.
	wg.Go(func() { b, bErr = Run(context.Background(), bystander, SandboxBackend{}) })
	time.Sleep(time.Second) // the bystander's command is running
	if o := run(t, hog); !o.res.Exit.OOMKilled {
		t.Fatalf("hog: exit %+v, want OOM-killed", o.res.Exit)
	}
	wg.Wait()
	if hostOOMKills(t) == before {
		t.Fatal("the host counted no OOM kill during the bystander's run; the test proves nothing")
	}
	if bErr != nil {
		t.Fatalf("bystander: %v", bErr)
	}
	if b.ExitCode() != 0 || b.Exit.OOMKilled {
		t.Fatalf("bystander: exit %+v, want 0 and not OOM-killed", b.Exit)
	}
}
