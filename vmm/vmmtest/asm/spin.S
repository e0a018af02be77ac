# Spin: 64-bit; announces itself and loops forever with interrupts enabled-or-not
# irrelevant: the VMM must end it with Stop.
.code64
  mov $0x3f8, %dx
  mov $0x53, %al          # 'S'
  out %al, %dx
1:
  jmp 1b
