package kernel

import "strings"

// baseCmdline is the part of the guest kernel command line that every run uses, whatever
// the flavour. Each word is there for a reason; words that would be unknown to our kernel
// configuration are left out on purpose, because Linux hands unknown words to init as
// arguments or environment.
//
// Left out, with why: Firecracker's i8042.* options (our kernel has no i8042 driver; reset
// goes through port 0x64 directly), nomodule and module options (CONFIG_MODULES=n),
// nokaslr (CONFIG_RANDOMIZE_BASE=n), transparent_hugepage=never (THP is not built in, so
// page size never changes under a benchmark), 8250.nr_uarts (the config builds one UART),
// pci=off (no PCI).
var baseCmdline = []string{
	// The serial console carries kernel messages to the runner's console log.
	"console=ttyS0",
	// panic=1: a guest kernel panic reboots after 1 s, which the VMM turns into the end of
	// the VM and a clear error, instead of a guest that hangs until the timeout.
	"panic=1",
	// Guest user-space ASLR off: the same binary gets the same memory layout on every run,
	// one source of run-to-run variance less.
	"norandmaps",
	// Speculative-execution mitigations off inside the guest: a single-tenant benchmark VM
	// isolated by KVM; the mitigations' cost varies with the host CPU and adds noise.
	"mitigations=off",
	// Seed the kernel RNG from the CPU so getrandom() never blocks the init at boot.
	"random.trust_cpu=on",
}

// flavourCmdline holds what each flavour adds.
var flavourCmdline = map[Flavour][]string{
	// Hardware KVM: reboot through the keyboard controller (port 0x64 ← 0xfe); the VMM's
	// i8042 model turns that into the end of the VM, as Firecracker does.
	Stock: {"reboot=k"},
	// kvm_pvm host (see kernel/README.md and kernel/patches/kvm-pvm):
	KVMPVM: {
		// Restart and power-off by triple fault (UD2 with an empty IDT, patch 0003):
		// the VMM sees KVM_EXIT_SHUTDOWN.
		"reboot=t",
		// Skip the INT3 self-test: the host's emulator cannot execute INT3 (patch 0001).
		"no_int3_selftest",
		// The host passes its XSAVE CPUID bits to the guest whatever KVM_SET_CPUID2 says,
		// and its emulator cannot execute XRSTOR: keep the kernel on FXSAVE.
		"noxsave",
		// Same leak for FSGSBASE; the kernel must not enable it.
		"nofsgsbase",
		// Instructions the emulator lacks (SMAP's CLAC/STAC, POPCNT) and the slow
		// byte-granular string ops (ERMS/FSRM make memcpy use rep movsb, ~10x slower there).
		"clearcpuid=smap,popcnt,erms,fsrm",
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
