// Package x86 prepares an x86-64 guest to run Linux: it loads the kernel (an uncompressed
// vmlinux ELF or a bzImage, 64-bit boot protocol), the initrd and the command line, writes
// the zero page (struct boot_params with the e820 map), the GDT and identity page tables
// for entering the kernel directly in 64-bit long mode, the MP table that lets Linux find
// every vCPU, and the CPUID table each vCPU reports (with CPU templates).
//
// Guest-physical layout (Firecracker-like, see layout.go):
//
//	0x500            GDT (null, code64, data, TSS)
//	0x520            IDT (empty: any exception before Linux loads its own triple-faults)
//	0x7000           zero page (struct boot_params)
//	0x8ff0           initial stack pointer
//	0x9000–0xefff    PML4, PDPT and four page directories (identity map of 0–4 GiB, 2 MiB pages)
//	0x10000          (free: the SMP test guests' AP start address)
//	0x20000          kernel command line
//	0x9fc00          MP floating pointer and configuration table (reserved in e820)
//	0x100000…        kernel (vmlinux at its p_paddr, normally 16 MiB; bzImage at 1 MiB)
//	top of low RAM   initrd
//
// Everything here is pure computation over guest memory and kvm types; the only inputs
// from outside the VMM are the kernel and initrd files, which are parsed defensively
// (FuzzLoadKernel).
package x86
