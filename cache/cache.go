package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is the root of the runner's caches: $RUNNER_CACHE_DIR, else $XDG_CACHE_HOME/vmbench,
// else ~/.cache/vmbench. kernel/build.sh applies the same rule.
func Dir() string {
	if d := os.Getenv("RUNNER_CACHE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "vmbench")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "vmbench")
	}
	return filepath.Join(os.TempDir(), "vmbench")
}

// Area names, each a subdirectory of the cache root.
const (
	AreaOCI    = "oci"
	AreaRootfs = "rootfs"
	AreaKernel = "kernel"
)

// Touch marks a cache entry as used now (its modification time is its last use). Errors
// are ignored: a read-only cache still works, it only ages by its write time.
func Touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// ErrBusy means the cache lock could not be taken in time: runs are reading the cache.
var ErrBusy = errors.New("cache in use by starting runs")

// Lock is a held cache lock; Unlock releases it.
type Lock struct{ f *os.File }

// Unlock releases the lock. It is safe on a nil Lock.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// LockShared takes the cache lock of root for reading: any number of runs hold it at once,
// and a prune waits for them. It waits as long as ctx allows.
func LockShared(ctx context.Context, root string) (*Lock, error) {
	return lock(ctx, root, unix.LOCK_SH)
}

// LockExclusive takes the cache lock of root for pruning, waiting up to wait (0: one try);
// ErrBusy when runs hold it all that time.
func LockExclusive(ctx context.Context, root string, wait time.Duration) (*Lock, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	l, err := lock(ctx, root, unix.LOCK_EX)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, ErrBusy
	}
	return l, err
}

func lock(ctx context.Context, root string, how int) (*Lock, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", root, err)
	}
	return flock(ctx, filepath.Join(root, ".lock"), how)
}

// LockFile takes an exclusive flock on the file p (created if missing), waiting as long as
// ctx allows: the per-entry lock a cache writer holds while it builds that entry.
func LockFile(ctx context.Context, p string) (*Lock, error) {
	return flock(ctx, p, unix.LOCK_EX)
}

func flock(ctx context.Context, p string, how int) (*Lock, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
