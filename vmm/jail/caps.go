package jail

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Capability sets are per thread in Linux, and the Go runtime runs goroutines on many OS
// threads, so every change below is applied to all of them with syscall.AllThreadsSyscall
// (available when the binary is built with CGO_ENABLED=0, as the runner is).

// lastCap reads the highest capability number the running kernel knows.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// DropCapabilities empties the bounding, ambient, effective, permitted and inheritable
// capability sets of every thread of the process. It must run before InstallSeccomp (which
// does not allow prctl or capset) and after everything that needs privileges (mounts,
// opening /dev/kvm).
func DropCapabilities() error {
	last, err := lastCap()
	if err != nil {
		// Before pivot_root /proc is reachable; inside the jail it is not. Fall back to
		// the highest capability Linux 6.x defines.
		last = unix.CAP_LAST_CAP
	}
	for c := 0; c <= last; c++ {
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("jail: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return fmt.Errorf("jail: clear ambient capabilities: %w", err)
	}
	if err := capsetZeroAllThreads(); err != nil {
		return fmt.Errorf("jail: capset: %w", err)
	}
	return nil
}

func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno != 0 {
		if errno == syscall.ENOTSUP {
			return fmt.Errorf("%w (the binary must be built with CGO_ENABLED=0)", errno)
		}
		return errno
	}
	return nil
}
