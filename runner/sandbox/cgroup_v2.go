package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroup2Mount returns the mount of the unified (v2) hierarchy, if there is one.
func cgroup2Mount(mounts []mountEntry) (mountEntry, bool) {
	for _, m := range mounts {
		if m.fstype == "cgroup2" {
			return m, true
		}
	}
	return mountEntry{}, false
}

// ownCgroup2Path returns this process's group in the v2 hierarchy ("0::/path").
func ownCgroup2Path(procCgroup []byte) string {
	for _, line := range strings.Split(string(procCgroup), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// newCgroup2 creates a v2 group with the limits below the runner's own, when the unified
// hierarchy offers every needed controller. Otherwise it returns nil and why not.
func newCgroup2(l Limits, mountinfo, own []byte) (*cgroup, string, error) {
	mnt, ok := cgroup2Mount(parseMountinfo(mountinfo))
	if !ok {
		return nil, "no cgroup2 mount", nil
	}
	parent := mnt.groupDir(ownCgroup2Path(own))
	available, _ := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	have := strings.Fields(string(available))
	var missing []string
	for _, c := range l.neededControllers() {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Sprintf("%s offers %q, not %s", parent, have, strings.Join(missing, ",")), nil
	}
	// Delegate the controllers to children (fails if parent is a non-root group holding
	// processes: the "no internal processes" rule; then there is nothing we may do).
	var enable []string
	for _, c := range l.neededControllers() {
		enable = append(enable, "+"+c)
	}
	if err := writeControl(parent, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
		return nil, err.Error(), nil
	}
	dir := filepath.Join(parent, newGroupName())
	if err := os.Mkdir(dir, 0o755); err != nil {
		if notPermitted(err) {
			return nil, err.Error(), nil
		}
		return nil, "", fmt.Errorf("sandbox: cgroup: %w", err)
	}
	cg := &cgroup{dirs: []string{dir}, fd: -1}
	if l.MemoryBytes > 0 {
		cg.oomEvents = filepath.Join(dir, "memory.events")
	}
	if err := applyCgroup2(dir, l); err != nil {
		cg.remove()
		return nil, "", err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		cg.remove()
		return nil, "", fmt.Errorf("sandbox: cgroup: %w", err)
	}
	cg.fd = fd
	return cg, "", nil
}

func applyCgroup2(dir string, l Limits) error {
	if l.MemoryBytes > 0 {
		if err := writeControl(dir, "memory.max", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return err
		}
		if err := writeControl(dir, "memory.swap.max", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if l.Pids > 0 {
		if err := writeControl(dir, "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		if err := writeControl(dir, "cpu.max", fmt.Sprintf("%d %d", int64(l.CPUs*cpuPeriod), cpuPeriod)); err != nil {
			return err
		}
	}
	return nil
}
