package kernel_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/kernel/kerneltest"
)

// benchInit prints the marker as its first action and restarts the VM.
const benchInit = `#!/bin/sh
echo "@@init"
/bin/busybox reboot -f
`

// BenchmarkBootToInit measures the time from qemu's start to the first line /init prints, for
// this host's kernel flavour, under TCG (the baseline) and under /dev/kvm (skipped without it),
// and reports the KVM/TCG ratio from the same run. One iteration boots twice; on kvm-pvm a KVM
// boot takes ~30 s, so run it with -benchtime=1x..3x:
//
//	go test -run '^$' -bench BootToInit -benchtime 3x ./kernel/
func BenchmarkBootToInit(b *testing.B) {
	k := kerneltest.Kernel(b)
	initrd := b.TempDir() + "/initramfs.cpio"
	if err := (kerneltest.Initramfs{Init: benchInit, Busybox: true, Applets: []string{"sh"}}).Write(initrd); err != nil {
		b.Fatal(err)
	}
	_, err := os.Stat("/dev/kvm")
	haveKVM := err == nil
	if st, err := os.Stat(k.Path); err == nil {
		b.Logf("%s kernel %s: %d bytes", k.Flavour, k.Path, st.Size())
	}
	boot := func(accel kerneltest.Accel) time.Duration {
		res, err := kerneltest.Qemu{
			Kernel:  k.Path,
			Initrd:  initrd,
			Cmdline: kernel.Cmdline(k.Flavour),
			Accel:   accel,
			Flavour: k.Flavour,
			Marker:  "@@init",
			Timeout: 4 * time.Minute,
		}.Run(context.Background())
		if err != nil || res.ExitCode != 0 || !res.MarkerSeen {
			b.Fatalf("%s boot: err=%v exit=%d\n%s\n%s", accel, err, res.ExitCode, res.Console, res.Stderr)
		}
		return res.ToMarker
	}
	var tcg, kvm time.Duration
	for b.Loop() {
		tcg += boot(kerneltest.TCG)
		if haveKVM {
			kvm += boot(kerneltest.KVM)
		}
	}
	n := float64(b.N)
	b.ReportMetric(tcg.Seconds()/n, "tcg-s-to-init")
	if haveKVM {
		b.ReportMetric(kvm.Seconds()/n, "kvm-s-to-init")
		b.ReportMetric(kvm.Seconds()/tcg.Seconds(), "kvm/tcg")
	}
}
