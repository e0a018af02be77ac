package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// InitPath is where the guest init is installed inside the root filesystem.
const InitPath = "/.bencher/init"

// bencherDir holds the init; RWDir is where the init mounts a tmpfs for the overlay's upper
// layer when the root is a read-only squashfs.
const (
	bencherDir = ".bencher"
	RWDir      = "/.bencher/rw"
)

// mountPoints are directories the init mounts on; they are created only when the image
// lacks them (an image's own /tmp keeps its mode).
var mountPoints = []struct {
	name string
	mode uint32
}{
	{"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"run", 0o755}, {"tmp", 0o1777},
}

// prepare adds what the guest needs to a flattened tree: /.bencher (0755) with an empty
// rw/ and, when initBin is set, the init at InitPath (0755, root-owned); plus missing mount
// points. Whatever the image had at /.bencher is replaced, without following symlinks.
func prepare(dir, initBin string) error {
	r, err := openRoot(dir)
	if err != nil {
		return err
	}
	defer r.close()
	var st unix.Stat_t
	if err := unix.Fstatat(r.fd, bencherDir, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if err := removeAt(r.fd, bencherDir, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return fmt.Errorf("replace /%s: %w", bencherDir, err)
		}
	}
	for _, d := range []string{bencherDir, path.Join(bencherDir, "rw")} {
		if err := r.mkdirAt(splitPath(path.Dir(d)), path.Base(d)); err != nil {
			return err
		}
	}
	for _, m := range mountPoints {
		err := unix.Fstatat(r.fd, m.name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil {
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("stat /%s: %w", m.name, err)
		}
		if err := unix.Mkdirat(r.fd, m.name, 0o700); err != nil {
			return fmt.Errorf("mkdir /%s: %w", m.name, err)
		}
		if err := unix.Fchmodat(r.fd, m.name, m.mode, 0); err != nil {
			return fmt.Errorf("chmod /%s: %w", m.name, err)
		}
	}
	if initBin == "" {
		return nil
	}
	return installFile(r, initBin, bencherDir, "init", 0o755)
}

// installFile copies the host file src to dir/name inside the root, root-owned with perm.
func installFile(r *root, src, dir, name string, perm uint32) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install %s: %w", src, err)
	}
	defer in.Close()
	dfd, err := r.openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("install %s: %w", src, err)
	}
	out := os.NewFile(uintptr(fd), name)
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("install %s: %w", src, err)
	}
	if err := unix.Fchown(fd, 0, 0); err != nil {
		return fmt.Errorf("install %s: %w", src, err)
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("install %s: %w", src, err)
	}
	return out.Close()
}
