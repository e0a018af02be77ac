//go:build slow

package kernel_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/kernel/kerneltest"
)

// kvmInit is a minimal /init for boots under /dev/kvm. On kvm-pvm every fork+exec costs about
// a second of emulated kernel time, so it uses shell builtins and one busybox applet per check.
// %s is how it ends the VM: "reboot -f" (restart, what the guest init does) or "poweroff -f".
const kvmInit = `#!/bin/sh
echo "@@init"
/bin/busybox mount -t proc proc /proc
for a in "$@"; do echo "@@argv $a"; done
while read -r k rest; do [ "$k" = processor ] && echo "@@cpu"; done < /proc/cpuinfo
echo "@@done"
/bin/busybox %s
`

// TestBootKVM boots this host's kernel flavour under qemu -enable-kvm (on this machine:
// kvm-pvm, where the kernel runs in KVM's instruction emulator, 30-70 s to /init). It must
// reach /init, bring up the vCPUs, keep the default command line out of init's argv, and end
// the VM cleanly: qemu exits 0 (a KVM internal error would leave qemu paused until the
// deadline kills it). Restart is how the guest init ends a run; power-off is tested for the
// kvm-pvm flavour, whose patch 0003 turns it into a triple fault (the stock kernel has no
// power-off path without ACPI).
func TestBootKVM(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("no /dev/kvm: %v", err)
	}
	k := kerneltest.Kernel(t)
	for _, tc := range []struct {
		name string
		cpus int
		end  string
	}{
		{"restart-2cpus", 2, "reboot -f"},
		{"poweroff-1cpu", 1, "poweroff -f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.end == "poweroff -f" && k.Flavour != kernel.KVMPVM {
				t.Skipf("%s kernel: power-off needs ACPI, which our kernel does not have; the init restarts instead", k.Flavour)
			}
			initrd := t.TempDir() + "/initramfs.cpio"
			// Only the sh link: every archived file is created by the emulated kernel at boot.
			r := kerneltest.Initramfs{Init: fmt.Sprintf(kvmInit, tc.end), Busybox: true, Applets: []string{"sh"}}
			if err := r.Write(initrd); err != nil {
				t.Fatal(err)
			}
			res, err := kerneltest.Qemu{
				Kernel:  k.Path,
				Initrd:  initrd,
				Cmdline: kernel.Cmdline(k.Flavour),
				Accel:   kerneltest.KVM,
				Flavour: k.Flavour,
				CPUs:    tc.cpus,
				Marker:  "@@init",
				// ~30 s on an idle machine; generous because the kernel's emulated CPU time
				// stretches with every other process sharing the host's cores.
				Timeout: 10 * time.Minute,
			}.Run(context.Background())
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("boot: err=%v exit=%d\nconsole:\n%s\nqemu stderr:\n%s", err, res.ExitCode, res.Console, res.Stderr)
			}
			t.Logf("%s kernel under KVM, %d vCPUs: /init after %v, qemu exited 0 after %v (%s)",
				k.Flavour, tc.cpus, res.ToMarker.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond), tc.end)
			if !res.MarkerSeen || len(res.Lines("@@done")) == 0 {
				t.Fatalf("init did not run to the end:\n%s", res.Console)
			}
			if n := len(res.Lines("@@cpu")); n != tc.cpus {
				t.Errorf("/proc/cpuinfo lists %d processors, want %d\n%s", n, tc.cpus, res.Console)
			}
			for _, a := range res.Lines("@@argv ") {
				if slices.Contains(kernel.Cmdline(k.Flavour), strings.TrimSpace(a)) {
					t.Errorf("command-line word %q reached init's argv", a)
				}
			}
		})
	}
}
