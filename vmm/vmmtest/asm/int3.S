# Int3: 64-bit; INT3 with an empty IDT. Hardware KVM: triple fault (KVM_EXIT_SHUTDOWN).
# kvm_pvm: its CPL0 instruction emulator cannot execute INT3 and stops the vCPU with
# KVM_EXIT_INTERNAL_ERROR (emulation failure) carrying the bytes cc 90 90 ...
.code64
  mov $0x3f8, %dx
  mov $0x33, %al          # '3'
  out %al, %dx
  int3
  nop
  nop
  nop
  nop
