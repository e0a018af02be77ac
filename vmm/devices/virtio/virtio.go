// Package virtio holds what every virtio device model and transport shares: device IDs,
// feature and status bits (virtio 1.2, "Virtual I/O Device (VIRTIO) Version 1.2", OASIS),
// and the Device interface that connects a device model (blk, vsock) to its transport
// (mmio).
//
// The split of work follows the specification: the transport (package mmio) owns the
// register file, feature negotiation, the device-status state machine and queue
// configuration; the device model owns its configuration space and the meaning of the
// buffers on its queues (package virtq walks and validates the rings).
package virtio

import (
	"fmt"

	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
	"github.com/vmbench/runner/vmm/guestmem"
)

// DeviceID is the virtio device type (virtio 1.2 §5).
type DeviceID uint32

const (
	DeviceBlock DeviceID = 2  // virtio-blk, §5.2
	DeviceVsock DeviceID = 19 // virtio-vsock, §5.10
)

func (id DeviceID) String() string {
	switch id {
	case DeviceBlock:
		return "block"
	case DeviceVsock:
		return "vsock"
	}
	return fmt.Sprintf("device(%d)", uint32(id))
}

// Device-independent feature bits (virtio 1.2 §6).
const (
	FeatureRingIndirectDesc uint64 = 1 << 28 // VIRTIO_F_RING_INDIRECT_DESC (VIRTIO_F_INDIRECT_DESC)
	FeatureRingEventIdx     uint64 = 1 << 29 // VIRTIO_F_RING_EVENT_IDX (VIRTIO_F_EVENT_IDX)
	FeatureVersion1         uint64 = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform   uint64 = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureRingPacked       uint64 = 1 << 34 // VIRTIO_F_RING_PACKED
	FeatureInOrder          uint64 = 1 << 35 // VIRTIO_F_IN_ORDER
)

// Status is the device status field (virtio 1.2 §2.1).
type Status uint32

const (
	StatusAcknowledge      Status = 1   // ACKNOWLEDGE
	StatusDriver           Status = 2   // DRIVER
	StatusDriverOK         Status = 4   // DRIVER_OK
	StatusFeaturesOK       Status = 8   // FEATURES_OK
	StatusDeviceNeedsReset Status = 64  // DEVICE_NEEDS_RESET
	StatusFailed           Status = 128 // FAILED
)

// Interrupt status bits (virtio 1.2 §4.2.2, InterruptStatus / InterruptACK).
const (
	InterruptUsedBuffer   uint32 = 1 << 0
	InterruptConfigChange uint32 = 1 << 1
)

// Interrupt is how an active device tells the driver about used buffers or a broken state.
// The transport implements it; calls may come from any goroutine.
type Interrupt interface {
	// Signal sets bits (InterruptUsedBuffer, InterruptConfigChange) in the interrupt status
	// and raises the device's interrupt.
	Signal(bits uint32) error
	// NeedsReset marks the device DEVICE_NEEDS_RESET (virtio 1.2 §2.1.1: the device "has
	// experienced an error from which it can't recover") and sends a configuration-change
	// interrupt. The device must stop using its queues until reset.
	NeedsReset(reason error)
}

// ActivateArgs is what a device receives when the driver sets DRIVER_OK.
type ActivateArgs struct {
	Mem *guestmem.Memory
	// Queues has one entry per queue the device declared; a queue the driver did not enable
	// is nil.
	Queues []*virtq.Queue
	// Features is the negotiated feature set (device offer ∩ driver acceptance).
	Features  uint64
	Interrupt Interrupt
}

// Device is a virtio device model behind a transport.
//
// Concurrency: ReadConfig, WriteConfig and Notify are called on vCPU threads (or the
// ioeventfd goroutine) and must not block; queue processing belongs on the device's own
// goroutine(s), started by Activate and stopped by Reset and Close.
type Device interface {
	// ID is the device type.
	ID() DeviceID
	// Features is the set of feature bits the device offers (must include FeatureVersion1).
	Features() uint64
	// QueueMaxSizes has one entry per virtqueue: the maximum size the device accepts.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the device-specific configuration space at offset
	// (relative to the start of that space). Out-of-range bytes read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig stores data into the configuration space; read-only fields ignore it.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device once the driver has set DRIVER_OK.
	Activate(args ActivateArgs) error
	// Notify tells the device the driver made buffers available on queue q.
	Notify(q int)
	// Reset stops queue processing and returns the device to its initial state. After Reset
	// returns the device no longer touches guest memory or raises interrupts.
	Reset()
	// Close releases host resources (files, sockets). It implies Reset.
	Close() error
}
