package sandbox

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Limits bound the sandbox's resources through cgroups. Zero fields are unlimited.
type Limits struct {
	MemoryBytes int64   // memory.max (and no swap)
	Pids        int64   // pids.max
	CPUs        float64 // CFS quota in CPUs (1.5 = 150 ms per 100 ms)
}

func (l Limits) zero() bool { return l.MemoryBytes == 0 && l.Pids == 0 && l.CPUs == 0 }

// neededControllers lists the cgroup controllers the limits need.
func (l Limits) neededControllers() []string {
	var c []string
	if l.MemoryBytes > 0 {
		c = append(c, "memory")
	}
	if l.Pids > 0 {
		c = append(c, "pids")
	}
	if l.CPUs > 0 {
		c = append(c, "cpu")
	}
	return c
}

// cpuPeriod is the CFS period the CPU quota is expressed in, in microseconds.
const cpuPeriod = 100000

// cgroup holds the control groups of one sandbox. On a cgroup v2 host it is one directory
// and the init is cloned straight into it (CLONE_INTO_CGROUP through fd). On a host whose
// controllers are still on cgroup v1 hierarchies it is one directory per controller, and the
// init is moved into them (procs) right after it starts: before the host has sent its run
// configuration, so before anything of the image runs.
type cgroup struct {
	dirs  []string   // v2: one; v1: one per controller
	fd    int        // v2: O_PATH descriptor of dirs[0]; -1 on v1
	procs []*os.File // v1: each directory's cgroup.procs, opened before the sandbox's root is entered
	// oomEvents is the memory controller's file with the "oom_kill N" line (v2
	// memory.events, v1 memory.oom_control), or "" without a memory limit.
	oomEvents string
}

// newCgroup creates the sandbox's control groups below the runner's own. It returns nil
// when there are no limits, and nil with a warning when this host offers no way to apply
// them: a missing controller is not an error, but the user must know the run is unbounded.
func newCgroup(l Limits) (*cgroup, error) {
	if l.zero() {
		return nil, nil
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("sandbox: cgroup: %w", err)
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("sandbox: cgroup: %w", err)
	}
	cg, why2, err := newCgroup2(l, mountinfo, own)
	if cg != nil || err != nil {
		return cg, err
	}
	cg, why1, err := newCgroup1(l, mountinfo, own)
	if cg != nil || err != nil {
		return cg, err
	}
	slog.Warn("sandbox: resource limits not applied: this host offers no cgroup controllers for them",
		"limits", strings.Join(l.neededControllers(), ","), "cgroup2", why2, "cgroup1", why1)
	return nil, nil
}

// newGroupName is a fresh directory name for one sandbox's cgroup.
func newGroupName() string {
	var id [6]byte
	rand.Read(id[:])
	return "bencher-sandbox-" + hex.EncodeToString(id[:])
}

// writeControl sets one control file of dir.
func writeControl(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("sandbox: cgroup %s = %s: %w", filepath.Join(dir, file), value, err)
	}
	return nil
}

// notPermitted reports a hierarchy the runner may not create groups in (mounted read-only,
// as in many containers, or not delegated to this user): no limits here, not a failure.
func notPermitted(err error) bool {
	return errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

// attach moves the started init into the v1 groups (a v2 init was cloned into its group).
// Precondition: may run after the sandbox's root is entered (it writes through procs).
func (cg *cgroup) attach(pid int) error {
	for _, f := range cg.procs {
		if _, err := f.WriteString(strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("sandbox: cgroup: move init into %s: %w", f.Name(), err)
		}
	}
	return nil
}

// oomKills returns how many processes the memory controller killed, 0 if unknown.
func (cg *cgroup) oomKills() int64 {
	if cg.oomEvents == "" {
		return 0
	}
	b, err := os.ReadFile(cg.oomEvents)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes the groups; they must be empty (the sandbox's processes are gone). The
// kernel may still be tearing down the last of the PID namespace's processes when the init
// has been reaped, so a busy group is retried for a moment.
func (cg *cgroup) remove() {
	if cg.fd >= 0 {
		unix.Close(cg.fd)
		cg.fd = -1
	}
	for _, f := range cg.procs {
		f.Close()
	}
	cg.procs = nil
	for _, dir := range cg.dirs {
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := unix.Rmdir(dir)
			if err == unix.EBUSY && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err != nil && err != unix.ENOENT {
				slog.Warn("sandbox: remove cgroup", "cgroup", dir, "err", err)
			}
			break
		}
	}
}

// mountEntry is one line of /proc/self/mountinfo, as far as cgroups need it.
type mountEntry struct {
	root, point, fstype string
	superOpts           []string
}

// parseMountinfo reads the cgroup and cgroup2 mounts of /proc/self/mountinfo text.
func parseMountinfo(mountinfo []byte) []mountEntry {
	var out []mountEntry
	s := bufio.NewScanner(bytes.NewReader(mountinfo))
	for s.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		pf, f := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(f) < 3 || (f[0] != "cgroup" && f[0] != "cgroup2") {
			continue
		}
		out = append(out, mountEntry{
			root: unescapeMountinfo(pf[3]), point: unescapeMountinfo(pf[4]),
			fstype: f[0], superOpts: strings.Split(f[2], ","),
		})
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of /proc/*/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// groupDir is where a process's group (own, as /proc/self/cgroup gives it) lives under a
// mount of its hierarchy whose root is m.root.
func (m mountEntry) groupDir(own string) string {
	rel := own
	if m.root != "/" {
		if r, ok := strings.CutPrefix(own, m.root); ok && (r == "" || r[0] == '/') {
			rel = r
		}
	}
	return filepath.Join(m.point, rel)
}
