package vmm

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmbench/runner/vmm/arch/x86"
)

// pvmLogOnce makes the kvm_pvm notice appear once per process.
var pvmLogOnce sync.Once

// chooseTemplate resolves the configured CPU template: explicit wins; otherwise baseline on
// kvm_pvm (its instruction emulator needs it, and host CPUID bits leak into the guest there
// anyway) and host on hardware KVM.
func chooseTemplate(configured string, pvm bool, log *slog.Logger) (x86.CPUTemplate, error) {
	if pvm {
		pvmLogOnce.Do(func() {
			log.Info("vmm: /dev/kvm is kvm_pvm: guest kernel code runs through KVM's instruction emulator; " +
				"hiding CMPXCHG16B and KVM's hypercall features from the guest, default CPU template baseline")
		})
	}
	if configured != "" {
		t, err := x86.ParseCPUTemplate(configured)
		if err != nil {
			return "", fmt.Errorf("vmm: %w", err)
		}
		return t, nil
	}
	if pvm {
		return x86.TemplateBaseline, nil
	}
	return x86.TemplateHost, nil
}
