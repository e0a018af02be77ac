// Package kernel finds the runner's bundled guest kernel and owns its command line.
//
// The kernel itself is built by kernel/build.sh from Debian's linux-source-6.1 with the
// configuration in kernel/config/microvm.config, in one of two flavours:
//
//   - stock: the unmodified source, for hosts with hardware KVM (VT-x / AMD-V);
//   - kvm-pvm: the same plus kernel/patches/kvm-pvm, for hosts whose /dev/kvm is kvm_pvm
//     (pagetable-based virtualisation without hardware support). There, guest kernel code
//     runs through the host's instruction emulator; the patches and the extra command-line
//     options in Cmdline work around instructions it cannot execute and a defect in its
//     user-mode SYSCALL. Everything specific to that host lives in this flavour.
//
// The flavour is detected from the host (DetectFlavour) and can be overridden with
// $RUNNER_KERNEL_FLAVOUR.
package kernel
