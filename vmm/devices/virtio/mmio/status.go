package mmio

import (
	"errors"
	"fmt"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

// writeStatus runs the device-status state machine (see the package documentation).
//
// +checklocks:t.mu
func (t *Transport) writeStatus(v virtio.Status) {
	const (
		ack        = virtio.StatusAcknowledge
		driver     = virtio.StatusDriver
		featuresOK = virtio.StatusFeaturesOK
		driverOK   = virtio.StatusDriverOK
		failed     = virtio.StatusFailed
	)
	if v == 0 {
		t.reset()
		return
	}
	v &^= virtio.StatusDeviceNeedsReset // the driver echoes it back; only the device sets it
	old := t.status
	if v&failed != 0 {
		if old&failed == 0 {
			t.log.Info("virtio-mmio: driver set FAILED", "status", uint32(v))
		}
		t.status |= failed
		return
	}
	added, removed := v&^old, old&^v
	switch {
	case old&failed != 0:
		t.warn("status written after FAILED without a reset", "status", uint32(v))
	case removed != 0:
		t.warn("status write clears bits (only a reset may)", "old", uint32(old), "new", uint32(v))
	case added == 0:
		// Rewriting the current value changes nothing.
	case old == 0 && added == ack,
		old == ack && added == driver:
		t.status = v
	case old == ack|driver && added == featuresOK:
		if err := t.checkFeatures(); err != nil {
			// §3.1.1: leaving FEATURES_OK clear tells the driver the subset is unusable.
			t.warn("FEATURES_OK refused", "err", err)
			return
		}
		t.status = v
	case old == ack|driver|featuresOK && added == driverOK:
		t.status = v
		t.activate()
	default:
		t.warn("illegal status transition", "old", uint32(old), "new", uint32(v))
	}
}

// +checklocks:t.mu
func (t *Transport) checkFeatures() error {
	if t.driverFeaturesBad || t.driverFeatures&^t.offered != 0 {
		return fmt.Errorf("driver features %#x not a subset of offered %#x", t.driverFeatures, t.offered)
	}
	if t.driverFeatures&virtio.FeatureVersion1 == 0 {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1")
	}
	return nil
}

// activate builds the queues the driver configured and starts the device. Any failure
// leaves the device inactive with DEVICE_NEEDS_RESET set.
//
// +checklocks:t.mu
func (t *Transport) activate() {
	queues := make([]*virtq.Queue, len(t.queues))
	for i, qs := range t.queues {
		if !qs.ready {
			continue
		}
		if qs.num > uint32(t.maxSizes[i]) {
			t.interrupt().NeedsReset(fmt.Errorf("queue %d: size %d exceeds maximum %d", i, qs.num, t.maxSizes[i]))
			return
		}
		q, err := virtq.New(t.mem, virtq.Config{
			Size:      uint16(qs.num),
			DescTable: qs.desc,
			AvailRing: qs.driver,
			UsedRing:  qs.device,
			EventIdx:  t.driverFeatures&virtio.FeatureRingEventIdx != 0,
			Indirect:  t.driverFeatures&virtio.FeatureRingIndirectDesc != 0,
		})
		if err != nil {
			t.interrupt().NeedsReset(fmt.Errorf("queue %d: %w", i, err))
			return
		}
		queues[i] = q
	}
	err := t.dev.Activate(virtio.ActivateArgs{
		Mem:       t.mem,
		Queues:    queues,
		Features:  t.driverFeatures,
		Interrupt: t.interrupt(),
	})
	if err != nil {
		t.interrupt().NeedsReset(fmt.Errorf("activate: %w", err))
		return
	}
	t.active.Store(true)
}

// reset returns the transport and the device to their initial state (§2.4). After
// Device.Reset returns no device goroutine touches guest memory or signals, so the
// interrupt state can be cleared safely.
//
// +checklocks:t.mu
func (t *Transport) reset() {
	t.active.Store(false)
	t.dev.Reset()
	t.status = 0
	t.devFeatSel, t.drvFeatSel, t.queueSel = 0, 0, 0
	t.driverFeatures, t.driverFeaturesBad = 0, false
	clear(t.queues)
	t.needsReset.Store(false)
	t.interruptStatus.Store(0)
}
