// Package kernel finds the runner's bundled guest kernel, owns its command line, and reads
// and checks kernel configurations.
//
// The kernel itself is built by kernel/build.sh from Debian's linux-source-6.1 with the
// configuration fragment kernel/config/microvm.config, in one of two flavours:
//
//   - stock: the unmodified source, for hosts with hardware KVM (VT-x / AMD-V);
//   - kvm-pvm: the same plus kernel/patches/kvm-pvm, for hosts whose /dev/kvm is kvm_pvm
//     (pagetable-based virtualisation without hardware support). There, guest kernel code
//     runs through the host's instruction emulator; the patches and the extra command-line
//     options in Cmdline work around instructions it cannot execute and a defect in its
//     user-mode SYSCALL. Everything specific to that host lives in this flavour.
//
// The flavour is detected from the host (DetectFlavour) and can be overridden with
// $RUNNER_KERNEL_FLAVOUR; Locate finds the image (--kernel, $RUNNER_KERNEL, or the build
// cache). Requirements lists the configuration options the runner depends on; Config.Check
// verifies them against an image's embedded configuration (ReadEmbeddedConfig) or a guest's
// /proc/config.gz (ParseConfig), and CheckVmlinux checks that an image is a PVH-bootable ELF.
// Package kernel/kerneltest boots the kernel under qemu for tests.
package kernel
