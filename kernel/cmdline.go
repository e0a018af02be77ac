package kernel

import "strings"

// baseCmdline is the part of the guest kernel command line that every run uses, whatever the
// flavour. Each word is one the kernel consumes: Linux hands every word it does not know
// (without a dot) to init, as an argument or, for name=value, as an environment variable, and
// the benchmark would see it. The smoke test boots each flavour and checks that none leaks.
//
// Left out, with why:
//   - nokaslr, noxsave: parsed by searching the raw command line, not registered as
//     parameters, so they would reach init's argv (KASLR is not built in anyway;
//     the kvm-pvm flavour clears XSAVE through clearcpuid= instead);
//   - transparent_hugepage=never: THP is not built in, so the word would be unknown (and
//     become an environment variable); page size cannot change under a benchmark anyway;
//   - nomodule, pci=off: no module support, no PCI; both would be unknown;
//   - Firecracker's i8042.* and 8250.nr_uarts=: we build no i8042 driver and a single UART
//     (CONFIG_SERIAL_8250_NR_UARTS=1); dotted words are dropped silently, so they would only be
//     noise.
var baseCmdline = []string{
	// Kernel messages go to the 8250 UART, which the VMM copies into the runner's console log.
	"console=ttyS0",
	// Only errors reach the console: every console byte is a VM exit (and, on kvm-pvm,
	// emulated kernel code), so a chatty boot is a slow boot. Drop "quiet" to debug a boot.
	"quiet",
	// A kernel panic restarts after 1 s; the VMM turns the restart into the end of the VM and a
	// clear error, instead of a guest that hangs until the run's timeout.
	"panic=1",
	// User-space ASLR off: the same binary gets the same memory layout on every run, one
	// source of run-to-run variance less.
	"norandmaps",
	// No speculation mitigations: already the default of our kernel (CONFIG_CPU_MITIGATIONS=n),
	// and it keeps the runtime ones off if a distribution kernel is booted with --kernel.
	"mitigations=off",
	// Credit the CPU's RNG so getrandom() never blocks the init or the workload at boot.
	"random.trust_cpu=on",
}

// flavourCmdline holds what each flavour adds.
var flavourCmdline = map[Flavour][]string{
	// Hardware KVM: restart through the keyboard controller (0xfe to port 0x64); the VMM's
	// i8042 model ends the VM on it, as Firecracker does. The init ends the VM with
	// reboot(RESTART), and panic=1 restarts too.
	Stock: {"reboot=k"},
	// kvm_pvm host (see kernel/README.md and kernel/patches/kvm-pvm):
	KVMPVM: {
		// Restart (and power-off) by triple fault, UD2 with an empty IDT (patch 0003): the
		// VMM sees KVM_EXIT_SHUTDOWN. It needs no device model, so it ends the VM the same
		// way under our VMM and under qemu -M microvm (which has no i8042).
		"reboot=t",
		// Skip the INT3 self-test: the host's emulator cannot execute INT3 (patch 0001).
		"no_int3_selftest",
		// Keep the LOCK prefixes of a 1-vCPU guest: by default the kernel rewrites every one of
		// its thousands of LOCK sites for a uniprocessor at boot, one text_poke each, which
		// costs ~6 s of emulated boot here (66 s vs 72 s to the init, 1 vCPU, 512 MiB) and
		// microseconds on hardware. The guest behaves as with 2+ vCPUs.
		"noreplace-smp",
		// The host shows the guest its own FSGSBASE CPUID bit whatever the VMM's CPUID table
		// says; with it the kernel would switch FS/GS bases with WRFSBASE, which KVM's
		// emulator does not implement.
		"nofsgsbase",
		// CPU features the host leaks into the guest's CPUID but its emulator cannot execute
		// at CPL0: XSAVE (XRSTOR at FPU init), SMAP (CLAC/STAC at every user access), POPCNT
		// (hweight); and ERMS/FSRM, whose byte-wise rep movsb/stosb memcpy runs ~7x slower
		// in the emulator than the rep movsq fallback.
		"clearcpuid=xsave,smap,popcnt,erms,fsrm",
		// The emulated kernel runs ~1000x slower than native, so RCU's 21 s stall timeout
		// fires during a normal 2-vCPU boot ("rcu_sched self-detected stall"), and the
		// stall report (backtraces over the UART) costs more emulated seconds. 300 s is the
		// maximum; real hangs are still reported, and the run's timeout ends them anyway.
		"rcupdate.rcu_cpu_stall_timeout=300",
	},
}

// Cmdline returns the default kernel command line words for a flavour, without the root
// device, init and virtio-mmio device words (the runner and VMM add those).
func Cmdline(f Flavour) []string {
	out := append([]string(nil), baseCmdline...)
	return append(out, flavourCmdline[f]...)
}

// Join joins command-line words with single spaces.
func Join(words []string) string { return strings.Join(words, " ") }
