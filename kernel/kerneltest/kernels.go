package kerneltest

import (
	"errors"
	"os"
	"testing"

	"github.com/vmbench/runner/kernel"
)

// Kernel returns the kernel the runner would boot on this host (kernel.Locate: $RUNNER_KERNEL,
// else the build cache for the detected flavour).
//
// A missing kernel FAILS the test instead of skipping it: kernel/build.sh can always build it
// on a supported host (`make test` runs `make kernel` first), so its absence is a broken setup,
// not a missing capability, and a skip would let every boot test pass silently.
func Kernel(t testing.TB) kernel.Kernel {
	t.Helper()
	k, err := kernel.Locate("")
	if err != nil {
		t.Fatalf("guest kernel: %v (run `make kernel`, i.e. kernel/build.sh)", err)
	}
	return k
}

// FlavourKernel returns the cached vmlinux of flavour f. For the host's own flavour a missing
// kernel fails the test (see Kernel). The other flavour is only built by `make kernel-all`
// (CI's slow tier); when it is absent the test is skipped with that instruction.
func FlavourKernel(t testing.TB, f kernel.Flavour) string {
	t.Helper()
	p := kernel.CachedPath(f)
	st, err := os.Stat(p)
	if err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		return p
	}
	if err == nil {
		err = errors.New("not a non-empty regular file")
	}
	if f == kernel.DetectFlavour() {
		t.Fatalf("guest kernel %s (flavour %s): %v (run `make kernel`, i.e. kernel/build.sh)", p, f, err)
	}
	t.Skipf("guest kernel %s (flavour %s, not this host's) is not built: run `make kernel-all` to test it", p, f)
	return ""
}
