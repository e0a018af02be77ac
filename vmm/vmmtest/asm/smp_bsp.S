# SMPBSP: 64-bit bootstrap processor. Wakes every application processor with INIT and a
# startup IPI (vector 0x10: the APs start in real mode at 0x10000, see smp_ap.S), waits
# until N-1 APs have incremented the counter at 0x5000 (N from CPUID.1:EBX[23:16], which
# the VMM sets), prints "ok" and resets through the i8042.
.code64
  mov $0xfee000f0, %edi   # local APIC spurious-interrupt vector register
  movl $0x1ff, (%rdi)     # APIC software enable, vector 0xff
  mov $0xfee00300, %edi   # interrupt command register (low)
  movl $0x000c4500, (%rdi) # INIT, assert, all excluding self
  movl $0x000c4610, (%rdi) # STARTUP, vector 0x10, all excluding self
  mov $1, %eax
  cpuid
  shr $16, %ebx
  and $0xff, %ebx
  dec %ebx                # APs expected
1:
  pause
  movl 0x5000, %eax
  cmp %ebx, %eax
  jb 1b
  mov $0x3f8, %dx
  mov $0x6f, %al          # 'o'
  out %al, %dx
  mov $0x6b, %al          # 'k'
  out %al, %dx
  mov $0x0a, %al
  out %al, %dx
  mov $0xfe, %al
  out %al, $0x64
2:
  hlt
  jmp 2b
