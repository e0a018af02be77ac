package rootfs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CopyForRun makes a private writable copy of a cached base image at dst: a reflink
// (FICLONE) where the filesystem shares extents (btrfs, xfs), else a sparse copy that
// copies only the base's data extents (SEEK_DATA/SEEK_HOLE + copy_file_range). dst is
// written under a temporary name and renamed, and gets mode 0644.
func CopyForRun(base, dst string) error {
	src, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("rootfs: copy: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("rootfs: copy: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("rootfs: copy: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	method := "reflink"
	if err := unix.IoctlFileClone(int(tmp.Fd()), int(src.Fd())); err != nil {
		method = "sparse"
		if err := sparseCopy(src, tmp, st.Size()); err != nil {
			return fmt.Errorf("rootfs: copy %s: %w", base, err)
		}
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("rootfs: copy: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("rootfs: copy: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("rootfs: copy: %w", err)
	}
	ok = true
	slog.Debug("rootfs: per-run copy", "base", base, "dst", dst, "method", method)
	return nil
}

// sparseCopy copies the data extents of src into dst and sizes dst like src, leaving holes.
func sparseCopy(src, dst *os.File, size int64) error {
	sfd := int(src.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(sfd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		if err := copyRange(src, dst, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return dst.Truncate(size)
}

// copyRange copies n bytes at off from src to dst at the same offset, in the kernel when it
// can (copy_file_range), else through a buffer.
func copyRange(src, dst *os.File, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		c, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				_, err := io.Copy(io.NewOffsetWriter(dst, woff), io.NewSectionReader(src, roff, n))
				return err
			}
			return fmt.Errorf("copy_file_range: %w", err)
		}
		if c == 0 {
			return fmt.Errorf("copy_file_range: %w", io.ErrUnexpectedEOF)
		}
		n -= int64(c)
	}
	return nil
}
