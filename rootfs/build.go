package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vmbench/runner/cache"
	"github.com/vmbench/runner/oci"
)

// BuildOptions control Build.
type BuildOptions struct {
	Format   Format // default ext4
	DiskMiB  int    // ext4 image size; 0 = content + headroom (ignored for squashfs)
	InitPath string // host path of the bencher-init binary to install at InitPath (mode 0755); "" = none
	CacheDir string // "" = DefaultCacheDir()
	Limits   Limits
}

// DefaultCacheDir is where built images are kept: the "rootfs" area of the runner's cache
// (cache.Dir).
func DefaultCacheDir() string { return filepath.Join(cache.Dir(), cache.AreaRootfs) }

// cacheVersion changes whenever the image layout Build produces changes.
const cacheVersion = "rootfs-v1"

// Build returns the path of a cached, read-only base image for (image digest, sha256 of the
// init binary, format, size), building it on a miss: flatten the layers, add the init and
// its directories, mkfs. Concurrent Builds of the same key (threads or processes) wait on a
// file lock and build once; everything is written to temporary names and renamed into
// place, so a failed or interrupted Build leaves nothing behind. Needs root (ownership,
// device nodes). Never write to the returned file: use CopyForRun.
func Build(ctx context.Context, img *oci.Image, opts BuildOptions) (string, error) {
	format, err := ParseFormat(string(opts.Format))
	if err != nil {
		return "", err
	}
	if img == nil || img.Image == nil {
		return "", fmt.Errorf("rootfs: build: no image")
	}
	digest := img.Digest
	if digest.Hex == "" {
		if digest, err = img.Image.Digest(); err != nil {
			return "", fmt.Errorf("rootfs: build %s: digest: %w", img.Ref, err)
		}
	}
	initSum := "none"
	if opts.InitPath != "" {
		if initSum, err = fileSHA256(opts.InitPath); err != nil {
			return "", fmt.Errorf("rootfs: init binary: %w", err)
		}
	}
	disk := opts.DiskMiB
	if format == FormatSquashfs || disk < 0 {
		disk = 0
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\n%s\n%s\n%s\n%d\n", cacheVersion, digest, initSum, format, disk))
	key := hex.EncodeToString(sum[:])
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	final := filepath.Join(cacheDir, fmt.Sprintf("%s-%s.%s", digest.Hex[:min(12, len(digest.Hex))], key[:16], format))
	if isFile(final) {
		slog.Debug("rootfs: cache hit", "image", img.Ref, "path", final)
		cache.Touch(final) // last use, for cache pruning
		return final, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("rootfs: cache %s: %w", cacheDir, err)
	}
	l, err := cache.LockFile(ctx, final+".lock")
	if err != nil {
		return "", fmt.Errorf("rootfs: cache %s: %w", cacheDir, err)
	}
	defer l.Unlock()
	if isFile(final) { // built by whoever held the lock before us
		return final, nil
	}
	if err := build(ctx, img, format, disk, opts, key, final); err != nil {
		return "", err
	}
	return final, nil
}

func build(ctx context.Context, img *oci.Image, format Format, disk int, opts BuildOptions, key, final string) error {
	sweepDead(filepath.Dir(final), buildPrefix)
	sweepDead(shmDir, unpackPrefix)
	work, err := mkdirTempOwned(filepath.Dir(final), buildPrefix)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer os.RemoveAll(work)
	start := time.Now()
	tree, cleanup, err := unpack(ctx, img, opts, work)
	if err != nil {
		return err
	}
	defer cleanup()
	flattened := time.Now()
	out := filepath.Join(work, "image")
	switch format {
	case FormatSquashfs:
		err = mkfsSquashfs(ctx, tree, out)
	default:
		var u treeUsage
		if u, err = measure(tree); err != nil {
			return fmt.Errorf("rootfs: measure: %w", err)
		}
		size, inodes, serr := ext4Size(u, disk)
		if serr != nil {
			return serr
		}
		err = mkfsExt4(ctx, tree, out, size, inodes, uuidFromKey(key))
	}
	if err != nil {
		return fmt.Errorf("rootfs: %s: %w", format, err)
	}
	if err := os.Chmod(out, 0o444); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.Rename(out, final); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	slog.Info("rootfs: built", "image", img.Ref, "format", format, "path", final,
		"flatten", flattened.Sub(start).Round(time.Millisecond), "mkfs", time.Since(flattened).Round(time.Millisecond))
	return nil
}

// unpack flattens the image and adds the init, in memory when it fits (chooseUnpackPlace),
// falling back to disk (under work) when memory turns out too small. cleanup removes the tree.
func unpack(ctx context.Context, img *oci.Image, opts BuildOptions, work string) (tree string, cleanup func(), err error) {
	place := chooseUnpackPlace(img, work)
	for {
		parent, err := mkdirTempOwned(place.parent, unpackPrefix)
		if err != nil {
			return "", nil, fmt.Errorf("rootfs: %w", err)
		}
		cleanup = func() { os.RemoveAll(parent) }
		tree = filepath.Join(parent, "tree")
		lim := opts.Limits
		if place.maxBytes > 0 {
			lim.MaxBytes = min(lim.withDefaults().MaxBytes, place.maxBytes)
		}
		err = Flatten(ctx, img.Image, tree, lim)
		if err == nil {
			err = prepare(tree, opts.InitPath)
			if err != nil {
				err = fmt.Errorf("rootfs: %w", err)
			}
		}
		if err == nil {
			return tree, cleanup, nil
		}
		cleanup()
		if !retryOnDisk(err, place, opts.Limits.MaxBytes) {
			return "", nil, err
		}
		slog.Info("rootfs: image does not fit in memory; unpacking on disk", "image", img.Ref, "err", err)
		place = unpackPlace{parent: work}
	}
}

// uuidFromKey formats the first 16 bytes of the key as a version-4 style UUID.
func uuidFromKey(key string) string {
	b, _ := hex.DecodeString(key[:32])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
