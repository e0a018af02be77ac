// Package vmmtest provides tiny guests for tests that execute real guest code under
// /dev/kvm: hand-written assembly (asm/*.S, assembled by gen.sh into zguests.go) and a
// builder that wraps such code in a minimal ELF64 executable, so the VMM's own kernel
// loader and 64-bit boot path start it exactly as they start a vmlinux.
//
// The guests talk to the VMM only through the devices a real guest uses: the UART at port
// 0x3f8, the i8042 reset at port 0x64, the boot timer at MMIO 0xc0000000, the local APIC.
package vmmtest
