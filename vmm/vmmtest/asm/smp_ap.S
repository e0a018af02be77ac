# SMPAP: application-processor code at 0x10000, entered in real mode (CS=0x1000, IP=0) by
# the startup IPI. Reports its APIC ID (CPUID.1:EBX[31:24]) on the UART as the digit of its ID, counts
# itself in at 0x5000 and halts. One byte per AP, so concurrent APs cannot interleave.
.code16
  mov $1, %eax
  cpuid
  shr $24, %ebx
  mov $0x3f8, %dx
  mov %bl, %al
  add $0x30, %al          # '0' + APIC ID (IDs below 10 in tests)
  out %al, %dx
  xor %ax, %ax
  mov %ax, %ds
  lock incl (0x5000)
  cli
1:
  hlt
  jmp 1b
