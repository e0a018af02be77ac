//go:build slow

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/testimages"
)

var (
	runnerBin string // built runner (bencher-init next to it)
	layoutDir string // OCI layout holding every test image, tagged by name
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	tmp, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	for _, b := range []struct{ out, pkg string }{
		{"runner", "./cmd/runner"},
		{"bencher-init", "./cmd/bencher-init"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	runnerBin = filepath.Join(bin, "runner")
	imgs, err := testimages.BuildAll()
	if err != nil {
		return 0, err
	}
	layoutDir = filepath.Join(tmp, "images")
	if err := testimages.WriteLayout(layoutDir, imgs); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// image is the --image reference of a test image.
func image(name string) string { return "oci:" + layoutDir + ":" + name }

// inCISubset reports whether the test runs when RUNNER_E2E_SUBSET=ci.
func skipUnlessSelected(t *testing.T, ci bool) {
	t.Helper()
	if os.Getenv("RUNNER_E2E_SUBSET") == "ci" && !ci {
		t.Skip("not in the CI subset (RUNNER_E2E_SUBSET=ci); run `make e2e-vm` for the full tier")
	}
}

// needKVM skips, naming the reason, only when the host truly has no /dev/kvm; with the
// device present a missing guest kernel fails the test (make e2e-* builds it first), so a
// broken setup is never hidden behind a skip.
func needKVM(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("no /dev/kvm on this host: %v", err)
	}
	if _, err := kernel.Locate(""); err != nil {
		t.Fatalf("guest kernel: %v", err)
	}
}

type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
	workDir        string
}

// bootAllowance bounds one VM run: the emulated KVM here needs ~30-40 s per boot, more when
// several VMs share the two cores.
const bootAllowance = 8 * time.Minute

// run executes the runner with args and a private work directory.
func run(t *testing.T, args ...string) result {
	t.Helper()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), bootAllowance)
	defer cancel()
	cmd := exec.CommandContext(ctx, runnerBin, args...)
	cmd.Env = append(os.Environ(), "RUNNER_WORK_DIR="+work)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start), workDir: work}
	if ctx.Err() != nil {
		t.Fatalf("runner %s: no result within %v\nstderr:\n%s", strings.Join(args, " "), bootAllowance, tail(r.stderr))
	}
	r.code = cmd.ProcessState.ExitCode()
	if err != nil && r.code < 0 {
		t.Fatalf("runner %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("runner %s: exit %d in %v", strings.Join(args, " "), r.code, r.elapsed.Round(time.Millisecond))
	assertEmptyDir(t, work)
	return r
}

// assertEmptyDir checks that nothing of a run is left behind in its work directory.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("work directory %s not cleaned up: %v", dir, names)
	}
}

func tail(s string) string {
	const max = 4000
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}
