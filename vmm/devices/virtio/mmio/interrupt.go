package mmio

import (
	"fmt"

	"github.com/vmbench/runner/vmm/devices/virtio"
)

func (t *Transport) interrupt() interrupt { return interrupt{t} }

// interrupt is the virtio.Interrupt handed to the device on activation.
type interrupt struct{ t *Transport }

// Signal sets bits in InterruptStatus and raises the interrupt line.
func (i interrupt) Signal(bits uint32) error {
	i.t.interruptStatus.Or(bits)
	i.t.interrupts.Add(1)
	if i.t.irq == nil {
		return nil
	}
	if err := i.t.irq.Trigger(); err != nil {
		return fmt.Errorf("virtio-mmio: trigger interrupt: %w", err)
	}
	return nil
}

// NeedsReset sets DEVICE_NEEDS_RESET and sends a configuration-change interrupt (§2.1.2).
func (i interrupt) NeedsReset(reason error) {
	if i.t.needsReset.Swap(true) {
		return
	}
	i.t.log.Warn("virtio-mmio: device needs reset", "reason", reason)
	if err := i.Signal(virtio.InterruptConfigChange); err != nil {
		i.t.log.Warn("virtio-mmio: config-change interrupt", "err", err)
	}
}
