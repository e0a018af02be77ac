// Package kvm is a typed binding of the Linux KVM API (Documentation/virt/kvm/api.rst) for
// x86-64, built on golang.org/x/sys/unix without cgo.
//
// Three file-descriptor types mirror the API's three levels, so an ioctl meant for one
// level cannot be issued on another: System (/dev/kvm), VM (KVM_CREATE_VM) and VCPU
// (KVM_CREATE_VCPU). Each VCPU owns its shared kvm_run page (Run), through which KVM_RUN
// reports why the guest stopped.
//
// Struct types are the kernel's structs under Go names with the same layout ("Regs is
// struct kvm_regs"); their sizes and field offsets, the ioctl numbers and every constant
// are checked against the system's kernel headers by abi_test.go. The package holds no
// policy and knows nothing about the guest: boot state, CPUID templates and devices live
// in vmm/arch/x86 and vmm.
//
// Unsafe code (ioctl pointers, the kvm_run mapping) lives only in *_unsafe.go files.
package kvm
