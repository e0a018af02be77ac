package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// CloneFlags are the namespaces the VMM child is created in: its own mount table (for
// pivot_root), PID space (it is PID 1; killing it kills everything it started), an empty
// network namespace (no interfaces but a down loopback), and private IPC and UTS.
const CloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS

// SysProcAttr returns the process attributes for starting the VMM child: new namespaces,
// and SIGKILL when the runner dies so a VM never outlives its runner.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags: CloneFlags,
		Pdeathsig:  syscall.SIGKILL,
		Setpgid:    true,
	}
}

// Bind is a host path made visible inside the new root.
type Bind struct {
	Source   string // host path (file or directory)
	Target   string // path relative to the new root
	ReadOnly bool
}

// EnterRoot pivots the calling process into root, after bind-mounting binds into it.
// It must run in a private mount namespace (CloneFlags). Afterwards "/" is root, the old
// root is unmounted, and the working directory is "/".
func EnterRoot(root string, binds []Bind) error {
	// Nothing we mount may propagate back to the host's mount table.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("jail: make mounts private: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("jail: bind %s onto itself: %w", root, err)
	}
	for _, b := range binds {
		if err := bindInto(root, b); err != nil {
			return err
		}
	}
	old := filepath.Join(root, ".oldroot")
	if err := os.MkdirAll(old, 0o700); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("jail: pivot_root %s: %w", root, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("jail: chdir /: %w", err)
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("jail: detach old root: %w", err)
	}
	if err := os.Remove("/.oldroot"); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	return nil
}

func bindInto(root string, b Bind) error {
	st, err := os.Stat(b.Source)
	if err != nil {
		return fmt.Errorf("jail: bind %s: %w", b.Source, err)
	}
	target := filepath.Join(root, filepath.Clean("/"+b.Target))
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("jail: bind %s: %w", b.Source, err)
	}
	// The mount point must exist and be of the same kind as the source.
	if st.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o600)
		if err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("jail: mount point for %s: %w", b.Source, err)
	}
	if err := unix.Mount(b.Source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("jail: bind %s at %s: %w", b.Source, b.Target, err)
	}
	if b.ReadOnly {
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if st.Mode()&os.ModeDevice != 0 {
			flags &^= unix.MS_NODEV
		}
		if err := unix.Mount("", target, "", flags, ""); err != nil {
			return fmt.Errorf("jail: remount %s read-only: %w", b.Target, err)
		}
	}
	return nil
}
