# RealModeIO: a 16-bit real-mode guest, loaded at GPA 0x1000 with CS base 0, IP 0x1000.
# One port write, one MMIO write, one MMIO read echoed to a port, then HLT.
.code16
  mov $0x3f8, %dx
  mov $0x41, %al          # 'A'
  out %al, %dx            # KVM_EXIT_IO: out 1 byte to port 0x3f8
  mov $0x2000, %ax
  mov %ax, %ds
  movb $0x5a, (0)         # KVM_EXIT_MMIO: write 0x5a to GPA 0x20000
  movw (4), %ax           # KVM_EXIT_MMIO: read 2 bytes from GPA 0x20004
  mov $0x10, %dx
  out %ax, %dx            # KVM_EXIT_IO: echo the value read to port 0x10 (2 bytes)
  hlt                     # KVM_EXIT_HLT (without the in-kernel irqchip)
