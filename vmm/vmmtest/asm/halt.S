# Halt: 64-bit; halts with interrupts disabled. With the in-kernel irqchip HLT stays in KVM
# (no exit to user space), so only Stop ends it.
.code64
  mov $0x3f8, %dx
  mov $0x48, %al          # 'H'
  out %al, %dx
  cli
1:
  hlt
  jmp 1b
