package vm

import (
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
	"github.com/vmbench/runner/vmm/vmmtest"
)

// These tests start the real VMM child (`runner vmm`, built from ./cmd/runner) with the
// real kernel, and inspect the process from outside. They need no guest to boot: what they
// check holds from the moment the VMM reports "started".

var runnerExe string

func TestMain(m *testing.M) {
	code, err := buildRunner(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(code)
}

func buildRunner(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "vm-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	runnerExe = filepath.Join(dir, "runner")
	cmd := exec.Command("go", "build", "-o", runnerExe, "./cmd/runner")
	cmd.Dir = repo
	// The jail changes capabilities on every thread (AllThreadsSyscall): no cgo.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build runner: %v\n%s", err, out)
	}
	return m.Run(), nil
}

func needHost(t *testing.T) kernel.Kernel {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the VMM jail needs root (namespaces, pivot_root)")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("no KVM on this host: %v", err)
	}
	k, err := kernel.Locate("")
	if err != nil {
		t.Fatalf("%v (make test builds it first)", err)
	}
	return k
}

// startVM starts a VMM child over a blank 16 MiB disk; the guest never gets far.
func startVM(t *testing.T, k kernel.Kernel, selfTest string) *VM {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, RootfsName), make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := Start(Config{
		Exe: runnerExe, RunDir: dir, Kernel: k.Path,
		Cmdline: kernel.Join(kernel.Cmdline(k.Flavour)), VCPUs: 1, MemoryMiB: 128,
		Serial: "test", InitPort: 10000, SelfTest: selfTest, LogLevel: "warn",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Kill(); v.Wait() })
	return v
}

func status(t *testing.T, pid int) map[string]string {
	t.Helper()
	st, err := vmmtest.ProcStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// The real VMM process runs under its seccomp filter, with no capabilities, in its own
// namespaces, seeing only the run directory.
func TestVMMProcessIsConfined(t *testing.T) {
	k := needHost(t)
	v := startVM(t, k, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := v.Started(ctx); err != nil {
		t.Fatal(err)
	}
	pid := v.PID()
	st := status(t, pid)
	for key, want := range map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1",
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
	} {
		if st[key] != want {
			t.Errorf("VMM %s = %q, want %q", key, st[key], want)
		}
	}
	// Every thread (vCPUs included) carries the filter.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if !strings.Contains(string(b), "Seccomp:\t2") {
			t.Errorf("VMM thread %s has no seccomp filter", task.Name())
		}
	}
	for _, ns := range []string{"mnt", "net", "pid", "ipc", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if mine == theirs {
			t.Errorf("VMM shares the runner's %s namespace", ns)
		}
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), "dev rootfs.img vmlinux vsock.sock vsock.sock_10000"; got != want {
		t.Errorf("VMM root holds %q, want %q", got, want)
	}
}

// A forbidden system call (execve) made by the real VMM process after confinement kills it.
func TestVMMForbiddenSyscallIsKilled(t *testing.T) {
	k := needHost(t)
	v := startVM(t, k, "forbidden-syscall")
	_, err := v.Wait()
	if err == nil || !strings.Contains(err.Error(), "seccomp") {
		t.Fatalf("VMM ended with %v, want killed by its seccomp filter", err)
	}
}
