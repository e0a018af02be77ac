package mmio_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/mmio"
	"github.com/vmbench/runner/vmm/guestmem"
)

var quiet = slog.New(slog.DiscardHandler)

// recorder is a virtio.Device that records what the transport asks of it and checks the
// transport's promises: Activate only with acceptable features and never twice without a
// Reset in between.
type recorder struct {
	features    uint64
	maxSizes    []uint16
	activateErr error

	mu        sync.Mutex
	config    [16]byte
	active    bool
	args      virtio.ActivateArgs
	activates int
	resets    int
	closes    int
	violation error // a broken transport promise
	notifies  [4]atomic.Uint64
}

func newRecorder() *recorder {
	return &recorder{
		features: virtio.FeatureVersion1 | virtio.FeatureRingEventIdx | virtio.FeatureRingIndirectDesc | 1<<3 | virtio.FeatureRingPacked,
		maxSizes: []uint16{256, 64},
	}
}

func (r *recorder) ID() virtio.DeviceID     { return virtio.DeviceBlock }
func (r *recorder) Features() uint64        { return r.features }
func (r *recorder) QueueMaxSizes() []uint16 { return r.maxSizes }

func (r *recorder) ReadConfig(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(data)
	if off < uint64(len(r.config)) {
		copy(data, r.config[off:])
	}
}

func (r *recorder) WriteConfig(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off < uint64(len(r.config)) {
		copy(r.config[off:], data)
	}
}

func (r *recorder) Activate(a virtio.ActivateArgs) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.active:
		r.violation = errors.New("Activate while active")
	case a.Features&^r.features != 0:
		r.violation = fmt.Errorf("activated with features %#x not offered (%#x)", a.Features, r.features)
	case a.Features&virtio.FeatureVersion1 == 0:
		r.violation = errors.New("activated without VERSION_1")
	case a.Features&virtio.FeatureRingPacked != 0:
		r.violation = errors.New("activated with the packed ring")
	case len(a.Queues) != len(r.maxSizes):
		r.violation = fmt.Errorf("activated with %d queues, want %d", len(a.Queues), len(r.maxSizes))
	}
	if r.activateErr != nil {
		return r.activateErr
	}
	r.active = true
	r.activates++
	r.args = a
	return nil
}

func (r *recorder) Notify(q int) {
	if q < 0 || q >= len(r.notifies) {
		r.mu.Lock()
		r.violation = fmt.Errorf("Notify(%d)", q)
		r.mu.Unlock()
		return
	}
	r.notifies[q].Add(1)
}

func (r *recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active = false
	r.resets++
}

func (r *recorder) Close() error {
	r.Reset()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closes++
	return nil
}

func (r *recorder) state() (active bool, activates, resets int, args virtio.ActivateArgs, violation error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active, r.activates, r.resets, r.args, r.violation
}

// countingIRQ counts Trigger calls.
type countingIRQ struct{ n atomic.Uint64 }

func (c *countingIRQ) Trigger() error { c.n.Add(1); return nil }

// bench is a transport over a recorder with helpers for 32-bit register access.
type bench struct {
	t   *mmio.Transport
	dev *recorder
	irq *countingIRQ
	mem *guestmem.Memory
}

func newBench(mem *guestmem.Memory, dev *recorder) *bench {
	irq := &countingIRQ{}
	return &bench{t: mmio.New(dev, mem, irq, quiet), dev: dev, irq: irq, mem: mem}
}

func (b *bench) read(r mmio.Reg) uint32 {
	var d [4]byte
	b.t.Read(uint64(r), d[:])
	return binary.LittleEndian.Uint32(d[:])
}

func (b *bench) write(r mmio.Reg, v uint32) {
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], v)
	b.t.Write(uint64(r), d[:])
}

func (b *bench) status() virtio.Status { return virtio.Status(b.read(mmio.RegStatus)) }

// negotiate performs the driver steps up to FEATURES_OK, accepting features.
func (b *bench) negotiate(features uint64) {
	b.write(mmio.RegStatus, 0)
	b.write(mmio.RegStatus, uint32(virtio.StatusAcknowledge))
	b.write(mmio.RegStatus, uint32(virtio.StatusAcknowledge|virtio.StatusDriver))
	b.write(mmio.RegDriverFeaturesSel, 0)
	b.write(mmio.RegDriverFeatures, uint32(features))
	b.write(mmio.RegDriverFeaturesSel, 1)
	b.write(mmio.RegDriverFeatures, uint32(features>>32))
	b.write(mmio.RegStatus, uint32(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK))
}

// queue configures queue q with the given size and ring addresses and marks it ready.
func (b *bench) queue(q, size uint32, desc, avail, used uint64) {
	b.write(mmio.RegQueueSel, q)
	b.write(mmio.RegQueueNum, size)
	b.write(mmio.RegQueueDescLow, uint32(desc))
	b.write(mmio.RegQueueDescHigh, uint32(desc>>32))
	b.write(mmio.RegQueueDriverLow, uint32(avail))
	b.write(mmio.RegQueueDriverHigh, uint32(avail>>32))
	b.write(mmio.RegQueueDeviceLow, uint32(used))
	b.write(mmio.RegQueueDeviceHigh, uint32(used>>32))
	b.write(mmio.RegQueueReady, 1)
}

const driverOK = virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK
