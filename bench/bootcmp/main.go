// Command bootcmp boots the same kernel and initramfs with our VMM (package vmm, in this
// process) and with qemu-system-x86_64 -M microvm -enable-kvm, alternately, and reports the
// time from start to the first console line containing a marker (printed by /init), with
// the ratio ours/qemu.
//
// Timing starts just before vmm.New for ours and just before exec for qemu; both stop when
// the marker line arrives on the serial console. Runs alternate so that host noise hits
// both sides alike. Usage (see bench/qemu-side-by-side.sh):
//
//	go run ./bench/bootcmp -runs 3 -vcpus 1 -mem 128
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/kernel/kerneltest"
	"github.com/vmbench/runner/vmm"
)

const marker = "@@init"

// cpuTemplate is passed to vmm.Config.CPUTemplate.
var cpuTemplate string

// initScript prints the marker first thing, then restarts the guest (reboot=t / reboot=k
// end both VMMs).
const initScript = `#!/bin/sh
echo "` + marker + ` hello"
/bin/busybox reboot -f
`

func main() {
	runs := flag.Int("runs", 3, "boots per VMM")
	vcpus := flag.Int("vcpus", 1, "vCPUs")
	mem := flag.Int("mem", 128, "guest memory in MiB")
	kpath := flag.String("kernel", "", "kernel (default: the runner's, from kernel.Locate)")
	timeout := flag.Duration("timeout", 10*time.Minute, "deadline per boot")
	verbose := flag.Bool("v", false, "copy guest consoles to stderr")
	loud := flag.Bool("loud", false, "drop \"quiet\" from the kernel command line (full boot log; slower)")
	only := flag.String("only", "", "boot only with \"ours\" or \"qemu\" (no ratio)")
	flag.StringVar(&cpuTemplate, "cpu-template", "", "our VMM's CPU template (host, baseline; default: automatic)")
	flag.Parse()
	if err := run(*runs, *vcpus, *mem, *kpath, *timeout, *verbose, *loud, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bootcmp:", err)
		os.Exit(1)
	}
}

func run(runs, vcpus, mem int, kpath string, timeout time.Duration, verbose, loud bool, only string) error {
	k, err := kernel.Locate(kpath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bootcmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := (kerneltest.Initramfs{Init: initScript, Busybox: true, Applets: []string{"sh"}}).Write(initrd); err != nil {
		return err
	}
	cmdline := kernel.Cmdline(k.Flavour)
	if loud {
		cmdline = slices.DeleteFunc(cmdline, func(w string) bool { return w == "quiet" })
	}
	fmt.Printf("kernel %s (%s), %d vCPU(s), %d MiB, cmdline %q\n", k.Path, k.Flavour, vcpus, mem, kernel.Join(cmdline))
	var ours, qemu []time.Duration
	for i := range runs {
		if only != "qemu" {
			o, err := bootOurs(k.Path, initrd, cmdline, vcpus, mem, timeout, verbose)
			if err != nil {
				return fmt.Errorf("ours, run %d: %w", i+1, err)
			}
			ours = append(ours, o)
			fmt.Printf("run %d: ours %8.2f s\n", i+1, o.Seconds())
		}
		if only != "ours" {
			q, err := bootQemu(k, initrd, cmdline, vcpus, mem, timeout, verbose)
			if err != nil {
				return fmt.Errorf("qemu, run %d: %w", i+1, err)
			}
			qemu = append(qemu, q)
			fmt.Printf("run %d: qemu %8.2f s\n", i+1, q.Seconds())
		}
	}
	if only != "" {
		return nil
	}
	mo, mq := median(ours), median(qemu)
	fmt.Printf("median time to %q: ours %.2f s, qemu %.2f s, ratio ours/qemu %.3f\n", marker, mo.Seconds(), mq.Seconds(), float64(mo)/float64(mq))
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// markerWriter records when a line containing marker first passes through.
type markerWriter struct {
	mu    sync.Mutex
	start time.Time
	buf   strings.Builder
	at    time.Duration
	echo  io.Writer
}

func (w *markerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.at == 0 && strings.Contains(w.buf.String(), marker) {
		w.at = time.Since(w.start)
	}
	if w.echo != nil {
		w.echo.Write(p)
	}
	return len(p), nil
}

func bootOurs(kpath, initrd string, cmdline []string, vcpus, mem int, timeout time.Duration, verbose bool) (time.Duration, error) {
	w := &markerWriter{}
	if verbose {
		w.echo = os.Stderr
	}
	w.start = time.Now()
	m, err := vmm.New(vmm.Config{
		Kernel: kpath, Initrd: initrd, Cmdline: kernel.Join(cmdline), VCPUs: vcpus, MemoryMiB: mem,
		CPUTemplate: cpuTemplate, Console: w, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	exit, err := m.Run(ctx)
	if err != nil {
		return 0, err
	}
	m.Close() // flush the console
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.at == 0 {
		return 0, fmt.Errorf("no %q line (exit %v)", marker, exit.Reason)
	}
	if !exit.Normal() {
		return 0, fmt.Errorf("guest did not end cleanly: %v", exit.Reason)
	}
	return w.at, nil
}

func bootQemu(k kernel.Kernel, initrd string, cmdline []string, vcpus, mem int, timeout time.Duration, verbose bool) (time.Duration, error) {
	q := kerneltest.Qemu{
		Kernel: k.Path, Initrd: initrd, Cmdline: cmdline, Accel: kerneltest.KVM, Flavour: k.Flavour,
		CPUs: vcpus, MemoryMiB: mem, Marker: marker, Timeout: timeout,
	}
	if verbose {
		q.Console = os.Stderr
	}
	res, err := q.Run(context.Background())
	if err != nil {
		return 0, err
	}
	if !res.MarkerSeen {
		return 0, errors.New("no marker line: " + res.Stderr)
	}
	if res.ExitCode != 0 {
		return 0, fmt.Errorf("qemu exit status %d: %s", res.ExitCode, res.Stderr)
	}
	return res.ToMarker, nil
}
