package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// notExist reports errors meaning "no such path" during resolution.
func notExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// whiteout applies .wh.NAME (remove NAME from lower layers) or .wh..wh..opq (hide the lower
// contents of the directory). Whiteouts never remove what the same layer wrote.
func (f *flattener) whiteout(dir, base string) error {
	var name string
	if base != whiteoutOpaque {
		name = strings.TrimPrefix(base, whiteoutPrefix)
		switch name {
		case "..":
			return fmt.Errorf("%w: whiteout of %q", ErrUnsafePath, name)
		case "", ".":
			return fmt.Errorf("%w: whiteout of %q", ErrInvalidEntry, name)
		}
	}
	parent, err := f.root.resolveDir(dir, false)
	if notExist(err) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		return f.opaque(parent)
	}
	full := path.Join(parent, name)
	if f.created[full] {
		return nil
	}
	pfd, err := f.root.openDir(parent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat %q: %w", full, err)
	}
	return removeAt(pfd, name, st.Mode&unix.S_IFMT == unix.S_IFDIR)
}

// opaque removes everything under dir (symlink-free) that the current layer did not write.
func (f *flattener) opaque(dir string) error {
	dfd, err := f.root.openBeneath(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dfd), dir)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read dir %q: %w", dir, err)
	}
	for _, n := range names {
		full := path.Join(dir, n)
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %q: %w", full, err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case f.created[full] && isDir:
			if err := f.opaque(full); err != nil {
				return err
			}
		case f.created[full]:
		default:
			if err := removeAt(dfd, n, isDir); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *flattener) dir(pfd int, base, full string, hdr *tar.Header) error {
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkdir: %w", err)
	}
	if err := setOwnerModeXattrs(pfd, base, hdr); err != nil {
		return err
	}
	f.dirTimes[full] = dirTime{atime: accessTime(hdr), mtime: hdr.ModTime}
	return nil
}

func (f *flattener) regular(pfd int, base string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("%w: negative size", ErrInvalidEntry)
	}
	if hdr.Size > f.lim.MaxBytes-f.bytes {
		return fmt.Errorf("%w: more than %d bytes of files", ErrLimit, f.lim.MaxBytes)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	file := os.NewFile(uintptr(fd), base)
	defer file.Close()
	n, err := io.Copy(file, io.LimitReader(r, hdr.Size))
	f.bytes += n
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n != hdr.Size {
		return fmt.Errorf("write: %w after %d of %d bytes", io.ErrUnexpectedEOF, n, hdr.Size)
	}
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// After chown, which clears setuid/setgid.
	if err := unix.Fchmod(fd, mode(hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := setXattrs(pfd, base, hdr); err != nil {
		return err
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return setTimes(pfd, base, accessTime(hdr), hdr.ModTime)
}

func (f *flattener) symlink(pfd int, base string, hdr *tar.Header) error {
	if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
		return fmt.Errorf("%w: symlink target %q", ErrInvalidEntry, hdr.Linkname)
	}
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := chown(pfd, base, hdr); err != nil {
		return err
	}
	if err := setXattrs(pfd, base, hdr); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	return setTimes(pfd, base, accessTime(hdr), hdr.ModTime)
}

// node makes a character or block device or a fifo.
func (f *flattener) node(pfd int, base string, hdr *tar.Header) error {
	var typ uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		typ = unix.S_IFCHR
	case tar.TypeBlock:
		typ = unix.S_IFBLK
	default:
		typ = unix.S_IFIFO
	}
	if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
		return fmt.Errorf("%w: device %d:%d", ErrInvalidEntry, hdr.Devmajor, hdr.Devminor)
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, typ|0o600, int(dev)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	if err := setOwnerModeXattrs(pfd, base, hdr); err != nil {
		return err
	}
	return setTimes(pfd, base, accessTime(hdr), hdr.ModTime)
}

// link makes the hard link p. A target not there yet is queued until the end of the layer
// (final=false); at the end (final=true) it is an error.
func (f *flattener) link(p pendingLink, final bool) error {
	tdir, tbase := path.Split(p.target)
	tparent, err := f.root.resolveDir(tdir, false)
	missing := notExist(err)
	if err != nil && !missing {
		return fmt.Errorf("hard link target %q: %w", p.target, err)
	}
	var tfd int = -1
	if !missing {
		if tfd, err = f.root.openDir(tparent); err != nil {
			return fmt.Errorf("hard link target %q: %w", p.target, err)
		}
		defer unix.Close(tfd)
		var st unix.Stat_t
		err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			missing = true
		case err != nil:
			return fmt.Errorf("hard link target %q: %w", p.target, err)
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			return fmt.Errorf("%w: hard link to directory %q", ErrInvalidEntry, p.target)
		}
	}
	if missing {
		if final {
			return fmt.Errorf("%w: hard link target %q is not in the image", ErrInvalidEntry, p.target)
		}
		f.pending = append(f.pending, p)
		return nil
	}
	if tparent == p.parent && tbase == p.base {
		return nil // a link to itself: already there
	}
	pfd, err := f.root.openDir(p.parent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := f.clearFor(pfd, p.base, false); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, pfd, p.base, 0); err != nil {
		return fmt.Errorf("link to %q: %w", p.target, err)
	}
	f.markCreated(path.Join(p.parent, p.base))
	return nil
}

// mode is the permission part of a tar mode, including setuid, setgid and sticky.
func mode(hdr *tar.Header) uint32 { return uint32(hdr.Mode) & 0o7777 }

// setOwnerModeXattrs gives a directory or special file the entry's owner, mode and
// extended attributes, in that order (chown clears setuid bits, so the mode comes after).
func setOwnerModeXattrs(pfd int, base string, hdr *tar.Header) error {
	if err := chown(pfd, base, hdr); err != nil {
		return err
	}
	if err := unix.Fchmodat(pfd, base, mode(hdr), 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return setXattrs(pfd, base, hdr)
}

func chown(pfd int, base string, hdr *tar.Header) error {
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > math.MaxInt32 || hdr.Gid > math.MaxInt32 {
		return fmt.Errorf("%w: owner %d:%d", ErrInvalidEntry, hdr.Uid, hdr.Gid)
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

func accessTime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func setTimes(pfd int, base string, atime, mtime time.Time) error {
	ts := []unix.Timespec{timespec(atime), timespec(mtime)}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// paxXattr is the PAX record prefix for extended attributes (GNU tar, Docker, BSD tar).
const paxXattr = "SCHILY.xattr."

// setXattrs copies the entry's extended attributes. A filesystem without support for a
// namespace logs a warning instead of failing the image.
func setXattrs(pfd int, base string, hdr *tar.Header) error {
	var keys []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattr) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	// The fd's magic link names the directory; the final component is not followed (l*).
	p := fmt.Sprintf("/proc/self/fd/%d/%s", pfd, base)
	for _, k := range keys {
		name := strings.TrimPrefix(k, paxXattr)
		err := unix.Lsetxattr(p, name, []byte(hdr.PAXRecords[k]), 0)
		if errors.Is(err, unix.ENOTSUP) {
			slog.Warn("rootfs: xattr not supported here; dropped", "entry", hdr.Name, "xattr", name)
			continue
		}
		if err != nil {
			return fmt.Errorf("xattr %q: %w", name, err)
		}
	}
	return nil
}
