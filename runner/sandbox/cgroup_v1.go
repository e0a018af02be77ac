package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ownCgroup1Path returns this process's group in the v1 hierarchy that carries controller
// ("N:cpu,cpuacct:/path"), and whether there is one.
func ownCgroup1Path(procCgroup []byte, controller string) (string, bool) {
	for _, line := range strings.Split(string(procCgroup), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), controller) {
			return f[2], true
		}
	}
	return "", false
}

// cgroup1Mount returns the v1 mount whose hierarchy carries controller.
func cgroup1Mount(mounts []mountEntry, controller string) (mountEntry, bool) {
	for _, m := range mounts {
		if m.fstype == "cgroup" && slices.Contains(m.superOpts, controller) {
			return m, true
		}
	}
	return mountEntry{}, false
}

// newCgroup1 creates one v1 group per needed controller below the runner's own, when every
// needed controller's hierarchy is mounted. Otherwise it returns nil and why not.
func newCgroup1(l Limits, mountinfo, own []byte) (*cgroup, string, error) {
	mounts := parseMountinfo(mountinfo)
	parents := map[string]string{}
	var missing []string
	for _, c := range l.neededControllers() {
		m, ok := cgroup1Mount(mounts, c)
		path, inIt := ownCgroup1Path(own, c)
		if !ok || !inIt {
			missing = append(missing, c)
			continue
		}
		parents[c] = m.groupDir(path)
	}
	if len(missing) > 0 {
		return nil, "no v1 hierarchy for " + strings.Join(missing, ","), nil
	}
	cg := &cgroup{fd: -1}
	name := newGroupName()
	for _, c := range l.neededControllers() {
		dir := filepath.Join(parents[c], name)
		if slices.Contains(cg.dirs, dir) { // co-mounted controllers (cpu,cpuacct) share one
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			cg.remove()
			if notPermitted(err) {
				return nil, err.Error(), nil
			}
			return nil, "", fmt.Errorf("sandbox: cgroup: %w", err)
		}
		cg.dirs = append(cg.dirs, dir)
		procs, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			cg.remove()
			return nil, "", fmt.Errorf("sandbox: cgroup: %w", err)
		}
		cg.procs = append(cg.procs, procs)
	}
	if err := cg.applyCgroup1(l, name, parents); err != nil {
		cg.remove()
		return nil, "", err
	}
	return cg, "", nil
}

func (cg *cgroup) applyCgroup1(l Limits, name string, parents map[string]string) error {
	if l.MemoryBytes > 0 {
		dir := filepath.Join(parents["memory"], name)
		cg.oomEvents = filepath.Join(dir, "memory.oom_control")
		v := strconv.FormatInt(l.MemoryBytes, 10)
		if err := writeControl(dir, "memory.limit_in_bytes", v); err != nil {
			return err
		}
		// Memory plus swap at the same bound: no swap. Absent without swap accounting.
		if err := writeControl(dir, "memory.memsw.limit_in_bytes", v); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if l.Pids > 0 {
		if err := writeControl(filepath.Join(parents["pids"], name), "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		dir := filepath.Join(parents["cpu"], name)
		if err := writeControl(dir, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		if err := writeControl(dir, "cpu.cfs_quota_us", strconv.FormatInt(int64(l.CPUs*cpuPeriod), 10)); err != nil {
			return err
		}
	}
	return nil
}
