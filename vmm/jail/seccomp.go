package jail

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// vmmSyscalls is what the VMM process may call once it is jailed, grouped by who needs it.
// Anything else kills the process (SECCOMP_RET_KILL_PROCESS): a VMM that makes an
// unexpected system call is treated as compromised.
var vmmSyscalls = []string{
	// Go runtime: memory, threads, signals, scheduling, timers, netpoller.
	"mmap", "munmap", "madvise", "mprotect", "brk", "mincore",
	"clone", "clone3", "exit", "exit_group", "gettid", "getpid", "tgkill", "sched_yield",
	"sched_getaffinity", "futex", "nanosleep", "clock_gettime", "clock_nanosleep",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "pipe2", "eventfd2",
	"getrandom", "getrlimit", "prlimit64", "uname", "getrusage",
	// File I/O: the rootfs image (virtio-blk), the console and report pipes.
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"lseek", "fsync", "fdatasync", "fallocate", "close", "fcntl", "fstat", "newfstatat",
	"openat", "readlinkat", "unlinkat",
	// Hybrid vsock: Unix sockets to the host side.
	"connect", "accept4", "bind", "listen", "getsockname", "getpeername", "getsockopt",
	"setsockopt", "shutdown", "sendto", "recvfrom", "sendmsg", "recvmsg",
}

// kvmIoctlType is the ioctl "type" byte of every KVM request (KVMIO, linux/kvm.h).
const kvmIoctlType = 0xAE

// VMMPolicy is the VMM's seccomp policy: the allow-list above, plus ioctl restricted to KVM
// requests ((request >> 8) & 0xff == KVMIO) and socket restricted to AF_UNIX.
func VMMPolicy() seccomp.Policy {
	return seccomp.Policy{
		DefaultAction: seccomp.ActionKillProcess,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionAllow, Names: vmmSyscalls},
			{Action: seccomp.ActionAllow, NamesWithCondtions: []seccomp.NameWithConditions{
				{Name: "ioctl", Conditions: []seccomp.Condition{
					{Argument: 1, Operation: seccomp.BitsSet, Value: kvmIoctlType << 8},
					{Argument: 1, Operation: seccomp.BitsNotSet, Value: (^uint64(kvmIoctlType) & 0xff) << 8},
				}},
				{Name: "socket", Conditions: []seccomp.Condition{
					{Argument: 0, Operation: seccomp.Equal, Value: unix.AF_UNIX},
				}},
			}},
		},
	}
}

// InstallSeccomp loads policy for every thread of the process (TSYNC) and sets
// no_new_privs. It cannot be undone.
func InstallSeccomp(policy seccomp.Policy) error {
	f := seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: policy}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("jail: load seccomp filter: %w", err)
	}
	return nil
}
