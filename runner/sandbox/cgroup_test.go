package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/protocol"
	"github.com/vmbench/runner/runner/session"
)

func TestCgroupParsing(t *testing.T) {
	mi := []byte(`24 27 0:6 / /dev rw - devtmpfs devtmpfs rw
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/uni\040fied rw,relatime - cgroup2 cgroup2 rw
`)
	mounts := parseMountinfo(mi)
	if len(mounts) != 4 {
		t.Fatalf("parsed %d cgroup mounts: %+v", len(mounts), mounts)
	}
	if m, ok := cgroup2Mount(mounts); !ok || m.point != "/sys/fs/cgroup/uni fied" {
		t.Errorf("cgroup2Mount = %+v %v", m, ok)
	}
	own := []byte("9:name=systemd:/\n4:memory:/docker/abc/x\n2:cpu,cpuacct:/user.slice\n0::/user.slice/a\n")
	if got := ownCgroup2Path(own); got != "/user.slice/a" {
		t.Errorf("ownCgroup2Path = %q", got)
	}
	for _, tc := range []struct{ controller, dir string }{
		{"cpu", "/sys/fs/cgroup/cpu,cpuacct/user.slice"},
		{"memory", "/sys/fs/cgroup/memory/x"}, // the mount's root is the group /docker/abc
	} {
		m, ok := cgroup1Mount(mounts, tc.controller)
		path, in := ownCgroup1Path(own, tc.controller)
		if !ok || !in || m.groupDir(path) != tc.dir {
			t.Errorf("%s: mount %+v %v, own %q %v, dir %q; want %q", tc.controller, m, ok, path, in, m.groupDir(path), tc.dir)
		}
	}
	if _, ok := cgroup1Mount(mounts, "pids"); ok {
		t.Error("pids found without its hierarchy")
	}
	if _, ok := ownCgroup1Path(own, "systemd"); ok {
		t.Error("name=systemd taken for a controller")
	}
	if got := (Limits{MemoryBytes: 1, CPUs: 1}).neededControllers(); strings.Join(got, ",") != "memory,cpu" {
		t.Errorf("controllers %v", got)
	}
	if cg, err := newCgroup(Limits{}); cg != nil || err != nil {
		t.Errorf("no limits: %v %v", cg, err)
	}
}

// limitsOrSkip returns the cgroup version this host gives a sandbox with l, or skips.
func limitsOrSkip(t *testing.T, l Limits) int {
	t.Helper()
	cg, err := newCgroup(l)
	if err != nil {
		t.Fatal(err)
	}
	if cg == nil {
		t.Skip("this host offers no cgroup controllers (v2 or v1) for memory, pids and cpu: limits cannot be applied")
	}
	defer cg.remove()
	if cg.fd >= 0 { // only a v2 group is cloned into through a descriptor
		return 2
	}
	return 1
}

// startWithLimits starts a sandbox with l and runs script, leaving the sandbox open so the
// test can look at its groups; the sandbox is closed at the end of the test.
func startWithLimits(t *testing.T, l Limits, script string) (*Sandbox, *session.Result, string) {
	t.Helper()
	needTools(t, "mkfs.ext4")
	img := makeImage(t, imageTree(t, true), FormatExt4)
	sb, err := Start(context.Background(), Config{Image: img, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	if sb.cg == nil {
		sb.Close()
		t.Fatal("limits requested on a host that offers them, but the sandbox has no cgroup")
	}
	dirs := sb.cg.dirs
	t.Cleanup(func() {
		sb.Close()
		for _, dir := range dirs {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("cgroup %s left after Close", dir)
			}
		}
	})
	var out, errb strings.Builder
	rc := protocol.RunConfig{Argv: []string{"sh", "-c", script}, WorkDir: "/"}
	res, err := session.Run(context.Background(), sb.Conn(), rc, session.Options{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("session: %v (stderr %q)", err, errb.String())
	}
	return sb, res, out.String() + errb.String()
}

// controlFile reads a control file from whichever of the sandbox's groups has it.
func controlFile(t *testing.T, sb *Sandbox, file string) string {
	t.Helper()
	for _, dir := range sb.cg.dirs {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
			return string(b)
		}
	}
	t.Fatalf("no group of %v has %s", sb.cg.dirs, file)
	return ""
}

func statField(text, key string) int64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return -1
}

// The memory limit holds: a workload that allocates past it is OOM-killed, and the sandbox
// reports the kill.
func TestSandboxMemoryLimit(t *testing.T) {
	l := Limits{MemoryBytes: 48 << 20}
	t.Logf("cgroup v%d", limitsOrSkip(t, l))
	// dd allocates its 128 MiB block before it reads anything.
	sb, res, out := startWithLimits(t, l, `dd if=/dev/zero of=/dev/null bs=128M count=1; echo dd=$?`)
	if _, err := sb.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "dd=137") || !sb.OOMKilled() || !res.Exit.OOMKilled {
		t.Fatalf("output %q, sandbox OOM %v, init OOM %v", out, sb.OOMKilled(), res.Exit.OOMKilled)
	}
}

// The pids limit holds: forks past it fail.
func TestSandboxPidsLimit(t *testing.T) {
	l := Limits{Pids: 8}
	t.Logf("cgroup v%d", limitsOrSkip(t, l))
	sb, res, out := startWithLimits(t, l, `n=0; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & n=$((n+1)); done 2>&1; echo started=$n`)
	if events := controlFile(t, sb, "pids.events"); statField(events, "max") <= 0 {
		t.Fatalf("pids.events %q: no fork refused; output %q exit %+v", events, out, res.Exit)
	}
	if !strings.Contains(out, "fork") {
		t.Fatalf("output %q: no failed fork reported", out)
	}
}

// The CPU quota holds: a busy loop on a half-CPU quota is throttled.
func TestSandboxCPUQuota(t *testing.T) {
	l := Limits{CPUs: 0.5}
	t.Logf("cgroup v%d", limitsOrSkip(t, l))
	sb, res, out := startWithLimits(t, l, `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo $i`)
	if res.Exit.Code != 0 || strings.TrimSpace(out) != "200000" {
		t.Fatalf("exit %+v output %q", res.Exit, out)
	}
	if stat := controlFile(t, sb, "cpu.stat"); statField(stat, "nr_throttled") <= 0 {
		t.Fatalf("cpu.stat %q: never throttled", stat)
	}
}

// A hierarchy without the needed controllers is "not available", with the reason, not an
// error: newCgroup then warns and the run goes on unbounded.
func TestCgroupUnavailableReasons(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("hugetlb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mi := []byte("40 30 0:37 / " + root + " rw,relatime - cgroup2 cgroup2 rw\n")
	own := []byte("0::/\n")
	l := Limits{MemoryBytes: 64 << 20, Pids: 10}
	cg, why, err := newCgroup2(l, mi, own)
	if cg != nil || err != nil || !strings.Contains(why, "memory,pids") {
		t.Errorf("v2 without controllers: %v %q %v", cg, why, err)
	}
	cg, why, err = newCgroup1(l, mi, own)
	if cg != nil || err != nil || why != "no v1 hierarchy for memory,pids" {
		t.Errorf("no v1 hierarchies: %v %q %v", cg, why, err)
	}
	if cg, why, err = newCgroup2(l, nil, own); cg != nil || err != nil || why != "no cgroup2 mount" {
		t.Errorf("no cgroup2 mount: %v %q %v", cg, why, err)
	}
}

// A hierarchy the runner may not write to (read-only, as in many containers) means no
// limits, with the reason, rather than a failed start.
func TestCgroupReadOnlyHierarchy(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a read-only tmpfs")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot mount a read-only tmpfs here: %v", err)
	}
	defer unix.Unmount(root, unix.MNT_DETACH)
	mi := []byte("34 30 0:31 / " + root + " rw,relatime - cgroup cgroup rw,memory\n")
	cg, why, err := newCgroup1(Limits{MemoryBytes: 64 << 20}, mi, []byte("4:memory:/\n"))
	if cg != nil || err != nil || !strings.Contains(why, "read-only") {
		t.Fatalf("read-only v1 hierarchy: %v %q %v", cg, why, err)
	}
}
