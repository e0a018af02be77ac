# VirtioProbe: 64-bit; reads the first virtio-mmio window (0xc0001000) like Linux's probe:
# MagicValue (offset 0), Version (4), DeviceID (8), printed as "<magic> <version> <id>\n"
# in hex, then resets through the i8042.
.code64
  mov $0x3f8, %dx
  mov $0xc0001000, %edi
  mov (%rdi), %ebx        # MagicValue: 0x74726976 ("virt")
  call hex32
  mov $0x20, %al
  out %al, %dx
  mov 4(%rdi), %ebx       # Version: 2
  call hex32
  mov $0x20, %al
  out %al, %dx
  mov 8(%rdi), %ebx       # DeviceID
  call hex32
  mov $0x0a, %al
  out %al, %dx
  mov $0xfe, %al
  out %al, $0x64
1:
  hlt
  jmp 1b
# hex32 prints %ebx as 8 hex digits on port %dx.
hex32:
  mov $8, %ecx
2:
  rol $4, %ebx
  mov %bl, %al
  and $0xf, %al
  add $0x30, %al
  cmp $0x39, %al
  jbe 3f
  add $0x27, %al          # 'a'..'f'
3:
  out %al, %dx
  dec %ecx
  jnz 2b
  ret
