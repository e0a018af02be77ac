// Package kerneltest boots the runner's guest kernel under qemu for tests and benchmarks.
//
// It has three parts:
//
//   - Initramfs builds an uncompressed newc initramfs with the real cpio tool
//     (cpio -o -H newc -R 0:0): an optional host directory, extra files, a static busybox with
//     its applet links, an /init script, and /dev/console (c 5 1). BusyboxInitramfs is the
//     one-line form for tests.
//   - Qemu runs qemu-system-x86_64 -M microvm,acpi=off (TCG, or KVM with the CPU model the
//     kvm-pvm flavour needs) with a kernel, an initrd, virtio-blk disks and a command line,
//     captures the serial console, times the first console line containing a marker, and
//     kills qemu at a deadline (qemu stays paused after a KVM internal error, so a wedged guest
//     never ends by itself).
//   - Kernel and FlavourKernel find the built kernel in the cache kernel/build.sh fills.
//
// The kernel's own smoke tests use it, and so do the VMM's Linux boot test (the initramfs) and
// the qemu-versus-our-VMM boot-time benchmark.
package kerneltest
