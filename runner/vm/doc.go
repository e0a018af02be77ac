// Package vm is the runner's KVM backend: it runs the guest in a microVM whose VMM lives in
// a separate, jailed child process.
//
// Process model (parent = the runner, child = `runner vmm`, a re-exec of the same binary):
//
//	parent                                   child (new mount/pid/net/ipc/uts namespaces)
//	------                                   -----
//	listen on RUNDIR/vsock.sock_PORT
//	start child, send ChildConfig on fd 3 →  read config
//	                                         pivot_root into RUNDIR (kernel bind-mounted ro,
//	                                         /dev/kvm bound in), rlimits
//	                                         create VM: memory, kernel, virtio-blk (rootfs copy),
//	                                         virtio-vsock (RUNDIR/vsock.sock)
//	                                         drop all capabilities, seccomp allow-list
//	                                ← fd 4   "started" event
//	                                         run vCPUs; guest console → stdout
//	accept the guest init's connection  ←    guest connects to host port PORT (hybrid vsock)
//	... protocol session (runner/session) ...
//	                                ← fd 4   Report (exit reason, boot time, errors)
//	wait for the child
//
// The child is the VMM only: it never sees the image, the output directory or the network.
// Killing it (SIGKILL, or the parent dying: PDEATHSIG) ends the VM at once, because it is
// PID 1 of its own PID namespace.
package vm
