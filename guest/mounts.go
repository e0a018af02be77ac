package guest

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// mount is one entry of the init's mount table.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode // the target is created with this mode if missing
	optional               bool        // a kernel without the filesystem (ENODEV) or target is fine
}

const (
	nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// apiMounts are the filesystems every run gets, mounted after the root is in place and /dev
// is populated. In the sandbox the host's kernel is shared, so sysfs and cgroup2 are
// read-only there and parts of /proc are masked (sandboxMasks), as Docker does.
func apiMounts(mode Mode) []mount {
	ro := uintptr(0)
	if mode == ModeSandbox {
		ro = unix.MS_RDONLY
	}
	return []mount{
		{source: "proc", target: "/proc", fstype: "proc", flags: nosuidNodevNoexec, mode: 0o555},
		{source: "sysfs", target: "/sys", fstype: "sysfs", flags: nosuidNodevNoexec | ro, mode: 0o555},
		{source: "devpts", target: "/dev/pts", fstype: "devpts", flags: unix.MS_NOSUID | unix.MS_NOEXEC,
			data: "newinstance,ptmxmode=0666,mode=0620", mode: 0o755, optional: true},
		{source: "shm", target: "/dev/shm", fstype: "tmpfs", flags: nosuidNodevNoexec, data: "mode=1777", mode: 0o1777},
		{source: "tmpfs", target: "/run", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=0755", mode: 0o755},
		{source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=1777", mode: 0o1777},
		{source: "cgroup2", target: "/sys/fs/cgroup", fstype: "cgroup2", flags: nosuidNodevNoexec | ro, optional: true},
	}
}

// doMount mounts m, creating its target if needed.
func doMount(m mount) error {
	if m.mode != 0 {
		if err := os.Mkdir(m.target, m.mode); err != nil && !errors.Is(err, os.ErrExist) && !m.optional {
			return fmt.Errorf("mount: mkdir %s: %w", m.target, err)
		}
	}
	err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
	if err != nil && m.optional && (err == unix.ENODEV || err == unix.ENOENT) {
		slog.Debug("optional mount unavailable", "target", m.target, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// sandboxReadOnly are /proc paths bind-mounted read-only in the sandbox, and sandboxMasks
// paths hidden under /dev/null: the kernel knobs and information leaks Docker's default
// spec also protects (moby oci/defaults.go).
var (
	sandboxReadOnly = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}
	sandboxMasks    = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"}
)

// protectProc applies sandboxReadOnly and sandboxMasks. Paths the kernel does not have are
// skipped.
func protectProc() error {
	for _, p := range sandboxReadOnly {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return fmt.Errorf("mount: bind %s: %w", p, err)
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_REC | nosuidNodevNoexec)
		if err := unix.Mount(p, p, "", flags, ""); err != nil {
			return fmt.Errorf("mount: remount %s read-only: %w", p, err)
		}
	}
	for _, p := range sandboxMasks {
		if err := unix.Mount(os.DevNull, p, "", unix.MS_BIND, ""); err != nil && err != unix.ENOENT {
			return fmt.Errorf("mount: mask %s: %w", p, err)
		}
	}
	return nil
}

// devLinks are the /dev symlinks a container has that devtmpfs does not create.
var devLinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
}

// setupVMRoot makes the root writable: a read-write remount for ext4 (or anything
// writable), a tmpfs overlay for squashfs. Then it makes sure /dev is a devtmpfs.
func setupVMRoot() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("root: statfs: %w", err)
	}
	if st.Type == unix.SQUASHFS_MAGIC {
		if err := overlayRoot(); err != nil {
			return err
		}
	} else if err := unix.Mount("", "/", "", unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("root: remount read-write: %w", err)
	}
	return mountDevtmpfs()
}

// overlayDir is the empty directory of the image (rootfs puts it there) that receives the
// tmpfs holding the overlay's upper and work directories.
const overlayDir = "/.bencher/rw"

// overlayRoot turns a read-only squashfs root into a writable one: a tmpfs at overlayDir
// holds upper/ and work/, an overlay of / and upper/ is mounted at overlayDir/root, and
// pivot_root moves into it. The old root stays alive as the overlay's lower layer.
func overlayRoot() error {
	if err := unix.Mount("tmpfs", overlayDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("root: mount tmpfs on %s: %w", overlayDir, err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(overlayDir+"/"+d, 0o755); err != nil {
			return fmt.Errorf("root: %w", err)
		}
	}
	data := "lowerdir=/,upperdir=" + overlayDir + "/upper,workdir=" + overlayDir + "/work"
	newRoot := overlayDir + "/root"
	if err := unix.Mount("overlay", newRoot, "overlay", 0, data); err != nil {
		return fmt.Errorf("root: mount overlay: %w", err)
	}
	return pivotInto(newRoot)
}

// pivotInto makes dir (a mount point) the root and detaches the old root.
func pivotInto(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("root: chdir %s: %w", dir, err)
	}
	// pivot_root(".", "."): the old root is stacked on top of the new one and detached.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("root: pivot_root %s: %w", dir, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("root: detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("root: chdir /: %w", err)
	}
	return nil
}

// mountDevtmpfs mounts devtmpfs on /dev unless the kernel already did (CONFIG_DEVTMPFS_MOUNT
// mounts it on the block-device root before init, but not on an overlay we pivoted into).
func mountDevtmpfs() error {
	var root, dev unix.Statfs_t
	if err := unix.Statfs("/", &root); err != nil {
		return fmt.Errorf("dev: statfs /: %w", err)
	}
	if err := unix.Statfs("/dev", &dev); err == nil && dev.Type != root.Type {
		return nil
	}
	return doMount(mount{source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: unix.MS_NOSUID, data: "mode=0755", mode: 0o755})
}

// setupSystem prepares the filesystem tree for mode. In a VM it owns everything; in the
// sandbox the host already mounted the root and populated /dev.
func setupSystem(mode Mode) error {
	if mode == ModeVM {
		if err := setupVMRoot(); err != nil {
			return err
		}
	}
	for _, m := range apiMounts(mode) {
		if err := doMount(m); err != nil {
			return err
		}
	}
	if mode == ModeSandbox {
		if err := protectProc(); err != nil {
			return err
		}
	}
	for _, l := range devLinks {
		if err := os.Symlink(l[0], l[1]); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("dev: %w", err)
		}
	}
	return nil
}
