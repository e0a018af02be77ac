package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// PruneOptions says what Prune removes.
type PruneOptions struct {
	// OlderThan keeps entries used more recently than this; 0 removes every entry.
	OlderThan time.Duration
	// Kernels also removes kernel builds that no flavour's vmlinux link points at (by age),
	// and leftover kernel source trees (whatever their age). The current builds are never
	// removed: rebuilding one takes minutes.
	Kernels bool
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// Wait bounds how long Prune waits for starting runs to release the cache (0: one try).
	Wait time.Duration
}

// Prune removes the cache entries under root that opts selects and returns them. It holds
// the cache lock exclusively, so no run is between a cache hit and its copy meanwhile.
func Prune(ctx context.Context, root string, opts PruneOptions) ([]Entry, error) {
	l, err := LockExclusive(ctx, root, opts.Wait)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	entries, err := Scan(root)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", root, err)
	}
	now := time.Now()
	var removed []Entry
	for _, e := range entries {
		if !selected(e, opts, now) {
			continue
		}
		if !opts.DryRun {
			ok, err := remove(e)
			if err != nil {
				return removed, fmt.Errorf("cache: remove %s: %w", e.Path, err)
			}
			if !ok {
				continue // in use
			}
		}
		removed = append(removed, e)
	}
	return removed, nil
}

func selected(e Entry, opts PruneOptions, now time.Time) bool {
	if e.Area == AreaKernel && (!opts.Kernels || e.Current) {
		return false
	}
	if e.Tree {
		return true // garbage whatever its age (a running build holds it; remove checks)
	}
	return now.Sub(e.LastUsed) >= opts.OlderThan
}

// remove deletes one entry; false (and no error) when its owner holds it: a root filesystem
// image being rebuilt, or a kernel tree whose build is running.
func remove(e Entry) (bool, error) {
	switch {
	case e.Area == AreaRootfs:
		// The builder holds IMAGE.lock while it writes IMAGE.
		unlock, ok, err := tryLock(e.Path + ".lock")
		if err != nil || !ok {
			return false, err
		}
		defer unlock()
		if err := os.Remove(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
		os.Remove(e.Path + ".lock")
		return true, nil
	case e.Tree:
		// kernel/build.sh holds kernel/FLAVOUR/.lock while it builds in kernel/build/FLAVOUR-KEY.
		name := filepath.Base(e.Path)
		flavour := name[:max(strings.LastIndexByte(name, '-'), 0)]
		unlock, ok, err := tryLock(filepath.Join(filepath.Dir(filepath.Dir(e.Path)), flavour, ".lock"))
		if err != nil || !ok {
			return false, err
		}
		defer unlock()
		return true, os.RemoveAll(e.Path)
	case e.Area == AreaKernel:
		return true, os.RemoveAll(e.Path)
	default:
		if err := os.Remove(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
		return true, nil
	}
}

// tryLock takes an exclusive flock on p without waiting; ok is false when someone holds it.
// A missing lock file counts as free.
func tryLock(p string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, true, nil
}
