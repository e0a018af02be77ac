package jail

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/vmm/vmmtest"
)

// The test binary re-executes itself as a jailed child (the same path the runner's VMM
// child takes) and the parent inspects it from outside through /proc.
const childEnv = "JAIL_TEST_CHILD"

func TestMain(m *testing.M) {
	if root := os.Getenv(childEnv); root != "" {
		os.Exit(jailedChild(root))
	}
	os.Exit(m.Run())
}

// jailedChild confines itself, reports "ready", then performs the system calls the parent
// asks for on stdin, one per line, answering "ok" or the error.
func jailedChild(root string) int {
	fail := func(err error) int { fmt.Println("error:", err); return 1 }
	if err := EnterRoot(root, []Bind{{Source: "/dev/null", Target: "dev/null"}}); err != nil {
		return fail(err)
	}
	if err := SetRlimits(DefaultLimits(1 << 20)); err != nil {
		return fail(err)
	}
	if err := DropCapabilities(); err != nil {
		return fail(err)
	}
	if err := InstallSeccomp(VMMPolicy()); err != nil {
		return fail(err)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var err error
		switch in.Text() {
		case "open-allowed":
			var f *os.File
			if f, err = os.Open("/dev/null"); err == nil {
				f.Close()
			}
		case "unix-socket":
			var fd int
			if fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0); err == nil {
				unix.Close(fd)
			}
		case "inet-socket":
			_, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		case "tty-ioctl":
			_, err = unix.IoctlGetTermios(0, unix.TCGETS)
		case "execve":
			err = syscall.Exec("/proc/self/exe", []string{"x"}, nil)
		case "mount":
			err = unix.Mount("none", "/", "tmpfs", 0, "")
		}
		if err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("ok")
		}
	}
	return 0
}

type child struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufio.Scanner
}

func startChild(t *testing.T) *child {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create namespaces and pivot_root (the runner runs as root)")
	}
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_GETPID, 0, 0, 0); errno == syscall.ENOTSUP {
		t.Skip("this test binary uses cgo (as -race does), which has no syscall.AllThreadsSyscall; the jail needs it, and the runner is built with CGO_ENABLED=0")
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "marker"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+root)
	cmd.SysProcAttr = SysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: stdin.(*os.File), out: bufio.NewScanner(stdout)}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line := c.line(); line != "ready" {
		t.Fatalf("child did not confine itself: %q", line)
	}
	return c
}

func (c *child) line() string {
	if !c.out.Scan() {
		return "<eof>"
	}
	return c.out.Text()
}

func (c *child) do(t *testing.T, op string) string {
	t.Helper()
	fmt.Fprintln(c.in, op)
	return c.line()
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	st, err := vmmtest.ProcStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestJailedProcessState(t *testing.T) {
	c := startChild(t)
	st := procStatus(t, c.cmd.Process.Pid)
	for k, want := range map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1",
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapInh": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NSpid": fmt.Sprintf("%d\t1", c.cmd.Process.Pid),
	} {
		if st[k] != want {
			t.Errorf("%s = %q, want %q", k, st[k], want)
		}
	}
	// The child's filesystem is the run directory and nothing else.
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root", c.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "dev marker" {
		t.Errorf("jail root holds %q, want \"dev marker\"", got)
	}
	// Its network namespace is not ours.
	mine, _ := os.Readlink("/proc/self/ns/net")
	theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", c.cmd.Process.Pid))
	if mine == theirs {
		t.Errorf("child shares the host network namespace %s", mine)
	}
	for _, op := range []string{"open-allowed", "unix-socket"} {
		if got := c.do(t, op); got != "ok" {
			t.Errorf("%s: %s", op, got)
		}
	}
}

func TestForbiddenSyscallKillsTheProcess(t *testing.T) {
	for _, op := range []string{"execve", "inet-socket", "tty-ioctl", "mount"} {
		t.Run(op, func(t *testing.T) {
			c := startChild(t)
			if got := c.do(t, op); got != "<eof>" {
				t.Fatalf("%s answered %q; want the process killed", op, got)
			}
			err := c.cmd.Wait()
			ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
				t.Fatalf("%s: child ended with %v, want killed by SIGSYS", op, err)
			}
		})
	}
}
