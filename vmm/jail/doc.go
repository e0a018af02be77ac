// Package jail confines the VMM process before it runs guest code.
//
// The runner starts the VMM as a child process (a re-exec of itself) in new mount, PID,
// network, IPC and UTS namespaces (SysProcAttr). The child then, in this order:
//
//  1. EnterRoot: makes every mount private, bind-mounts the few host files it needs
//     (/dev/kvm, the kernel) into the per-run directory and pivot_roots into it, so the
//     VMM's whole filesystem view is the kernel, the rootfs copy and the vsock sockets;
//  2. SetRlimits: bounds open files, file size, core dumps;
//  3. creates the VM (opens /dev/kvm, maps guest memory, loads the kernel);
//  4. DropCapabilities: empties every capability set, on every OS thread;
//  5. InstallSeccomp: an allow-list of the system calls the VMM needs (ioctl restricted to
//     KVM requests, socket to AF_UNIX), synchronised to all threads, killing the process on
//     anything else; it also sets no_new_privs.
//
// Threat model: once guest code runs, a bug in device emulation may give the guest control
// of the VMM process. What it can then reach is this jail: an empty network namespace, no
// host files beyond the run directory, no capabilities, and a small system-call surface.
package jail
