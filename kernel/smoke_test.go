package kernel_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/kernel/kerneltest"
)

// smokeInit is the smoke test's /init (busybox sh). It prints "@@key value" lines that the
// test checks, then restarts the VM (reboot(RESTART), as the guest init does), which ends
// qemu -no-reboot with status 0.
const smokeInit = `#!/bin/sh
export PATH=/bin
echo "@@init"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "@@cmdline $(cat /proc/cmdline)"
for a in "$@"; do echo "@@argv $a"; done
env | sed 's/^/@@env /'
echo "@@cpus $(grep -c ^processor /proc/cpuinfo)"
echo "@@online $(cat /sys/devices/system/cpu/online)"
echo "@@rcu-stall-timeout $(cat /sys/module/rcupdate/parameters/rcu_cpu_stall_timeout)"
for d in /sys/bus/virtio/devices/*; do
  echo "@@virtio $(basename $d) $(cat $d/device) $(basename $(readlink $d/driver))"
done
mkdir -p /mnt/ext4 /mnt/zstd /mnt/xz /mnt/gzip /mnt/up /mnt/ov
mount -t ext4 /dev/vda /mnt/ext4 && echo "@@ext4 $(cat /mnt/ext4/probe)"
echo written-in-guest > /mnt/ext4/written && sync && umount /mnt/ext4 && echo "@@ext4-write ok"
mount -t squashfs -o ro /dev/vdb /mnt/zstd && echo "@@squashfs-zstd $(cat /mnt/zstd/probe)"
mount -t squashfs -o ro /dev/vdc /mnt/xz && echo "@@squashfs-xz $(cat /mnt/xz/probe)"
mount -t squashfs -o ro /dev/vdd /mnt/gzip && echo "@@squashfs-gzip $(cat /mnt/gzip/probe)"
mount -t tmpfs tmpfs /mnt/up && mkdir /mnt/up/u /mnt/up/w &&
  mount -t overlay overlay -o lowerdir=/mnt/zstd,upperdir=/mnt/up/u,workdir=/mnt/up/w /mnt/ov &&
  echo new > /mnt/ov/new && rm /mnt/ov/probe &&
  echo "@@overlay $(ls /mnt/ov | tr '\n' ' ')| lower: $(cat /mnt/zstd/probe)"
devmem 0xc0000000 8 123 && echo "@@devmem ok"
echo "@@netdevs $(ls /sys/class/net | tr '\n' ' ')"
ip link set lo up && ping -c 1 -W 2 127.0.0.1 >/dev/null && echo "@@loopback ok"
ping -c 1 -W 1 10.0.2.2 >/dev/null 2>&1 || echo "@@external unreachable"
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup &&
  echo "@@cgroup2 $(cat /sys/fs/cgroup/cgroup.controllers)"
ns() { for n in net mnt uts ipc; do printf '%s ' $(readlink /proc/self/ns/$n); done; }
echo "@@ns $(ns)"
unshare -p -n -m -u -i -f sh -c 'n=""; for x in net mnt uts ipc; do n="$n $(readlink /proc/self/ns/$x)"; done; echo "@@unshare pid=$$$n"'
echo "@@$(grep Seccomp: /proc/self/status)"
echo "@@config-begin"
zcat /proc/config.gz
echo "@@config-end"
echo "@@done"
reboot -f
`

// Probe words added to the command line: an unknown word and an unknown name=value must
// reach init as an argument and an environment variable. They prove that the leak check
// below can fail.
const (
	probeArg = "vmbench_probe_word"
	probeEnv = "vmbench_probe=1"
)

// smokeDisks makes the four disks the smoke test attaches: ext4 (vda) and squashfs with
// zstd (vdb), xz (vdc) and gzip (vdd) compression, each with a /probe file.
func smokeDisks(t *testing.T) (ext4 string, drives []kerneltest.Drive) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "probe"), []byte("probe-ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	ext4 = filepath.Join(dir, "ext4.img")
	run("mkfs.ext4", "-q", "-F", "-d", src, ext4, "8M")
	drives = append(drives, kerneltest.Drive{Path: ext4})
	for _, comp := range []string{"zstd", "xz", "gzip"} {
		img := filepath.Join(dir, comp+".sqfs")
		run("mksquashfs", src, img, "-comp", comp, "-noappend", "-quiet", "-no-progress")
		drives = append(drives, kerneltest.Drive{Path: img, ReadOnly: true})
	}
	return ext4, drives
}

// TestSmokeTCG boots each flavour's kernel under qemu TCG with 4 vCPUs and four virtio-blk
// disks and checks what the runner relies on: virtio-mmio discovery from the command line,
// SMP, the filesystems, /dev/mem at the boot-timer address, loopback-only networking,
// cgroup v2, namespaces, seccomp, every required configuration option, and that no default
// command-line word leaks into init's arguments or environment.
func TestSmokeTCG(t *testing.T) {
	initrd := kerneltest.BusyboxInitramfs(t, "", smokeInit)
	for _, f := range []kernel.Flavour{kernel.Stock, kernel.KVMPVM} {
		t.Run(string(f), func(t *testing.T) {
			vmlinux := kerneltest.FlavourKernel(t, f)
			ext4, drives := smokeDisks(t)
			cmdline := append(kernel.Cmdline(f), probeArg, probeEnv)
			res, err := kerneltest.Qemu{
				Kernel:  vmlinux,
				Initrd:  initrd,
				Cmdline: cmdline,
				Accel:   kerneltest.TCG,
				CPUs:    4,
				Drives:  drives,
				Marker:  "@@init",
				Timeout: 90 * time.Second,
			}.Run(context.Background())
			if err != nil || res.ExitCode != 0 || len(res.Lines("@@done")) == 0 {
				t.Fatalf("boot: err=%v exit=%d\nconsole:\n%s\nqemu stderr:\n%s", err, res.ExitCode, res.Console, res.Stderr)
			}
			t.Logf("TCG, 4 vCPUs: /init after %v, qemu exited after %v", res.ToMarker.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
			checkSmoke(t, f, vmlinux, ext4, res)
		})
	}
}

func one(t *testing.T, res kerneltest.QemuResult, key string) string {
	t.Helper()
	l := res.Lines("@@" + key)
	if len(l) == 0 {
		t.Errorf("no @@%s line in the console", key)
		return ""
	}
	return strings.TrimSpace(l[0])
}

func checkSmoke(t *testing.T, f kernel.Flavour, vmlinux, ext4 string, res kerneltest.QemuResult) {
	t.Run("cpus", func(t *testing.T) {
		if got := one(t, res, "cpus"); got != "4" {
			t.Errorf("/proc/cpuinfo lists %q processors, want 4", got)
		}
		if got := one(t, res, "online"); got != "0-3" {
			t.Errorf("online CPUs %q, want 0-3", got)
		}
	})
	t.Run("virtio-mmio-cmdline", func(t *testing.T) {
		// With CONFIG_ACPI=n and no PCI, the command line is the only way the kernel can
		// have found these devices; check that it carries them, too.
		cmdline := one(t, res, "cmdline")
		if n := strings.Count(cmdline, "virtio_mmio.device="); n != 4 {
			t.Errorf("%d virtio_mmio.device= words in /proc/cmdline, want 4: %s", n, cmdline)
		}
		devs := res.Lines("@@virtio ")
		if len(devs) != 4 {
			t.Fatalf("/sys/bus/virtio/devices has %d devices, want 4: %q", len(devs), devs)
		}
		for _, d := range devs {
			fields := strings.Fields(d)
			if len(fields) != 3 || fields[1] != "0x0002" || fields[2] != "virtio_blk" {
				t.Errorf("virtio device %q: want device id 0x0002 bound to virtio_blk", d)
			}
		}
	})
	t.Run("filesystems", func(t *testing.T) {
		for _, key := range []string{"ext4", "squashfs-zstd", "squashfs-xz", "squashfs-gzip"} {
			if got := one(t, res, key+" "); got != "probe-ok" {
				t.Errorf("%s: read %q from /probe, want probe-ok", key, got)
			}
		}
		if one(t, res, "ext4-write") != "ok" {
			t.Error("writing to the ext4 disk failed")
		}
		out, err := exec.Command("debugfs", "-R", "cat /written", ext4).Output()
		if err != nil || strings.TrimSpace(string(out)) != "written-in-guest" {
			t.Errorf("file written in the guest not on the disk image: %q, %v", out, err)
		}
		// Overlay over squashfs with a tmpfs upper layer: a new file, a whiteout, and the
		// lower layer untouched.
		if got := one(t, res, "overlay"); got != "new | lower: probe-ok" {
			t.Errorf("overlay: %q, want %q", got, "new | lower: probe-ok")
		}
	})
	t.Run("devmem-boot-timer", func(t *testing.T) {
		if one(t, res, "devmem") != "ok" {
			t.Error("a one-byte write to 0xc0000000 through /dev/mem failed (STRICT_DEVMEM?)")
		}
	})
	t.Run("network", func(t *testing.T) {
		if got := one(t, res, "netdevs"); got != "lo" {
			t.Errorf("network devices %q, want only lo", got)
		}
		if one(t, res, "loopback") != "ok" {
			t.Error("ping 127.0.0.1 failed")
		}
		if one(t, res, "external") != "unreachable" {
			t.Error("an outside address was reachable")
		}
	})
	t.Run("cgroup2-namespaces-seccomp", func(t *testing.T) {
		ctrl := strings.Fields(one(t, res, "cgroup2"))
		for _, c := range []string{"memory", "pids", "cpu"} {
			if !slices.Contains(ctrl, c) {
				t.Errorf("cgroup v2 controller %q missing: %v", c, ctrl)
			}
		}
		outer := strings.Fields(one(t, res, "ns"))
		inner := strings.Fields(one(t, res, "unshare"))
		if len(inner) != 5 || inner[0] != "pid=1" || len(outer) != 4 {
			t.Fatalf("unshare -p -n -m -u -i: %q (outside: %q), want pid=1 and four namespace links", inner, outer)
		}
		for i, ns := range outer {
			if inner[i+1] == ns {
				t.Errorf("unshare: still in namespace %s", ns)
			}
		}
		if got := one(t, res, "Seccomp:"); got != "0" {
			t.Errorf("Seccomp line %q, want mode 0 (present, unfiltered)", got)
		}
	})
	t.Run("rcu-stall-timeout", func(t *testing.T) {
		// A dotted word is dropped silently when nothing parses it: check it took effect.
		want := "21" // CONFIG_RCU_CPU_STALL_TIMEOUT
		if f == kernel.KVMPVM {
			want = "300"
		}
		if got := one(t, res, "rcu-stall-timeout"); got != want {
			t.Errorf("rcupdate.rcu_cpu_stall_timeout = %q, want %s", got, want)
		}
	})
	t.Run("cmdline-words-consumed", func(t *testing.T) {
		argv := res.Lines("@@argv ")
		env := res.Lines("@@env ")
		if !slices.Contains(argv, probeArg) || !slices.Contains(env, probeEnv) {
			t.Fatalf("probe words did not reach init (argv %q, env %q): the check below would be blind", argv, env)
		}
		for _, w := range kernel.Cmdline(f) {
			if slices.Contains(argv, w) {
				t.Errorf("%q reached init as an argument: the kernel does not know it", w)
			}
			for _, e := range env {
				if e == w || (strings.Contains(w, "=") && strings.HasPrefix(e, strings.SplitN(w, "=", 2)[0]+"=")) {
					t.Errorf("%q reached init's environment as %q", w, e)
				}
			}
		}
	})
	t.Run("config", func(t *testing.T) {
		text, ok := res.Between("@@config-begin", "@@config-end")
		if !ok {
			t.Fatal("no /proc/config.gz dump in the console")
		}
		proc, err := kernel.ParseConfig(strings.NewReader(text))
		if err != nil {
			t.Fatalf("/proc/config.gz: %v", err)
		}
		embedded, err := kernel.ReadEmbeddedConfig(vmlinux)
		if err != nil {
			t.Fatal(err)
		}
		if len(proc) != len(embedded) {
			t.Errorf("/proc/config.gz has %d options, the image's IKCONFIG %d", len(proc), len(embedded))
		}
		for _, n := range embedded.Names() {
			if proc[n] != embedded[n] {
				t.Errorf("%s: /proc/config.gz %q, image %q", n, proc[n], embedded[n])
			}
		}
		for _, r := range kernel.Requirements {
			t.Run(r.Option, func(t *testing.T) {
				if err := r.Check(proc); err != nil {
					t.Error(err)
				}
			})
		}
	})
	if t.Failed() {
		t.Logf("console:\n%s", res.Console)
	}
}

// TestBuiltImage checks the built kernel of this host's flavour without booting it: an ELF
// with the PVH entry note, and its embedded configuration satisfying Requirements and every
// line of kernel/config/microvm.config.
func TestBuiltImage(t *testing.T) {
	f := kernel.DetectFlavour()
	vmlinux := kerneltest.FlavourKernel(t, f)
	if err := kernel.CheckVmlinux(vmlinux); err != nil {
		t.Fatal(err)
	}
	c, err := kernel.ReadEmbeddedConfig(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range kernel.Requirements {
		t.Run(r.Option, func(t *testing.T) {
			if err := r.Check(c); err != nil {
				t.Error(err)
			}
		})
	}
	frag, err := os.Open("config/microvm.config")
	if err != nil {
		t.Fatal(err)
	}
	defer frag.Close()
	want, err := kernel.ParseConfig(frag)
	if err != nil {
		t.Fatalf("config/microvm.config: %v", err)
	}
	for _, n := range want.Names() {
		if c.Get(n) != want[n] {
			t.Errorf("fragment sets %s=%s, image has %s", n, want[n], c.Get(n))
		}
	}
	if got := c.Get("CONFIG_LOCALVERSION"); got != strconv.Quote("-vmbench") {
		t.Errorf("CONFIG_LOCALVERSION=%s", got)
	}
}
