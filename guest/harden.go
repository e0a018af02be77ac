package guest

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM for the workload, whatever its capabilities would allow:
// rebooting or replacing the kernel, kernel modules, swap, every way to change the mount
// table, process accounting, setting the clocks, eBPF, the kernel keyring, raw port I/O and
// the file-handle syscall behind the classic container escape.
var deniedSyscalls = []string{
	"reboot", "kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module",
	"swapon", "swapoff",
	"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
	"fsmount", "fspick", "mount_setattr",
	"acct",
	"settimeofday", "clock_settime", "clock_adjtime",
	"bpf",
	"keyctl", "add_key", "request_key",
	"iopl", "ioperm",
	"open_by_handle_at",
	// pidfd_send_signal takes a pidfd, which may be open on /proc/1: it cannot be filtered by
	// target, so it is denied outright. Go and other runtimes fall back to kill(2).
	"pidfd_send_signal",
}

// initPID is the argument value that names PID 1 in the signal syscalls.
const initPID = 1

// signalInitConditions deny signalling PID 1 (the init): kill(1, sig) for sig != 0,
// tkill(1, ...), tgkill(1, ...), rt_sigqueueinfo(1, ...), rt_tgsigqueueinfo(1, ...) and
// pidfd_open(1, ...). kill(1, 0) stays allowed: it only probes for existence, and busybox
// halt/reboot probes init that way (it would otherwise sleep for seconds before failing).
//
// The library compares all 64 bits of an argument while the kernel truncates a pid_t to its
// low 32, so a hand-made syscall with garbage in the high word gets past these rules. That
// is why they are defence in depth only: the init also takes and drops every signal that
// would end it (ignoreSignals), and the kernel never delivers SIGKILL or SIGSTOP to a PID 1
// from inside its namespace.
var signalInitConditions = []seccomp.NameWithConditions{
	{Name: "kill", Conditions: seccomp.ArgumentConditions{
		{Argument: 0, Operation: seccomp.Equal, Value: initPID},
		{Argument: 1, Operation: seccomp.NotEqual, Value: 0},
	}},
	{Name: "tkill", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: initPID}}},
	{Name: "tgkill", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: initPID}}},
	{Name: "rt_sigqueueinfo", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: initPID}}},
	{Name: "rt_tgsigqueueinfo", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: initPID}}},
	{Name: "pidfd_open", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: initPID}}},
}

// WorkloadPolicy is the seccomp policy of the workload: allow by default, EPERM for the
// syscalls above. perf_event_open is denied unless allowPerf.
func WorkloadPolicy(allowPerf bool) seccomp.Policy {
	names := append([]string(nil), deniedSyscalls...)
	if !allowPerf {
		names = append(names, "perf_event_open")
	}
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{{
			Action:             seccomp.ActionErrno, // EPERM
			Names:              names,
			NamesWithCondtions: signalInitConditions,
		}},
	}
}

// capLastCap returns the highest capability number the kernel knows.
func capLastCap() int {
	b, err := readSmallFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return unix.CAP_LAST_CAP
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	if n <= 0 || n > 63 {
		return unix.CAP_LAST_CAP
	}
	return n
}

// hardenThread prepares the calling OS thread so that a process it forks and execs runs with
// no capabilities in any set, no_new_privs and the workload's seccomp filter. Credentials,
// no_new_privs and seccomp filters are per thread in Linux and a child inherits its forking
// thread's, so the init hardens one locked thread, forks from it, and lets Go retire the
// thread; the init's other threads keep their privileges.
//
// The thread keeps CAP_SETUID and CAP_SETGID in its effective set: the forked child still
// has to setgroups/setgid/setuid to the workload's user before exec. The exec then leaves
// nothing: the bounding and inheritable sets are empty (so even uid 0 gains no capabilities
// from execve), ambient is cleared, and a non-zero uid loses the rest at setuid.
//
// Precondition: on a thread from osthread.RunDisposable.
func hardenThread(allowPerf bool) error {
	last := capLastCap()
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("harden: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("harden: clear ambient capabilities: %w", err)
	}
	keep := uint32(1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: keep, Permitted: keep}}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("harden: capset: %w", err)
	}
	filter := seccomp.Filter{NoNewPrivs: true, Policy: WorkloadPolicy(allowPerf)}
	if err := seccomp.LoadFilter(filter); err != nil {
		return fmt.Errorf("harden: seccomp: %w", err)
	}
	return nil
}
