// Package runnertest provides what tests of the runner need: a bencher-init binary built
// from this source tree.
package runnertest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once     sync.Once
	initPath string
	buildErr error
)

// InitBinary returns a static bencher-init built from this source tree, building it (with the go
// tool's cache, usually in about a second) the first time a test process asks.
// RUNNER_TEST_INIT names a prebuilt binary instead.
func InitBinary(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if p := os.Getenv("RUNNER_TEST_INIT"); p != "" {
			initPath = p
			return
		}
		initPath, buildErr = build()
	})
	if buildErr != nil {
		t.Fatalf("build bencher-init: %v", buildErr)
	}
	return initPath
}

// build compiles the init into a temporary file and renames it to a name derived from its
// content, so that test processes of several packages running at once share identical
// binaries without ever replacing one another's.
func build() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("vmbench-testinit-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".build-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is needed to build bencher-init (or set RUNNER_TEST_INIT): %w", err)
	}
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", tmp.Name(), "github.com/vmbench/runner/cmd/bencher-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	f, err := os.Open(tmp.Name())
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, "bencher-init-"+hex.EncodeToString(h.Sum(nil))[:16])
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	return final, nil
}
