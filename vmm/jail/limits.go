package jail

import (
	"fmt"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Limits are the resource limits of the VMM process.
type Limits struct {
	// NoFile bounds open descriptors: KVM (VM, vCPUs, irqfds, ioeventfds) plus up to
	// vsock's connection cap in Unix sockets.
	NoFile uint64
	// FileSize bounds the size of any file the VMM writes: the rootfs copy never grows.
	FileSize uint64
}

// DefaultLimits is enough for 32 vCPUs and 1023 vsock connections.
func DefaultLimits(rootfsSize uint64) Limits {
	return Limits{NoFile: 2048, FileSize: rootfsSize}
}

// SetRlimits applies l, and disables core dumps (guest memory must never land on disk).
func SetRlimits(l Limits) error {
	set := func(name string, res int, v uint64) error {
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("jail: setrlimit %s=%d: %w", name, v, err)
		}
		return nil
	}
	if err := set("RLIMIT_CORE", unix.RLIMIT_CORE, 0); err != nil {
		return err
	}
	if l.NoFile > 0 {
		if err := set("RLIMIT_NOFILE", unix.RLIMIT_NOFILE, l.NoFile); err != nil {
			return err
		}
	}
	if l.FileSize > 0 {
		// Writes past the limit raise SIGXFSZ; ignore it so they fail with EFBIG instead.
		signal.Ignore(syscall.SIGXFSZ)
		if err := set("RLIMIT_FSIZE", unix.RLIMIT_FSIZE, l.FileSize); err != nil {
			return err
		}
	}
	return nil
}
