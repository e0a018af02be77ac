# LongDevices: 64-bit guest entered by the VMM's boot code (long mode, identity map) at
# 0x1000000. Prints a line on the UART, stamps the boot timer, reads unclaimed MMIO and
# reports the value on port 0x3f8 as two hex digits, then resets through the i8042.
.code64
  lea msg(%rip), %rsi
  mov $0x3f8, %dx
1:
  lodsb
  test %al, %al
  jz 2f
  out %al, %dx            # THR
  jmp 1b
2:
  mov $0xc0000000, %edi   # boot timer
  movb $123, (%rdi)       # Firecracker's magic value
  mov $0xd0000000, %edi   # nothing decodes this address
  movb (%rdi), %bl        # unclaimed MMIO read: all ones
  mov %bl, %al
  shr $4, %al
  call hexdigit
  mov %bl, %al
  and $0xf, %al
  call hexdigit
  mov $0x0a, %al
  out %al, %dx
  mov $0xfe, %al
  out %al, $0x64          # i8042: pulse the reset line
3:
  hlt
  jmp 3b
hexdigit:
  add $0x30, %al
  cmp $0x39, %al
  jbe 4f
  add $7, %al
4:
  out %al, %dx
  ret
msg:
  .asciz "hello from long mode\n"
