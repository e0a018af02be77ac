package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one removable unit of the cache: a blob, a root filesystem image, a kernel
// build or a leftover kernel source tree.
type Entry struct {
	Area     string    `json:"area"`
	Path     string    `json:"path"`
	Bytes    int64     `json:"bytes"` // disk space it takes (allocated blocks; images are sparse)
	LastUsed time.Time `json:"last_used"`
	// Current marks the kernel build a flavour's vmlinux link points at: the one runs use.
	Current bool `json:"current,omitempty"`
	// Tree marks a kernel source tree left by a failed or interrupted build.
	Tree bool `json:"tree,omitempty"`
}

// Scan lists the entries of every area under root. A missing area is empty.
func Scan(root string) ([]Entry, error) {
	var out []Entry
	for _, scan := range []func(string) ([]Entry, error){scanOCI, scanRootfs, scanKernel} {
		es, err := scan(root)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

// scanOCI lists the blobs (and temporary files of interrupted downloads) of the blob store.
func scanOCI(root string) ([]Entry, error) {
	dir := filepath.Join(root, AreaOCI, "blobs", "sha256")
	return scanFiles(dir, AreaOCI, func(string) bool { return true })
}

// scanRootfs lists the built images (build directories in progress are the builder's).
func scanRootfs(root string) ([]Entry, error) {
	dir := filepath.Join(root, AreaRootfs)
	return scanFiles(dir, AreaRootfs, func(name string) bool {
		return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".ext4") || strings.HasSuffix(name, ".squashfs"))
	})
}

func scanFiles(dir, area string, want func(string) bool) ([]Entry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range ents {
		if !e.Type().IsRegular() || !want(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			continue // removed meanwhile
		}
		out = append(out, Entry{Area: area, Path: p, Bytes: st.Blocks * 512,
			LastUsed: time.Unix(st.Mtim.Unix())})
	}
	return out, nil
}

// scanKernel lists kernel builds (kernel/FLAVOUR/KEY; last used = its vmlinux's mtime, i.e.
// when it was built: runs do not refresh it, and the build a flavour uses now is marked
// Current, which Prune never removes) and leftover source trees (kernel/build/*).
func scanKernel(root string) ([]Entry, error) {
	kdir := filepath.Join(root, AreaKernel)
	flavours, err := os.ReadDir(kdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, fl := range flavours {
		if !fl.IsDir() {
			continue
		}
		fdir := filepath.Join(kdir, fl.Name())
		builds, err := os.ReadDir(fdir)
		if err != nil {
			return nil, err
		}
		isTree := fl.Name() == "build"
		current, _ := filepath.EvalSymlinks(filepath.Join(fdir, "vmlinux"))
		for _, b := range builds {
			if !b.IsDir() || strings.HasPrefix(b.Name(), ".") {
				continue
			}
			p := filepath.Join(fdir, b.Name())
			e := Entry{Area: AreaKernel, Path: p, Tree: isTree}
			e.Bytes, e.LastUsed = dirUsage(p)
			if !isTree {
				if st, err := os.Stat(filepath.Join(p, "vmlinux")); err == nil {
					e.LastUsed = st.ModTime()
				}
				e.Current = current != "" && filepath.Dir(current) == p
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// dirUsage is the allocated size of a tree and its newest modification time.
func dirUsage(dir string) (int64, time.Time) {
	var n int64
	var newest time.Time
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil {
			n += st.Blocks * 512
			if t := time.Unix(st.Mtim.Unix()); t.After(newest) {
				newest = t
			}
		}
		return nil
	})
	return n, newest
}
