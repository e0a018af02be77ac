// Command runbench measures `runner run` of the spec's basic image against the spec's
// performance targets, and against qemu-system-x86_64 -M microvm booting the same kernel
// with the same root filesystem and command line, in one run:
//
//	go run ./bench/runbench -runs 3 [-runner bin/runner]
//
// For each side it reports the time from process start to the guest init's first console
// line ("bencher-init started"), and the peak RSS of the VMM process. For ours it also
// reports the boot timer (VM start to the init's first MMIO write, Firecracker's measure),
// the whole `runner run` time (pull, rootfs, boot, command, results, shutdown), and the VMM's
// own memory: its peak RSS minus the guest RAM the guest touched. qemu cannot run the whole
// job (this host has no vhost-vsock, so its init cannot reach the runner); it is timed to
// the same console line. Runs alternate so host noise hits both sides alike.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vmbench/runner/guest"
	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/rootfs"
	"github.com/vmbench/runner/runner"
	"github.com/vmbench/runner/testimages"
)

// The spec's targets (testing-plan.md, "Performance Tests").
const (
	targetBoot        = 500 * time.Millisecond
	targetOverheadMiB = 100
)

func main() {
	runs := flag.Int("runs", 3, "runs per side")
	runnerBin := flag.String("runner", "bin/runner", "the runner binary (bencher-init next to it)")
	memMiB := flag.Int("memory", runner.DefaultMemoryMiB, "guest memory, MiB (both sides)")
	timeout := flag.Duration("timeout", 15*time.Minute, "limit per boot")
	flag.Parse()
	if err := run(*runs, *runnerBin, *memMiB, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "runbench:", err)
		os.Exit(1)
	}
}

type sample struct {
	toInit   time.Duration // process start → "bencher-init started" on the console
	total    time.Duration // process start → exit
	bootTime time.Duration // ours: the boot timer
	rssKiB   int64         // VMM process peak RSS
	overKiB  int64         // ours: RSS minus guest RAM touched
}

func run(runs int, runnerBin string, memMiB int, timeout time.Duration) error {
	k, err := kernel.Locate("")
	if err != nil {
		return err
	}
	runnerBin, err = filepath.Abs(runnerBin)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "runbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	img, err := testimages.Build("basic")
	if err != nil {
		return err
	}
	layout := filepath.Join(tmp, "images")
	if err := testimages.WriteLayout(layout, map[string]v1.Image{"basic": img}); err != nil {
		return err
	}
	ref := "oci:" + layout + ":basic"
	// The same root filesystem for qemu: what `runner rootfs` builds (init included).
	base := filepath.Join(tmp, "rootfs.ext4")
	if out, err := exec.Command(runnerBin, "rootfs", "--image", ref, "--init", filepath.Join(filepath.Dir(runnerBin), "bencher-init"), "-o", base).CombinedOutput(); err != nil {
		return fmt.Errorf("runner rootfs: %v\n%s", err, out)
	}
	cmdline := kernel.Join(runner.VMBackend{Kernel: k}.Cmdline(rootfs.FormatExt4))
	fmt.Printf("kernel %s (%s), guest %d MiB, 1 vCPU, image basic, %d runs per side\n", k.Path, k.Flavour, memMiB, runs)

	var ours, qemu []sample
	for i := 0; i < runs; i++ {
		s, err := runOurs(runnerBin, ref, memMiB, timeout)
		if err != nil {
			return fmt.Errorf("ours, run %d: %w", i+1, err)
		}
		fmt.Printf("  ours %d: init line %7.3fs  boot timer %7.3fs  total %7.3fs  VMM RSS %6.1f MiB (own %5.1f MiB)\n",
			i+1, s.toInit.Seconds(), s.bootTime.Seconds(), s.total.Seconds(), mib(s.rssKiB), mib(s.overKiB))
		ours = append(ours, s)

		disk := filepath.Join(tmp, "qemu.ext4")
		if out, err := exec.Command("cp", "--sparse=always", base, disk).CombinedOutput(); err != nil {
			return fmt.Errorf("copy rootfs: %v\n%s", err, out)
		}
		s, err = runQemu(k, disk, cmdline, memMiB, timeout)
		if err != nil {
			return fmt.Errorf("qemu, run %d: %w", i+1, err)
		}
		fmt.Printf("  qemu %d: init line %7.3fs                       exit  %7.3fs  VMM RSS %6.1f MiB\n",
			i+1, s.toInit.Seconds(), s.total.Seconds(), mib(s.rssKiB))
		qemu = append(qemu, s)
	}

	med := func(ss []sample, f func(sample) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	oInit, qInit := med(ours, func(s sample) float64 { return s.toInit.Seconds() }), med(qemu, func(s sample) float64 { return s.toInit.Seconds() })
	oRSS, qRSS := med(ours, func(s sample) float64 { return mib(s.rssKiB) }), med(qemu, func(s sample) float64 { return mib(s.rssKiB) })
	oBoot := med(ours, func(s sample) float64 { return s.bootTime.Seconds() })
	oTotal := med(ours, func(s sample) float64 { return s.total.Seconds() })
	oOver := med(ours, func(s sample) float64 { return mib(s.overKiB) })

	fmt.Printf("\nmedians                               ours        qemu   ours/qemu   spec target\n")
	fmt.Printf("start → init's first line        %8.3fs  %8.3fs   %8.2f\n", oInit, qInit, oInit/qInit)
	fmt.Printf("boot timer (VM start → init)     %8.3fs           -          -   < %v: %s\n", oBoot, targetBoot, verdict(oBoot < targetBoot.Seconds()))
	fmt.Printf("runner run total (basic)         %8.3fs           -          -   < %v: %s\n", oTotal, targetBoot, verdict(oTotal < targetBoot.Seconds()))
	fmt.Printf("VMM peak RSS (guest RAM incl.)   %7.1fMiB  %7.1fMiB   %8.2f\n", oRSS, qRSS, oRSS/qRSS)
	fmt.Printf("VMM own memory (RSS − guest)     %7.1fMiB           -          -   < %d MiB: %s\n", oOver, targetOverheadMiB, verdict(oOver < targetOverheadMiB))
	if kernel.IsKVMPVM() {
		fmt.Println("\nnote: /dev/kvm here is kvm_pvm: the guest kernel runs through an instruction emulator, so boot")
		fmt.Println("times are ~1000x those on hardware KVM; the ratio against qemu is the meaningful number here.")
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// watch starts cmd with its console stream (stdout or stderr, chosen by setStream) on a
// pipe, timestamps the first line containing guest.StartedMessage, and waits for cmd.
func watch(cmd *exec.Cmd, setStream func(*os.File), timeout time.Duration) (toInit, total time.Duration, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer pr.Close()
	setStream(pw)
	start := time.Now()
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return 0, 0, err
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if toInit == 0 && strings.Contains(sc.Text(), guest.StartedMessage) {
			toInit = time.Since(start)
		}
	}
	err = cmd.Wait()
	total = time.Since(start)
	if toInit == 0 {
		return 0, total, fmt.Errorf("no %q line on the console (%v)", guest.StartedMessage, err)
	}
	return toInit, total, err
}

func maxRSSKiB(cmd *exec.Cmd) int64 {
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

func runOurs(runnerBin, ref string, memMiB int, timeout time.Duration) (sample, error) {
	cmd := exec.Command(runnerBin, "run", "--backend", "kvm", "--json", "--console", "--memory", fmt.Sprint(memMiB), "--image", ref)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	toInit, total, err := watch(cmd, func(f *os.File) { cmd.Stderr = f }, timeout)
	if err != nil {
		return sample{}, err
	}
	var r struct {
		Exit        int     `json:"exit"`
		Stdout      string  `json:"stdout"`
		BootTime    float64 `json:"boot_time_s"`
		VMMRSS      int64   `json:"vmm_max_rss_kib"`
		VMMOverhead int64   `json:"vmm_overhead_kib"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return sample{}, fmt.Errorf("--json output: %v", err)
	}
	if r.Exit != 0 || r.Stdout != "hello from vm\n" {
		return sample{}, fmt.Errorf("run failed: exit %d, stdout %q", r.Exit, r.Stdout)
	}
	return sample{toInit: toInit, total: total, bootTime: time.Duration(r.BootTime * float64(time.Second)),
		rssKiB: r.VMMRSS, overKiB: r.VMMOverhead}, nil
}

// runQemu boots the same kernel, command line and root filesystem in qemu's microvm. Its
// init finds no vsock device, says so and powers off, which ends qemu (-no-reboot).
func runQemu(k kernel.Kernel, disk, cmdline string, memMiB int, timeout time.Duration) (sample, error) {
	machine, cpu := "microvm", "host"
	if k.Flavour == kernel.KVMPVM {
		// What kernel/README.md documents for kvm_pvm: no ACPI, and a CPU model without the
		// instructions its emulator lacks.
		machine, cpu = "microvm,acpi=off", "qemu64,-cx16,+xsaveerptr"
	}
	cmd := exec.Command("qemu-system-x86_64", "-M", machine, "-enable-kvm", "-cpu", cpu,
		"-m", fmt.Sprintf("%dM", memMiB), "-smp", "1", "-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", k.Path, "-append", cmdline,
		"-drive", "id=root,file="+disk+",format=raw,if=none", "-device", "virtio-blk-device,drive=root")
	toInit, total, err := watch(cmd, func(f *os.File) { cmd.Stdout = f }, timeout)
	if toInit == 0 {
		return sample{}, err
	}
	return sample{toInit: toInit, total: total, rssKiB: maxRSSKiB(cmd)}, nil
}
