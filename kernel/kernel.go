package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmbench/runner/cache"
)

// Flavour selects the kernel build and its command-line options.
type Flavour string

const (
	// Stock is the unpatched kernel for hardware KVM.
	Stock Flavour = "stock"
	// KVMPVM is the kernel for hosts whose /dev/kvm is kvm_pvm (see the package comment).
	KVMPVM Flavour = "kvm-pvm"
)

// ParseFlavour accepts "stock" or "kvm-pvm".
func ParseFlavour(s string) (Flavour, error) {
	switch Flavour(s) {
	case Stock, KVMPVM:
		return Flavour(s), nil
	}
	return "", fmt.Errorf("kernel flavour %q: want %q or %q", s, Stock, KVMPVM)
}

// pvmModuleDir exists when the host's KVM is provided by the kvm_pvm module.
var pvmModuleDir = "/sys/module/kvm_pvm"

// DetectFlavour returns $RUNNER_KERNEL_FLAVOUR when set and valid, else KVMPVM when the
// host's /dev/kvm is kvm_pvm, else Stock.
func DetectFlavour() Flavour {
	if f, err := ParseFlavour(os.Getenv("RUNNER_KERNEL_FLAVOUR")); err == nil {
		return f
	}
	if _, err := os.Stat(pvmModuleDir); err == nil {
		return KVMPVM
	}
	return Stock
}

// IsKVMPVM reports whether the host's /dev/kvm is provided by kvm_pvm (regardless of any
// flavour override).
func IsKVMPVM() bool {
	_, err := os.Stat(pvmModuleDir)
	return err == nil
}

// CacheDir is the root of the runner's caches (cache.Dir); kernel/build.sh applies the same
// rule.
func CacheDir() string { return cache.Dir() }

// CachedPath is where kernel/build.sh leaves the newest vmlinux of a flavour (a symlink
// into the content-keyed cache).
func CachedPath(f Flavour) string {
	return filepath.Join(CacheDir(), "kernel", string(f), "vmlinux")
}

// ErrNotFound means no kernel was given and none is in the cache.
var ErrNotFound = errors.New("no guest kernel found")

// Kernel is a located guest kernel image.
type Kernel struct {
	Path    string  // vmlinux (ELF) or bzImage
	Flavour Flavour // which command-line options it needs
}

// Locate finds the kernel to boot: explicit (the --kernel flag) when non-empty, then
// $RUNNER_KERNEL, then the build cache for the detected flavour. The flavour of an explicit
// kernel is the detected one: a stock kernel cannot boot on a kvm_pvm host anyway.
func Locate(explicit string) (Kernel, error) {
	f := DetectFlavour()
	for _, c := range []struct{ path, from string }{
		{explicit, "--kernel"},
		{os.Getenv("RUNNER_KERNEL"), "$RUNNER_KERNEL"},
	} {
		if c.path == "" {
			continue
		}
		if err := checkFile(c.path); err != nil {
			return Kernel{}, fmt.Errorf("kernel from %s: %w", c.from, err)
		}
		return Kernel{Path: c.path, Flavour: f}, nil
	}
	p := CachedPath(f)
	if err := checkFile(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Kernel{}, fmt.Errorf("%w for flavour %s at %s: build it with `make kernel` (or pass --kernel)", ErrNotFound, f, p)
		}
		return Kernel{}, fmt.Errorf("kernel %s: %w", p, err)
	}
	return Kernel{Path: p, Flavour: f}, nil
}

func checkFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", p)
	}
	if st.Size() == 0 {
		return fmt.Errorf("%s: empty file", p)
	}
	return nil
}
