package sandbox

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// device is a node of the sandbox's /dev (the set a container gets).
type device struct {
	name         string
	major, minor uint32
	mode         uint32
}

var devices = []device{
	{"null", 1, 3, 0o666}, {"zero", 1, 5, 0o666}, {"full", 1, 7, 0o666},
	{"random", 1, 8, 0o666}, {"urandom", 1, 9, 0o666}, {"tty", 5, 0, 0o666},
}

// rootLayout names the directories of one sandbox under its temporary directory.
type rootLayout struct {
	root  string // the mount point that becomes /
	lower string // squashfs: the read-only image
	rw    string // squashfs: tmpfs with upper/ and work/
}

func newRootLayout(tmp string) rootLayout {
	return rootLayout{root: filepath.Join(tmp, "root"), lower: filepath.Join(tmp, "lower"), rw: filepath.Join(tmp, "rw")}
}

// enterRoot gives the calling thread a private mount namespace whose root is the image on
// loopDev, with a minimal /dev. Everything it mounts exists only in that namespace.
//
// Precondition: runtime.LockOSThread is in effect, and the thread is never unlocked (its
// namespace and root are not the process's).
func enterRoot(l rootLayout, loopDev string, format Format) error {
	// CLONE_NEWNS also unshares the thread's fs_struct (root, cwd) from the other threads.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("sandbox: unshare mount namespace: %w", err)
	}
	// Nothing mounted here propagates back to the host, nor the other way.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("sandbox: make mounts private: %w", err)
	}
	if err := mountImage(l, loopDev, format); err != nil {
		return err
	}
	if err := populateDev(filepath.Join(l.root, "dev")); err != nil {
		return err
	}
	return pivot(l.root)
}

// mountImage mounts the image at l.root: read-write for ext4; for squashfs, read-only at
// l.lower with a tmpfs overlay on top, as the VM's init does it.
func mountImage(l rootLayout, loopDev string, format Format) error {
	const flags = unix.MS_NOSUID | unix.MS_NODEV
	for _, d := range []string{l.root, l.lower, l.rw} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	if format == FormatExt4 {
		if err := unix.Mount(loopDev, l.root, "ext4", flags, ""); err != nil {
			return fmt.Errorf("sandbox: mount %s (ext4): %w", loopDev, err)
		}
		return nil
	}
	if err := unix.Mount(loopDev, l.lower, "squashfs", flags|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("sandbox: mount %s (squashfs): %w", loopDev, err)
	}
	if err := unix.Mount("tmpfs", l.rw, "tmpfs", flags, "mode=0755"); err != nil {
		return fmt.Errorf("sandbox: mount overlay tmpfs: %w", err)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(l.rw, d), 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", l.lower, l.rw, l.rw)
	if err := unix.Mount("overlay", l.root, "overlay", flags, data); err != nil {
		return fmt.Errorf("sandbox: mount overlay: %w", err)
	}
	return nil
}

// populateDev mounts a tmpfs on dev and creates the container device set in it. Only these
// nodes exist: a tmpfs without nodev but filled by us, not the host's devtmpfs.
func populateDev(dev string) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return fmt.Errorf("sandbox: /dev: %w", err)
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=65536k"); err != nil {
		return fmt.Errorf("sandbox: mount /dev: %w", err)
	}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range devices {
		p := filepath.Join(dev, d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|d.mode, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("sandbox: mknod %s: %w", p, err)
		}
	}
	if err := os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx")); err != nil {
		return fmt.Errorf("sandbox: /dev/ptmx: %w", err)
	}
	return nil
}

// pivot makes dir the thread's root and detaches the old one.
func pivot(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("sandbox: chdir %s: %w", dir, err)
	}
	// pivot_root(".", "."): the old root ends up stacked on the new one, then is detached.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("sandbox: pivot_root %s: %w", dir, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("sandbox: detach the host root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("sandbox: chdir /: %w", err)
	}
	return nil
}
