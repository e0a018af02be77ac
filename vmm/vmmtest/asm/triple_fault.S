# TripleFault: 64-bit; UD2 with the boot code's empty IDT (limit 7) cannot be delivered:
# #UD -> #GP -> #DF -> triple fault -> KVM_EXIT_SHUTDOWN.
.code64
  mov $0x3f8, %dx
  mov $0x21, %al          # '!'
  out %al, %dx
  ud2
