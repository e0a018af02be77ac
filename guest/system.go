package guest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// bootTimerAddr is the guest-physical address of the VMM's boot-timer device; writing
// bootTimerMagic there records the time the guest reached userspace (Firecracker's
// convention, which our VMM follows).
const (
	bootTimerAddr  = 0xc0000000
	bootTimerMagic = 123
)

// stampBootTimer writes bootTimerMagic to the boot-timer device through /dev/mem.
func stampBootTimer() error {
	f, err := os.OpenFile("/dev/mem", os.O_RDWR|unix.O_SYNC, 0)
	if err != nil {
		return fmt.Errorf("boot timer: %w", err)
	}
	defer f.Close()
	page, err := unix.Mmap(int(f.Fd()), bootTimerAddr, os.Getpagesize(), unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("boot timer: mmap /dev/mem at %#x: %w", bootTimerAddr, err)
	}
	page[0] = bootTimerMagic
	return unix.Munmap(page)
}

// bringUpLoopback sets IFF_UP on lo and takes down any other interface: the workload gets
// loopback and nothing else. The ioctls go through an AF_UNIX socket, which works on kernels
// built without IPv4.
func bringUpLoopback() error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := setLinkUp(fd, "lo", true); err != nil {
		return err
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil // no netlink: nothing else to look at
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback == 0 && ifc.Flags&net.FlagUp != 0 {
			if err := setLinkUp(fd, ifc.Name, false); err != nil {
				return err
			}
		}
	}
	return nil
}

func setLinkUp(fd int, name string, up bool) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("network: %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network: %s flags: %w", name, err)
	}
	flags := ifr.Uint16()
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network: set %s up=%v: %w", name, up, err)
	}
	return nil
}

// powerOff ends the VM: sync, then reboot(RESTART), which the VMM treats as the end of the
// VM (the guest kernel runs with reboot=k or reboot=t; POWER_OFF would halt without ACPI).
// It returns only if reboot(2) failed.
func powerOff() error {
	unix.Sync()
	return fmt.Errorf("power off: %w", unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
}

// bootTime returns CLOCK_BOOTTIME: in a VM, the time since the guest kernel started.
func bootTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// readSmallFile reads a /proc or /sys file of at most 64 KiB.
func readSmallFile(path string) ([]byte, error) {
	return readFile(path, 64<<10)
}

// readFile reads a whole file of at most limit bytes with plain open/read/close: os.Open
// would add four or five syscalls per file (trying the poller), each costing about 0.7 ms
// under an emulated KVM. A larger file is an error.
func readFile(path string, limit int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, min(limit+1, 4<<10)) // most reads are small /proc and /etc files; grows by doubling
	n := 0
	for {
		if n == len(buf) {
			if len(buf) > limit {
				return nil, fmt.Errorf("read %s: larger than %d bytes", path, limit)
			}
			buf = append(buf, make([]byte, min(len(buf), limit+1-len(buf)))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// maxRSS returns this process's peak resident set size in bytes (VmHWM of
// /proc/self/status), or 0 if unknown. getrusage's ru_maxrss would not do: it carries the
// high-water mark of the process image before execve, which in the sandbox is the runner's.
func maxRSS() int64 {
	b, err := readSmallFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return statusKiB(b, "VmHWM") << 10
}

// statusKiB returns the value of a "Name:   123 kB" line of /proc/*/status, or 0.
func statusKiB(b []byte, name string) int64 {
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return n
	}
	return 0
}
