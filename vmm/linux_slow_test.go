//go:build slow

package vmm_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/kernel/kerneltest"
	"github.com/vmbench/runner/vmm"
)

// linuxInit is the initramfs /init for the boot tests. On kvm_pvm every fork+exec costs
// about a second of emulated kernel time, so it uses shell builtins where it can.
const linuxInit = `#!/bin/sh
echo "@@init hello from init"
/bin/busybox mount -t proc proc /proc
n=0
while read -r k rest; do [ "$k" = processor ] && n=$((n+1)); done < /proc/cpuinfo
echo "@@cpus $n"
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox devmem 0xc0000000 8 123
echo "@@done"
/bin/busybox reboot -f
`

// bootLinux boots the project's kernel with the test initramfs through our VMM.
func bootLinux(t *testing.T, vcpus int) (vmm.Exit, string, *vmm.Machine) {
	t.Helper()
	requireKVM(t)
	k := kerneltest.Kernel(t)
	initrd := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := (kerneltest.Initramfs{Init: linuxInit, Busybox: true, Applets: []string{"sh"}}).Write(initrd); err != nil {
		t.Fatal(err)
	}
	out := &console{}
	m, err := vmm.New(vmm.Config{
		Kernel:    k.Path,
		Initrd:    initrd,
		Cmdline:   kernel.Join(kernel.Cmdline(k.Flavour)),
		VCPUs:     vcpus,
		MemoryMiB: 128,
		Console:   out,
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // ~30 s idle; far more on a loaded host
	defer cancel()
	exit, err := m.Run(ctx)
	m.Close() // flush the console
	if err != nil {
		t.Fatalf("run: %v\nconsole:\n%s", err, out.String())
	}
	t.Logf("%s kernel, %d vCPUs: run ended by %v on vCPU %d after %v; boot timer %v; %d I/O exits; %d console bytes dropped",
		k.Flavour, vcpus, exit.Reason, exit.VCPU, exit.Duration.Round(time.Millisecond), must(m.BootTime()).Round(time.Millisecond),
		exit.IOExits, exit.ConsoleDropped)
	return exit, out.String(), m
}

func lineWith(console, prefix string) (string, bool) {
	for _, l := range strings.Split(console, "\n") {
		if strings.HasPrefix(strings.TrimRight(l, "\r"), prefix) {
			return strings.TrimRight(l, "\r"), true
		}
	}
	return "", false
}

// TestLinuxBoot: the guest prints its boot log on our serial console (errors only, with
// "quiet"), reaches the initramfs /init, which prints a line, stamps the boot timer and
// restarts; the restart (triple fault with reboot=t, i8042 with reboot=k) ends the run
// cleanly.
func TestLinuxBoot(t *testing.T) {
	exit, out, m := bootLinux(t, 1)
	if !exit.Normal() {
		t.Fatalf("exit %+v, want a reset or shutdown\n%s", exit, out)
	}
	if _, ok := lineWith(out, "@@init hello from init"); !ok {
		t.Fatalf("no line from /init:\n%s", out)
	}
	if l, _ := lineWith(out, "@@cpus "); l != "@@cpus 1" {
		t.Errorf("cpus line %q", l)
	}
	if _, ok := lineWith(out, "@@done"); !ok {
		t.Errorf("/init did not finish:\n%s", out)
	}
	if bt, ok := m.BootTime(); !ok || bt <= 0 || bt > exit.Duration {
		t.Errorf("boot timer: %v %v", bt, ok)
	}
}

// TestLinuxBootFourVCPUs: with 4 vCPUs the guest brings up 4 processors (MP table, APs
// started by the in-kernel LAPIC) and sees them in /proc/cpuinfo.
func TestLinuxBootFourVCPUs(t *testing.T) {
	exit, out, _ := bootLinux(t, 4)
	if !exit.Normal() {
		t.Fatalf("exit %+v\n%s", exit, out)
	}
	if l, _ := lineWith(out, "@@cpus "); l != fmt.Sprintf("@@cpus %d", 4) {
		t.Fatalf("cpus line %q\n%s", l, out)
	}
}
