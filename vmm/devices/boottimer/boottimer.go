package boottimer

import (
	"sync/atomic"
	"time"
)

const (
	// Addr is the device's guest-physical MMIO address; Size its extent (one page, so the
	// first virtio-mmio device can sit on the next page).
	Addr = 0xc000_0000
	Size = 0x1000

	// Magic is the value that stamps the time (Firecracker's MAGIC_VALUE_SIGNAL_GUEST_BOOT_COMPLETE).
	Magic = 123
)

// Device is the boot timer. Start sets time zero; the first magic write after it records
// the boot time. Safe for concurrent use.
type Device struct {
	start atomic.Pointer[time.Time]
	stamp atomic.Int64 // nanoseconds since start; 0 = not yet
}

// New returns a boot timer; call Start when the VM starts running.
func New() *Device { return &Device{} }

// Start records time zero (when the first vCPU is about to enter the guest).
func (d *Device) Start(t time.Time) { d.start.Store(&t) }

// Read implements bus.Device: the register reads as zero.
func (d *Device) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
}

// Write implements bus.Device: a one-byte write of Magic at offset 0 stamps the time.
func (d *Device) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) != 1 || data[0] != Magic {
		return
	}
	start := d.start.Load()
	if start == nil {
		return
	}
	ns := max(int64(time.Since(*start)), 1)
	d.stamp.CompareAndSwap(0, ns)
}

// BootTime returns the recorded time from Start to the guest's first magic write.
func (d *Device) BootTime() (time.Duration, bool) {
	ns := d.stamp.Load()
	return time.Duration(ns), ns != 0
}
