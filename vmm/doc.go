// Package vmm is the virtual machine monitor: a Machine boots a Linux kernel under KVM with
// a serial console, an i8042 (for reset), a boot timer and virtio-mmio devices, runs one OS
// thread per vCPU, and reports how the guest ended.
//
// Lifecycle: New builds everything (KVM VM, guest RAM, kernel and boot structures, vCPUs,
// devices) and runs no guest code; Run enters the guest and blocks until the guest resets
// or powers off, a vCPU fails, the context ends, or Stop is called; Close releases every
// file descriptor, mapping and device. New cleans up after itself on failure.
//
// Threads: each vCPU runs KVM_RUN in a loop on its own locked OS thread. Exits are
// dispatched to a port-I/O bus and an MMIO bus; device register handlers run on the vCPU
// thread and must not block (virtio queue work runs on device goroutines, woken through
// ioeventfds; interrupts go through irqfds or KVM_IRQ_LINE).
//
// Stopping: Stop sets kvm_run.immediate_exit on every vCPU and sends the vCPU threads
// SIGURG with tgkill, which makes a blocked KVM_RUN return EINTR (see kick.go for why
// SIGURG). A guest spinning in kernel code or halted forever therefore ends promptly.
//
// How a run ends (Exit.Reason): ExitReset (i8042 reset, the reboot=k path), ExitShutdown
// (triple fault: the reboot=t path, which is also how the kvm-pvm flavour powers off),
// ExitSystemEvent (KVM_SYSTEM_EVENT), ExitStopped (Stop or the context), ExitError (Run
// also returns the error; *InternalError for KVM_EXIT_INTERNAL_ERROR, with the instruction
// bytes at RIP).
//
// System calls made after New returns, for a seccomp allow-list: ioctl (KVM_RUN,
// KVM_IRQ_LINE, and on failure KVM_GET_REGS/KVM_GET_SREGS/KVM_TRANSLATE), read and write
// (eventfds, console), tgkill and gettid/getpid (Stop), epoll_pwait and futex (Go runtime,
// eventfd polling), close and munmap (Close), plus whatever the devices and the Go runtime
// need (mmap, madvise, nanosleep, clock_gettime, sched_yield, rt_sigreturn, …).
package vmm
