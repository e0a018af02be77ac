package kernel

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Requirement is one kernel configuration option the runner, its VMM or the guest init
// depends on.
type Requirement struct {
	Option string // option name, e.g. "CONFIG_VIRTIO_MMIO"
	Want   string // "y", "n" (not set or absent), or ">=N" for a numeric option
	Why    string // who needs it, for the error message
}

// Requirements is what a guest kernel must provide for the runner to work. Our
// kernel/config/microvm.config sets all of them; the tests check the built image's embedded
// configuration and a booted guest's /proc/config.gz against this list, and a runner can
// check a user-supplied --kernel with ReadEmbeddedConfig and Config.Check.
var Requirements = []Requirement{
	// Boot and CPUs.
	{"CONFIG_64BIT", "y", "the VMM enters the kernel in 64-bit long mode"},
	{"CONFIG_PVH", "y", "PVH entry note (qemu -M microvm boots vmlinux through it)"},
	{"CONFIG_SMP", "y", "--vcpus > 1"},
	{"CONFIG_NR_CPUS", ">=32", "the VMM offers up to 32 vCPUs"},
	{"CONFIG_X86_MPPARSE", "y", "the VMM describes CPUs and the IOAPIC in an MP table"},
	{"CONFIG_ACPI", "n", "no ACPI tables: the MP table must be used, not ignored"},
	{"CONFIG_RANDOMIZE_BASE", "n", "the VMM loads vmlinux at its linked address"},
	{"CONFIG_KVM_GUEST", "y", "kvm-clock, the only working clocksource on kvm-pvm"},
	{"CONFIG_PARAVIRT_SPINLOCKS", "n", "its hypercall kick hangs vCPUs on kvm-pvm"},
	{"CONFIG_SERIAL_8250_CONSOLE", "y", "console=ttyS0, the runner's console log"},
	{"CONFIG_BLK_DEV_INITRD", "y", "initramfs boots of the kernel and VMM tests"},
	// Devices.
	{"CONFIG_VIRTIO_MMIO", "y", "all devices are virtio-mmio"},
	{"CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", "y", "the VMM announces devices as virtio_mmio.device= words"},
	{"CONFIG_PCI", "n", "no PCI bus in the VM"},
	{"CONFIG_VIRTIO_BLK", "y", "root filesystem on /dev/vda"},
	{"CONFIG_VSOCKETS", "y", "result channel (AF_VSOCK)"},
	{"CONFIG_VIRTIO_VSOCKETS", "y", "result channel over virtio-vsock"},
	{"CONFIG_DEVMEM", "y", "the init stamps the boot-timer device through /dev/mem"},
	// Filesystems.
	{"CONFIG_EXT4_FS", "y", "ext4 root filesystem (rw)"},
	{"CONFIG_SQUASHFS", "y", "squashfs root filesystem (ro)"},
	{"CONFIG_SQUASHFS_ZSTD", "y", "zstd-compressed squashfs roots"},
	{"CONFIG_SQUASHFS_XZ", "y", "xz-compressed squashfs roots"},
	{"CONFIG_SQUASHFS_ZLIB", "y", "gzip-compressed squashfs roots (mksquashfs default)"},
	{"CONFIG_OVERLAY_FS", "y", "writable overlay over a squashfs root"},
	{"CONFIG_TMPFS", "y", "overlay upper layer, /tmp, /dev/shm"},
	{"CONFIG_TMPFS_XATTR", "y", "overlayfs whiteouts on a tmpfs upper layer"},
	{"CONFIG_DEVTMPFS", "y", "/dev in the guest"},
	{"CONFIG_PROC_FS", "y", "/proc"},
	{"CONFIG_SYSFS", "y", "/sys"},
	// Executables and system calls.
	{"CONFIG_BINFMT_ELF", "y", "running ELF binaries"},
	{"CONFIG_BINFMT_SCRIPT", "y", "running #! scripts"},
	{"CONFIG_MULTIUSER", "y", "users, groups and capabilities (capability drop)"},
	{"CONFIG_SECCOMP_FILTER", "y", "the init's seccomp filter (scenario S1)"},
	{"CONFIG_FUTEX", "y", "threads in every runtime"},
	{"CONFIG_EPOLL", "y", "event loops (Go, Rust, Node...)"},
	{"CONFIG_EVENTFD", "y", "event loops"},
	{"CONFIG_SIGNALFD", "y", "signal handling in the init"},
	{"CONFIG_TIMERFD", "y", "timers in event loops"},
	{"CONFIG_POSIX_TIMERS", "y", "timer_create, clock_nanosleep"},
	{"CONFIG_UNIX", "y", "AF_UNIX sockets"},
	// Networking: loopback only.
	{"CONFIG_INET", "y", "127.0.0.1 for workloads"},
	{"CONFIG_NETDEVICES", "n", "no network device: no network access (scenario S3)"},
	// Resource control and isolation.
	{"CONFIG_CGROUPS", "y", "cgroup v2 limits in the guest"},
	{"CONFIG_MEMCG", "y", "memory limit and OOM detection"},
	{"CONFIG_CGROUP_PIDS", "y", "process-count limit"},
	{"CONFIG_NAMESPACES", "y", "namespaces for workloads that use them"},
	{"CONFIG_PID_NS", "y", "pid namespaces"},
	{"CONFIG_NET_NS", "y", "network namespaces"},
	{"CONFIG_MODULES", "n", "everything built in: nothing to load in the guest"},
	// Introspection.
	{"CONFIG_IKCONFIG", "y", "configuration embedded in the image"},
	{"CONFIG_IKCONFIG_PROC", "y", "/proc/config.gz"},
}

// Check reports whether c satisfies the requirement.
func (r Requirement) Check(c Config) error {
	got := c.Get(r.Option)
	if min, ok := strings.CutPrefix(r.Want, ">="); ok {
		want, err := strconv.Atoi(min)
		if err != nil {
			return fmt.Errorf("%s: bad requirement %q", r.Option, r.Want)
		}
		n, err := strconv.Atoi(got)
		if err != nil || n < want {
			return fmt.Errorf("%s=%s, want >= %d (%s)", r.Option, got, want, r.Why)
		}
		return nil
	}
	if got != r.Want {
		return fmt.Errorf("%s=%s, want %s (%s)", r.Option, got, r.Want, r.Why)
	}
	return nil
}

// Check returns every requirement in reqs that c does not satisfy, joined; nil if all hold.
func (c Config) Check(reqs []Requirement) error {
	var errs []error
	for _, r := range reqs {
		if err := r.Check(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
