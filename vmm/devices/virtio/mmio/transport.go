package mmio

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/guestmem"
)

// IRQ is the device's edge-triggered interrupt line. The VMM implements it with an irqfd
// (or KVM_IRQ_LINE); Trigger may be called from any goroutine.
type IRQ interface {
	Trigger() error
}

// unsupportedFeatures are bits a device might offer that this transport cannot honour: the
// packed ring layout (package virtq is split-ring only) and platform-specific DMA.
const unsupportedFeatures = virtio.FeatureRingPacked | virtio.FeatureAccessPlatform

// queueState is the driver-written configuration of one virtqueue.
type queueState struct {
	num                  uint32
	ready                bool
	desc, driver, device uint64
}

// Transport is one virtio-mmio device window.
type Transport struct {
	dev      virtio.Device
	mem      *guestmem.Memory
	irq      IRQ
	log      *slog.Logger
	maxSizes []uint16
	offered  uint64 // device features this transport offers

	mu sync.Mutex // serialises register accesses, activation, reset and Close
	// +checklocks:mu
	status virtio.Status // driver-visible status, without DEVICE_NEEDS_RESET
	// +checklocks:mu
	devFeatSel, drvFeatSel, queueSel uint32
	// +checklocks:mu
	driverFeatures uint64
	// +checklocks:mu
	driverFeaturesBad bool // the driver wrote a 1 into a feature word beyond bit 63
	// +checklocks:mu
	queues []queueState
	// +checklocks:mu
	closed bool

	// The fields below are written by device goroutines too and are accessed atomically.
	active          atomic.Bool // DRIVER_OK reached and the device activated
	needsReset      atomic.Bool // DEVICE_NEEDS_RESET
	interruptStatus atomic.Uint32
	ignored         atomic.Uint64
	interrupts      atomic.Uint64
}

// New returns the transport for dev. mem is guest RAM (for the queues), irq the device's
// interrupt line (nil: interrupts are only recorded in InterruptStatus) and log receives
// warnings about a misbehaving driver (nil: slog.Default()).
func New(dev virtio.Device, mem *guestmem.Memory, irq IRQ, log *slog.Logger) *Transport {
	if log == nil {
		log = slog.Default()
	}
	maxSizes := append([]uint16(nil), dev.QueueMaxSizes()...)
	t := &Transport{
		dev:      dev,
		mem:      mem,
		irq:      irq,
		log:      log.With("device", dev.ID().String()),
		maxSizes: maxSizes,
		offered:  dev.Features() &^ unsupportedFeatures,
		queues:   make([]queueState, len(maxSizes)),
	}
	return t
}

// NumQueues is the number of virtqueues the device has.
func (t *Transport) NumQueues() int { return len(t.maxSizes) }

// Ignored is how many guest accesses or status changes were rejected (wrong width,
// unknown register, write to a read-only register, illegal state transition).
func (t *Transport) Ignored() uint64 { return t.ignored.Load() }

// Interrupts is how many times the transport raised its interrupt line.
func (t *Transport) Interrupts() uint64 { return t.interrupts.Load() }

// Active reports whether the device has been activated (DRIVER_OK) and not reset since.
func (t *Transport) Active() bool { return t.active.Load() }

// Notify delivers a queue kick (from an ioeventfd on QueueNotify, or a register write).
// Kicks before activation, for unknown queues or after DEVICE_NEEDS_RESET are dropped.
func (t *Transport) Notify(q int) {
	if q < 0 || q >= len(t.maxSizes) || !t.active.Load() || t.needsReset.Load() {
		return
	}
	t.dev.Notify(q)
}

// Close stops and closes the device. Register accesses afterwards are ignored.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.active.Store(false)
	if err := t.dev.Close(); err != nil {
		return fmt.Errorf("virtio-mmio: close %s device: %w", t.dev.ID(), err)
	}
	return nil
}

// warn counts a rejected access and logs it at a limited rate: the first 16, then one in
// 1024, so a hostile guest cannot flood the log.
func (t *Transport) warn(msg string, args ...any) {
	n := t.ignored.Add(1)
	if n <= 16 || n%1024 == 0 {
		t.log.Warn("virtio-mmio: "+msg, append(args, "ignored_total", n)...)
	}
}

// Read serves a guest load from the window (bus.Device).
func (t *Transport) Read(offset uint64, data []byte) {
	clear(data)
	if offset >= ConfigOffset {
		t.readConfig(offset, data)
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		t.warn("register read with bad width or alignment", "offset", fmt.Sprintf("%#x", offset), "width", len(data))
		return
	}
	t.mu.Lock()
	v, ok := t.readReg(Reg(offset))
	t.mu.Unlock()
	if !ok {
		t.warn("read of unknown or write-only register", "reg", Reg(offset).String())
		return
	}
	binary.LittleEndian.PutUint32(data, v)
}

// readReg returns the value of a readable register.
//
// +checklocks:t.mu
func (t *Transport) readReg(r Reg) (uint32, bool) {
	switch r {
	case RegMagicValue:
		return MagicValue, true
	case RegVersion:
		return Version, true
	case RegDeviceID:
		return uint32(t.dev.ID()), true
	case RegVendorID:
		return VendorID, true
	case RegDeviceFeatures:
		switch t.devFeatSel {
		case 0:
			return uint32(t.offered), true
		case 1:
			return uint32(t.offered >> 32), true
		}
		return 0, true
	case RegQueueNumMax:
		if int(t.queueSel) < len(t.maxSizes) {
			return uint32(t.maxSizes[t.queueSel]), true
		}
		return 0, true
	case RegQueueReady:
		if q := t.selectedQueue(); q != nil && q.ready {
			return 1, true
		}
		return 0, true
	case RegInterruptStatus:
		return t.interruptStatus.Load(), true
	case RegStatus:
		s := t.status
		if t.needsReset.Load() {
			s |= virtio.StatusDeviceNeedsReset
		}
		return uint32(s), true
	case RegSHMLenLow, RegSHMLenHigh:
		return ^uint32(0), true // §4.2.2: length -1 means the region does not exist
	case RegSHMBaseLow, RegSHMBaseHigh:
		return ^uint32(0), true
	case RegConfigGeneration:
		// Our devices' configuration spaces do not change while the driver reads them.
		return 0, true
	}
	return 0, false
}

// +checklocks:t.mu
func (t *Transport) selectedQueue() *queueState {
	if int(t.queueSel) < len(t.queues) {
		return &t.queues[t.queueSel]
	}
	return nil
}

func (t *Transport) readConfig(offset uint64, data []byte) {
	if !configAccessOK(offset, len(data)) {
		t.warn("configuration read with bad width", "offset", fmt.Sprintf("%#x", offset), "width", len(data))
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.dev.ReadConfig(offset-ConfigOffset, data)
}

func configAccessOK(offset uint64, n int) bool {
	switch n {
	case 1, 2, 4, 8:
	default:
		return false
	}
	return offset >= ConfigOffset && offset+uint64(n) <= Size
}

// Write serves a guest store to the window (bus.Device).
func (t *Transport) Write(offset uint64, data []byte) {
	if offset >= ConfigOffset {
		if !configAccessOK(offset, len(data)) {
			t.warn("configuration write with bad width", "offset", fmt.Sprintf("%#x", offset), "width", len(data))
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.closed {
			t.dev.WriteConfig(offset-ConfigOffset, data)
		}
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		t.warn("register write with bad width or alignment", "offset", fmt.Sprintf("%#x", offset), "width", len(data))
		return
	}
	v := binary.LittleEndian.Uint32(data)
	r := Reg(offset)
	if r == RegQueueNotify {
		// The ioeventfd-less path: no lock, exactly like Notify.
		t.Notify(int(v))
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.writeReg(r, v)
}

// writeReg applies a driver write to a register.
//
// +checklocks:t.mu
func (t *Transport) writeReg(r Reg, v uint32) {
	switch r {
	case RegDeviceFeaturesSel:
		t.devFeatSel = v
	case RegDriverFeaturesSel:
		t.drvFeatSel = v
	case RegDriverFeatures:
		t.writeDriverFeatures(v)
	case RegQueueSel:
		t.queueSel = v
	case RegQueueNum, RegQueueReady, RegQueueDescLow, RegQueueDescHigh,
		RegQueueDriverLow, RegQueueDriverHigh, RegQueueDeviceLow, RegQueueDeviceHigh:
		t.writeQueueReg(r, v)
	case RegInterruptACK:
		t.interruptStatus.And(^v)
	case RegStatus:
		t.writeStatus(virtio.Status(v))
	case RegSHMSel:
		// No shared memory regions: the selection is accepted and every region reads as absent.
	default:
		if _, readable := t.readReg(r); readable {
			t.warn("write to read-only register", "reg", r.String(), "value", v)
		} else {
			t.warn("write to unknown register", "reg", r.String(), "value", v)
		}
	}
}

// +checklocks:t.mu
func (t *Transport) writeDriverFeatures(v uint32) {
	if t.status != virtio.StatusAcknowledge|virtio.StatusDriver {
		t.warn("DriverFeatures written outside feature negotiation", "status", uint32(t.status))
		return
	}
	switch t.drvFeatSel {
	case 0:
		t.driverFeatures = t.driverFeatures&^0xffffffff | uint64(v)
	case 1:
		t.driverFeatures = t.driverFeatures&0xffffffff | uint64(v)<<32
	default:
		if v != 0 {
			t.driverFeaturesBad = true // accepts bits that were never offered
		}
	}
}

// +checklocks:t.mu
func (t *Transport) writeQueueReg(r Reg, v uint32) {
	q := t.selectedQueue()
	if q == nil {
		t.warn("queue register written for a queue that does not exist", "reg", r.String(), "queue", t.queueSel)
		return
	}
	if r == RegQueueReady && v == 0 && !q.ready {
		// Already not ready: nothing changes. Linux's vm_del_vq does this after a reset.
		return
	}
	if t.status&virtio.StatusDriverOK != 0 || t.status&virtio.StatusFeaturesOK == 0 {
		t.warn("queue register written outside queue setup", "reg", r.String(), "status", uint32(t.status))
		return
	}
	if r == RegQueueReady {
		q.ready = v&1 != 0
		return
	}
	if q.ready {
		// §4.2.3.2: the driver must not change a queue's configuration while it is ready.
		t.warn("queue register written while the queue is ready", "reg", r.String(), "queue", t.queueSel)
		return
	}
	switch r {
	case RegQueueNum:
		q.num = v
	case RegQueueDescLow:
		q.desc = setLow(q.desc, v)
	case RegQueueDescHigh:
		q.desc = setHigh(q.desc, v)
	case RegQueueDriverLow:
		q.driver = setLow(q.driver, v)
	case RegQueueDriverHigh:
		q.driver = setHigh(q.driver, v)
	case RegQueueDeviceLow:
		q.device = setLow(q.device, v)
	case RegQueueDeviceHigh:
		q.device = setHigh(q.device, v)
	}
}

func setLow(x uint64, v uint32) uint64  { return x&^0xffffffff | uint64(v) }
func setHigh(x uint64, v uint32) uint64 { return x&0xffffffff | uint64(v)<<32 }
