package vmm

import (
	"golang.org/x/sys/unix"
)

// kickSignal interrupts a vCPU thread blocked in KVM_RUN.
//
// Why SIGURG: KVM_RUN returns EINTR when the thread has a pending signal that has a
// handler (an ignored signal is never delivered, a default-action one kills the process),
// so the signal must be one the Go runtime handles without side effects:
//
//   - SIGURG is the runtime's own preemption signal. The runtime installs its handler for
//     it in every Go program (including c-archive/c-shared builds), sends it to threads
//     itself at arbitrary moments, and does nothing else with it unless the program asked
//     for it with os/signal.Notify. All Go code must already tolerate stray SIGURGs, and a
//     kick that lands on a reused thread ID in this process is harmless.
//   - Realtime signals (SIGRTMIN+n, 35–64 on Linux) are reachable too: the runtime installs
//     a handler for them at start-up and drops them unless notified. But in c-archive and
//     c-shared builds it does not install that handler, and a stray one then kills the
//     process — a worse failure mode for a library.
//   - SIGUSR1/2 are often used by applications (log rotation etc.); a kick would reach
//     their os/signal channels.
//
// The one way to break SIGURG kicks is signal.Ignore(syscall.SIGURG), which also disables
// the runtime's asynchronous preemption; the VMM must not be embedded in such a program.
// Because the runtime preempts with SIGURG too, the vCPU loop treats EINTR as "check
// whether we are stopping, else re-enter", and Stop also sets kvm_run.immediate_exit so a
// kick that arrives just before KVM_RUN is not lost.
const kickSignal = unix.SIGURG

// kickThread sends kickSignal to thread tid of this process. ESRCH (the thread already
// exited) is not an error.
func kickThread(tid int) error {
	if tid <= 0 {
		return nil
	}
	if err := unix.Tgkill(unix.Getpid(), tid, kickSignal); err != nil && err != unix.ESRCH {
		return err
	}
	return nil
}
