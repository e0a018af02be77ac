// Package guest is the logic of bencher-init, the PID 1 that runs one benchmark command.
//
// The same binary serves both backends:
//
//   - VM (--vsock-port=N, the default): the kernel runs it as init. It stamps the boot timer,
//     makes the root writable (remount for ext4, a tmpfs overlay for squashfs), mounts the API
//     filesystems, brings up loopback, connects to the host over AF_VSOCK (CID 2, port N) and
//     powers the VM off with reboot(2) once the host acknowledged the result.
//   - sandbox (--fd=N): runner/sandbox starts it as PID 1 of fresh namespaces inside the
//     already-mounted root, with a connected Unix socket on fd N; it exits at the end.
//
// In both, the run is: Hello → RunConfig → resolve user (Docker's rules, from the image's
// /etc/passwd and /etc/group), build the environment as Docker does, create and enter the
// working directory, start the command with stdin /dev/null in its own session, hardened (no
// capabilities in any set, no_new_privs, a seccomp filter) → stream stdout and stderr live →
// reap everything, enforce the timeout on the whole process tree → Exit → output files →
// Done → wait for Ack. See package protocol for the wire format.
//
// The init is event-driven: it blocks in read(2), wait4(2) and timers, never polls. Every
// syscall counts under an emulated KVM (about 0.7 ms each on the development hosts).
package guest
