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
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits bound the sandbox's resources through cgroup v2. Zero fields are unlimited.
type Limits struct {
	MemoryBytes int64   // memory.max (and memory.swap.max 0)
	Pids        int64   // pids.max
	CPUs        float64 // cpu.max quota in CPUs (1.5 = 150 ms per 100 ms)
}

func (l Limits) zero() bool { return l.MemoryBytes == 0 && l.Pids == 0 && l.CPUs == 0 }

// cgroup is a cgroup v2 directory created for one sandbox.
type cgroup struct {
	dir string
	fd  int // O_PATH descriptor for clone3(CLONE_INTO_CGROUP)
}

// cgroup2Mount returns where the unified (v2) hierarchy is mounted, from mountinfo text.
func cgroup2Mount(mountinfo []byte) string {
	s := bufio.NewScanner(bytes.NewReader(mountinfo))
	for s.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		if f := strings.Fields(post); len(f) > 0 && f[0] == "cgroup2" {
			if pf := strings.Fields(pre); len(pf) >= 5 {
				return unescapeMountinfo(pf[4])
			}
		}
	}
	return ""
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

// ownCgroup2Path returns this process's cgroup in the v2 hierarchy ("0::/path").
func ownCgroup2Path(procCgroup []byte) string {
	for _, line := range strings.Split(string(procCgroup), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// neededControllers lists the cgroup v2 controllers the limits need.
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

// newCgroup creates a cgroup with the limits under the runner's own cgroup v2 group, when
// the hierarchy exists and offers the needed controllers. It returns nil (and logs at debug
// level) when limits cannot be applied on this host; that is not an error.
func newCgroup(l Limits) (*cgroup, error) {
	if l.zero() {
		return nil, nil
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("sandbox: cgroup: %w", err)
	}
	mnt := cgroup2Mount(mountinfo)
	own, _ := os.ReadFile("/proc/self/cgroup")
	if mnt == "" {
		slog.Debug("sandbox: no cgroup v2 hierarchy; running without limits")
		return nil, nil
	}
	parent := filepath.Join(mnt, ownCgroup2Path(own))
	available, _ := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	have := strings.Fields(string(available))
	var missing []string
	for _, c := range l.neededControllers() {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		slog.Debug("sandbox: cgroup v2 controllers unavailable; running without limits",
			"cgroup", parent, "missing", missing, "available", have)
		return nil, nil
	}
	// Delegate the controllers to children (fails if parent is a non-root group holding
	// processes: the "no internal processes" rule; then there is nothing we may do).
	var enable []string
	for _, c := range l.neededControllers() {
		enable = append(enable, "+"+c)
	}
	if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0); err != nil {
		slog.Debug("sandbox: cannot delegate cgroup controllers; running without limits", "cgroup", parent, "err", err)
		return nil, nil
	}
	var id [6]byte
	rand.Read(id[:])
	dir := filepath.Join(parent, "bencher-sandbox-"+hex.EncodeToString(id[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: cgroup: %w", err)
	}
	cg := &cgroup{dir: dir, fd: -1}
	if err := cg.apply(l); err != nil {
		cg.remove()
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		cg.remove()
		return nil, fmt.Errorf("sandbox: cgroup: %w", err)
	}
	cg.fd = fd
	return cg, nil
}

func (cg *cgroup) apply(l Limits) error {
	write := func(file, value string) error {
		if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(value), 0); err != nil {
			return fmt.Errorf("sandbox: cgroup %s = %s: %w", file, value, err)
		}
		return nil
	}
	if l.MemoryBytes > 0 {
		if err := write("memory.max", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return err
		}
		if err := write("memory.swap.max", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if l.Pids > 0 {
		if err := write("pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		const period = 100000
		if err := write("cpu.max", fmt.Sprintf("%d %d", int64(l.CPUs*period), period)); err != nil {
			return err
		}
	}
	return nil
}

// oomKills returns memory.events' oom_kill count, 0 if unknown.
func (cg *cgroup) oomKills() int64 {
	b, err := os.ReadFile(filepath.Join(cg.dir, "memory.events"))
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

// remove deletes the cgroup; it must be empty (the sandbox's processes are gone).
func (cg *cgroup) remove() {
	if cg.fd >= 0 {
		unix.Close(cg.fd)
		cg.fd = -1
	}
	if err := unix.Rmdir(cg.dir); err != nil && err != unix.ENOENT {
		slog.Warn("sandbox: remove cgroup", "cgroup", cg.dir, "err", err)
	}
}
