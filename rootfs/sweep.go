package rootfs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Temporary directories carry the pid of the process that made them, so a later Build can
// remove those left by a process that died mid-build (SIGKILL, OOM, power loss) — which
// matters most for unpack trees in /dev/shm, which hold memory until removed.
const (
	buildPrefix  = ".build-"
	unpackPrefix = ".rootfs-unpack-"
)

// mkdirTempOwned makes a temporary directory PREFIX<pid>-<random> in parent.
func mkdirTempOwned(parent, prefix string) (string, error) {
	return os.MkdirTemp(parent, fmt.Sprintf("%s%d-*", prefix, os.Getpid()))
}

// sweepDead removes PREFIX<pid>-* entries of parent whose process no longer exists.
func sweepDead(parent, prefix string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			continue // alive (or not ours to judge)
		}
		p := filepath.Join(parent, e.Name())
		if err := os.RemoveAll(p); err != nil {
			slog.Warn("rootfs: remove stale build directory", "path", p, "err", err)
			continue
		}
		slog.Info("rootfs: removed stale build directory", "path", p, "pid", pid)
	}
}
