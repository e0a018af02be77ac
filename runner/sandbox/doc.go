// Package sandbox runs a root filesystem image and its bencher-init without a VM: the
// runner's no-KVM backend, and a fast way to exercise the whole pipeline in tests.
//
// Start attaches the per-run image copy to a loop device (autoclear), then, on one locked OS
// thread, unshares a mount namespace, makes it private, mounts the image read-write (ext4)
// or read-only under a tmpfs overlay (squashfs), populates a minimal /dev (null, zero, full,
// random, urandom, tty, ptmx), pivot_roots into it and starts /.bencher/init --fd=3 as PID 1
// of new PID, network, UTS, IPC and cgroup namespaces, with one end of a Unix socket pair as
// fd 3 (the protocol connection) and inside fresh cgroups carrying the memory, pids and CPU
// limits: a v2 group it is cloned into when the unified hierarchy has the controllers, else
// v1 groups it is moved into before the host sends it anything (hybrid and v1-only hosts).
// Without either, the run goes on unbounded and says so in a warning.
//
// Cleanup does not depend on the runner: every mount lives only in the sandbox's mount
// namespace and disappears with it, the loop device detaches itself when unmounted, and the
// init gets SIGKILL if the runner dies (PR_SET_PDEATHSIG), which ends the PID namespace.
// Close removes the temporary directory and the cgroup.
//
// Isolation is that of a container, not of a VM: the host kernel is shared. The init drops
// every capability and installs a seccomp filter before it runs the workload.
package sandbox
