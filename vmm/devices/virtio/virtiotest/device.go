package virtiotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/mmio"
	"github.com/vmbench/runner/vmm/guestmem"
)

// IRQ is a fake interrupt line for mmio.Transport: it counts Trigger calls and wakes
// waiters.
type IRQ struct {
	mu    sync.Mutex
	count uint64
	ch    chan struct{}
}

// NewIRQ returns an IRQ that has not fired.
func NewIRQ() *IRQ { return &IRQ{ch: make(chan struct{})} }

// Trigger records one interrupt and wakes everyone waiting on Wait.
func (i *IRQ) Trigger() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.count++
	close(i.ch)
	i.ch = make(chan struct{})
	return nil
}

// Count is the number of Trigger calls so far.
func (i *IRQ) Count() uint64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.count
}

// Wait returns a channel that is closed by the next Trigger.
func (i *IRQ) Wait() <-chan struct{} {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.ch
}

// DefaultQueueSize caps the queue sizes Start chooses when Options.QueueSizes has none.
const DefaultQueueSize = 256

// Options configure Start.
type Options struct {
	// Mem is guest RAM; nil maps DefaultMemSize bytes (freed by Device.Close).
	Mem *guestmem.Memory
	// QueueSizes is the size of each queue; a missing or zero entry means
	// min(QueueNumMax, DefaultQueueSize).
	QueueSizes []uint16
	// ExcludeFeatures are offered features the driver declines (zero: accept everything
	// offered).
	ExcludeFeatures uint64
	// Logger receives the transport's warnings (nil: slog.Default()).
	Logger *slog.Logger
}

// Device is a virtio device brought up through the real mmio register interface, with a
// DriverQueue per queue.
type Device struct {
	Driver    *Driver
	Transport *mmio.Transport
	IRQ       *IRQ
	Queues    []*DriverQueue
	// Features is the negotiated feature set.
	Features uint64
}

// Start wraps dev in an mmio.Transport and initialises it the way Linux does (§3.1.1):
// reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK, queue setup with
// QueueReady, DRIVER_OK. Kicks on the returned queues write the QueueNotify register.
// Start takes ownership of dev: on failure it closes it.
func Start(dev virtio.Device, opts Options) (*Device, error) {
	d := &Device{Driver: NewDriver(opts.Mem), IRQ: NewIRQ()}
	d.Transport = mmio.New(dev, d.Driver.Mem(), d.IRQ, opts.Logger)
	if err := d.init(opts); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

func (d *Device) init(opts Options) error {
	if m, v := d.Reg(mmio.RegMagicValue), d.Reg(mmio.RegVersion); m != mmio.MagicValue || v != mmio.Version {
		return fmt.Errorf("virtiotest: magic %#x version %d", m, v)
	}
	d.SetReg(mmio.RegStatus, 0)
	status := virtio.StatusAcknowledge
	d.SetReg(mmio.RegStatus, uint32(status))
	status |= virtio.StatusDriver
	d.SetReg(mmio.RegStatus, uint32(status))

	d.SetReg(mmio.RegDeviceFeaturesSel, 0)
	offered := uint64(d.Reg(mmio.RegDeviceFeatures))
	d.SetReg(mmio.RegDeviceFeaturesSel, 1)
	offered |= uint64(d.Reg(mmio.RegDeviceFeatures)) << 32
	d.Features = offered &^ opts.ExcludeFeatures
	d.SetReg(mmio.RegDriverFeaturesSel, 0)
	d.SetReg(mmio.RegDriverFeatures, uint32(d.Features))
	d.SetReg(mmio.RegDriverFeaturesSel, 1)
	d.SetReg(mmio.RegDriverFeatures, uint32(d.Features>>32))
	status |= virtio.StatusFeaturesOK
	d.SetReg(mmio.RegStatus, uint32(status))
	if d.Status()&virtio.StatusFeaturesOK == 0 {
		return fmt.Errorf("virtiotest: device refused features %#x (offered %#x)", d.Features, offered)
	}

	eventIdx := d.Features&virtio.FeatureRingEventIdx != 0
	for i := 0; i < d.Transport.NumQueues(); i++ {
		d.SetReg(mmio.RegQueueSel, uint32(i))
		maxSize := d.Reg(mmio.RegQueueNumMax)
		if maxSize == 0 {
			return fmt.Errorf("virtiotest: queue %d: QueueNumMax is 0", i)
		}
		size := uint16(min(maxSize, DefaultQueueSize))
		if i < len(opts.QueueSizes) && opts.QueueSizes[i] != 0 {
			size = opts.QueueSizes[i]
		}
		q := d.Driver.AddQueue(size, eventIdx)
		cfg := q.Config()
		d.SetReg(mmio.RegQueueNum, uint32(size))
		d.setReg64(mmio.RegQueueDescLow, mmio.RegQueueDescHigh, cfg.DescTable)
		d.setReg64(mmio.RegQueueDriverLow, mmio.RegQueueDriverHigh, cfg.AvailRing)
		d.setReg64(mmio.RegQueueDeviceLow, mmio.RegQueueDeviceHigh, cfg.UsedRing)
		d.SetReg(mmio.RegQueueReady, 1)
		index := uint32(i)
		q.notify = func() { d.SetReg(mmio.RegQueueNotify, index) }
		q.wake = d.IRQ.Wait
		d.Queues = append(d.Queues, q)
	}
	status |= virtio.StatusDriverOK
	d.SetReg(mmio.RegStatus, uint32(status))
	if s := d.Status(); s&virtio.StatusDeviceNeedsReset != 0 || s&virtio.StatusDriverOK == 0 {
		return fmt.Errorf("virtiotest: device did not start: status %#x", uint32(s))
	}
	return nil
}

// Reinit resets the device through the Status register and initialises it again on
// fresh queues (Queues is replaced), as a driver does after DEVICE_NEEDS_RESET or a
// failed probe. The old queues' guest memory is not reclaimed.
func (d *Device) Reinit(opts Options) error {
	d.SetReg(mmio.RegStatus, 0)
	d.Queues = nil
	return d.init(opts)
}

// Reg reads a 32-bit register through the transport, as a vCPU would.
func (d *Device) Reg(r mmio.Reg) uint32 {
	var b [4]byte
	d.Transport.Read(uint64(r), b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// SetReg writes a 32-bit register through the transport.
func (d *Device) SetReg(r mmio.Reg, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.Transport.Write(uint64(r), b[:])
}

func (d *Device) setReg64(lo, hi mmio.Reg, v uint64) {
	d.SetReg(lo, uint32(v))
	d.SetReg(hi, uint32(v>>32))
}

// Status reads the device status register.
func (d *Device) Status() virtio.Status { return virtio.Status(d.Reg(mmio.RegStatus)) }

// ReadConfig reads n bytes of the device configuration space at off, one byte-wide access
// per byte (any width is legal there).
func (d *Device) ReadConfig(off uint64, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		d.Transport.Read(mmio.ConfigOffset+off+uint64(i), out[i:i+1])
	}
	return out
}

// AckInterrupts reads InterruptStatus and acknowledges every bit set, as a driver's
// interrupt handler does; it returns the bits.
func (d *Device) AckInterrupts() uint32 {
	v := d.Reg(mmio.RegInterruptStatus)
	if v != 0 {
		d.SetReg(mmio.RegInterruptACK, v)
	}
	return v
}

// Close closes the transport (which closes the device) and any guest RAM Start mapped.
func (d *Device) Close() error {
	return errors.Join(d.Transport.Close(), d.Driver.Close())
}
