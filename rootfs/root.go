package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSymlinkHops bounds symlink expansions while resolving one path (Linux's MAXSYMLINKS).
const maxSymlinkHops = 40

// root is an open directory that all writes stay beneath.
type root struct {
	dir string
	fd  int // O_PATH|O_DIRECTORY fd of dir
}

func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, err)
	}
	return &root{dir: dir, fd: fd}, nil
}

func (r *root) close() { unix.Close(r.fd) }

// openBeneath opens rel, a symlink-free path relative to the root ("" or "." is the root
// itself), with openat2 so the kernel refuses any escape: RESOLVE_BENEATH rejects ".." above
// the root and absolute paths, RESOLVE_NO_SYMLINKS any symlink on the way.
func (r *root) openBeneath(rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, &how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return -1, fmt.Errorf("%w: %q", ErrUnsafePath, rel)
		}
		return fd, err
	}
}

// openDir opens the directory rel (symlink-free) as an O_PATH fd for *at calls.
func (r *root) openDir(rel string) (int, error) {
	return r.openBeneath(rel, unix.O_PATH|unix.O_DIRECTORY)
}

// cleanName turns a tar entry name into a root-relative path: leading slashes are dropped
// (absolute names land inside the root, as with Docker), the result is cleaned lexically,
// and a path that still starts with ".." is rejected. "" means the root itself.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrInvalidEntry)
	}
	p := path.Clean("/" + name)
	// Clean("/"+name) removes every leading "..", which would silently clamp traversal;
	// check the unrooted form for that instead.
	if c := path.Clean(strings.TrimLeft(name, "/")); c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q climbs above the root", ErrUnsafePath, name)
	}
	return strings.TrimPrefix(p, "/"), nil
}

// resolveDir resolves a directory path inside the root the way the guest kernel would,
// following the image's symlinks (an absolute target restarts at the root, a relative one
// continues from the link's directory) and returns the equivalent symlink-free path. A ".."
// or symlink that would leave the root is ErrUnsafePath. Missing directories are created
// (mode 0755, root-owned) when create is set, else the error wraps fs.ErrNotExist.
func (r *root) resolveDir(p string, create bool) (string, error) {
	queue := splitPath(p)
	var cur []string
	hops := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", fmt.Errorf("%w: %q resolves above the root", ErrUnsafePath, p)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := path.Join(append(append([]string{}, cur...), c)...)
		var st unix.Stat_t
		err := unix.Fstatat(r.fd, next, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT) && create:
			if err := r.mkdirAt(cur, c); err != nil {
				return "", err
			}
			cur = append(cur, c)
		case err != nil:
			return "", fmt.Errorf("resolve %q: %w", next, os.NewSyscallError("fstatat", err))
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			cur = append(cur, c)
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			hops++
			if hops > maxSymlinkHops {
				return "", fmt.Errorf("resolve %q: %w", p, unix.ELOOP)
			}
			target, err := r.readlink(next)
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				cur = nil
			}
			queue = append(splitPath(target), queue...)
		default:
			return "", fmt.Errorf("resolve %q: %q: %w", p, next, unix.ENOTDIR)
		}
	}
	return path.Join(cur...), nil
}

func (r *root) mkdirAt(parent []string, name string) error {
	pfd, err := r.openDir(path.Join(parent...))
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkdir %q: %w", path.Join(append(parent, name)...), err)
	}
	return unix.Fchmodat(pfd, name, 0o755, 0)
}

func (r *root) readlink(rel string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(r.fd, rel, buf)
		if err != nil {
			return "", fmt.Errorf("readlink %q: %w", rel, err)
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= 1<<16 {
			return "", fmt.Errorf("readlink %q: %w", rel, unix.ENAMETOOLONG)
		}
		buf = make([]byte, 2*len(buf))
	}
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}
