package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Whiteout names (OCI image-spec layer.md "Whiteouts").
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Flatten applies img's layers, bottom first, onto dir, which must be empty or not exist
// yet. On error dir holds a partial tree; the caller removes it.
func Flatten(ctx context.Context, img v1.Image, dir string, lim Limits) error {
	if img == nil {
		return fmt.Errorf("rootfs: flatten: no image")
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("rootfs: layers: %w", err)
	}
	// Layers are named in errors by index and diff_id (from the config: cheap for every
	// kind of image, unlike the compressed digest of a docker-archive layer).
	var diffIDs []v1.Hash
	if cf, err := img.ConfigFile(); err == nil && len(cf.RootFS.DiffIDs) == len(layers) {
		diffIDs = cf.RootFS.DiffIDs
	}
	f, err := newFlattener(dir, lim)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer f.close()
	start := time.Now()
	for i, l := range layers {
		name := fmt.Sprint(i)
		if diffIDs != nil {
			name = fmt.Sprintf("%d (diff_id %s)", i, diffIDs[i])
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("rootfs: layer %s: %w", name, err)
		}
		ra := newReadahead(rc)
		err = f.applyLayer(ctx, name, ra)
		ra.Close()
		if err != nil {
			return err
		}
	}
	if err := f.finish(); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	slog.Debug("rootfs: flattened", "layers", len(layers), "entries", f.entries, "bytes", f.bytes, "took", time.Since(start))
	return nil
}

// FlattenReader applies uncompressed layer tars (bottom first) onto dir with the same rules
// as Flatten.
// It exists for tests and fuzzing of the entry logic without building images.
func FlattenReader(ctx context.Context, layers []io.Reader, dir string, lim Limits) error {
	f, err := newFlattener(dir, lim)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer f.close()
	for i, r := range layers {
		if err := f.applyLayer(ctx, fmt.Sprint(i), r); err != nil {
			return err
		}
	}
	if err := f.finish(); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	return nil
}

// flattener holds the state of one Flatten.
type flattener struct {
	root    *root
	lim     Limits
	entries int
	bytes   int64

	// dirTimes are directory mtimes to set once all layers are in (creating children
	// changes a directory's mtime). Keys are symlink-free root-relative paths.
	dirTimes map[string]dirTime

	// Per-layer state.
	created map[string]bool // paths this layer wrote (and their ancestors)
	pending []pendingLink   // hard links whose target had not appeared yet
}

type dirTime struct{ atime, mtime time.Time }

type pendingLink struct {
	entry  string // entry name, for errors
	parent string // resolved parent of the link
	base   string
	target string // cleaned target name
	hdr    *tar.Header
}

// newFlattener prepares dir, which must be empty or not exist yet.
func newFlattener(dir string, lim Limits) (*flattener, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return nil, err
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("flatten into %s: directory is not empty", dir)
	}
	r, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	return &flattener{root: r, lim: lim.withDefaults(), dirTimes: map[string]dirTime{}}, nil
}

func (f *flattener) close() { f.root.close() }

// applyLayer reads one uncompressed layer tar. name identifies the layer in errors.
func (f *flattener) applyLayer(ctx context.Context, name string, r io.Reader) error {
	f.created = map[string]bool{}
	f.pending = nil
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("rootfs: layer %s: %w", name, err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("rootfs: layer %s: read tar: %w", name, err)
		}
		f.entries++
		if f.entries > f.lim.MaxEntries {
			return fmt.Errorf("rootfs: layer %s: entry %q: %w: more than %d entries", name, hdr.Name, ErrLimit, f.lim.MaxEntries)
		}
		if err := f.applyEntry(hdr, tr); err != nil {
			return fmt.Errorf("rootfs: layer %s: entry %q: %w", name, hdr.Name, err)
		}
	}
	for _, p := range f.pending {
		if err := f.link(p, true); err != nil {
			return fmt.Errorf("rootfs: layer %s: entry %q: %w", name, p.entry, err)
		}
	}
	return nil
}

// markCreated records p and its ancestors as written by the current layer, which protects
// them from an opaque whiteout in the same layer.
func (f *flattener) markCreated(p string) {
	for p != "" && p != "." && !f.created[p] {
		f.created[p] = true
		p = path.Dir(p)
	}
}

func (f *flattener) applyEntry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		return nil // "./" or "/": the root keeps its own metadata
	}
	dir, base := path.Split(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return f.whiteout(dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("%w: unsupported type %q", ErrInvalidEntry, hdr.Typeflag)
	}
	parent, err := f.root.resolveDir(dir, true)
	if err != nil {
		return err
	}
	// A later entry for the same path wins over a hard link still waiting for its target.
	f.pending = slices.DeleteFunc(f.pending, func(p pendingLink) bool { return p.parent == parent && p.base == base })
	if hdr.Typeflag == tar.TypeLink {
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		if target == "" {
			return fmt.Errorf("%w: hard link to the root", ErrInvalidEntry)
		}
		p := pendingLink{entry: hdr.Name, parent: parent, base: base, target: target, hdr: hdr}
		return f.link(p, false)
	}
	pfd, err := f.root.openDir(parent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	full := path.Join(parent, base)
	if err := f.clearFor(pfd, base, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	f.markCreated(full)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return f.dir(pfd, base, full, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		return f.regular(pfd, base, hdr, r)
	case tar.TypeSymlink:
		return f.symlink(pfd, base, hdr)
	default:
		return f.node(pfd, base, hdr)
	}
}

// clearFor removes whatever is at base so a new entry can take its place; an existing
// directory stays when the new entry is a directory too (layers merge directories).
func (f *flattener) clearFor(pfd int, base string, keepDir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && keepDir {
		return nil
	}
	return removeAt(pfd, base, isDir)
}

// removeAt removes base under the directory fd pfd, recursively for a directory, never
// following symlinks.
func removeAt(pfd int, base string, isDir bool) error {
	if !isDir {
		if err := unix.Unlinkat(pfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %q: %w", base, err)
		}
		return nil
	}
	dfd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", base, err)
	}
	d := os.NewFile(uintptr(dfd), base)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return fmt.Errorf("read dir %q: %w", base, err)
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			d.Close()
			return fmt.Errorf("stat %q: %w", n, err)
		}
		if err := removeAt(dfd, n, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	if err := unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("remove %q: %w", base, err)
	}
	return nil
}

// finish sets directory mtimes, deepest first, once nothing will be created in them.
func (f *flattener) finish() error {
	paths := make([]string, 0, len(f.dirTimes))
	for p := range f.dirTimes {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range paths {
		t := f.dirTimes[p]
		parent, base := path.Split(p)
		pfd, err := f.root.openDir(strings.TrimSuffix(parent, "/"))
		if err != nil {
			continue // replaced by a later layer; nothing to stamp
		}
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := setTimes(pfd, base, t.atime, t.mtime); err != nil {
				unix.Close(pfd)
				return fmt.Errorf("dir %q: %w", p, err)
			}
		}
		unix.Close(pfd)
	}
	return nil
}
