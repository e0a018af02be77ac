package kernel_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/kernel/kerneltest"
)

// TestBuildScriptCacheHit runs kernel/build.sh for this host's flavour after `make kernel`
// has built it: the cache key of the current sources must name the cached build, and the
// script must answer from the cache (no build) with the vmlinux path as its last line.
func TestBuildScriptCacheHit(t *testing.T) {
	f := kernel.DetectFlavour()
	cached := kerneltest.FlavourKernel(t, f)
	target, err := filepath.EvalSymlinks(cached)
	if err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("./build.sh", "--flavour", string(f), "--print-key").Output()
	if err != nil {
		t.Fatalf("build.sh --print-key: %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 || fields[0] != string(f) {
		t.Fatalf("build.sh --print-key printed %q", out)
	}
	if key := filepath.Base(filepath.Dir(target)); key != fields[1] {
		t.Fatalf("the cached %s kernel was built from other sources (key %s, sources now %s): run `make kernel`", f, key, fields[1])
	}

	// The deadline only stops a runaway build; the run is expected to take well under 1 s
	// (measured, not asserted: see kernel/README.md).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./build.sh", "--flavour", string(f))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, stderr.String())
	}
	t.Logf("cache hit took %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(stderr.String(), "cache hit") {
		t.Errorf("build.sh did not report a cache hit:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if last := lines[len(lines)-1]; last != target {
		t.Errorf("last line %q, want the vmlinux path %q", last, target)
	}
	info, err := os.ReadFile(filepath.Join(filepath.Dir(target), "build-info"))
	if err != nil {
		t.Fatalf("build-info next to the cached vmlinux: %v", err)
	}
	t.Logf("build-info:\n%s", info)
}
