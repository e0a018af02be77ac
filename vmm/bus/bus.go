// Package bus dispatches guest port I/O (PIO) and MMIO exits to the devices that own the
// addresses.
//
// A Bus holds non-overlapping address ranges, each served by one Device. The vCPU run loop
// calls Read or Write with the exit's address and data; the device sees the offset inside
// its own range. An access that no device claims, or that straddles the end of a range, is
// "unclaimed": reads return all ones (as on real hardware with nothing decoding the
// address) and writes are dropped. Both are counted, so a misbehaving guest is visible but
// never fatal.
//
// Registration happens before the vCPUs start; lookups afterwards take no lock.
package bus

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Device is the part of an emulated device that the guest reaches through loads and stores
// (or in/out instructions). Implementations are called from vCPU threads, possibly
// concurrently from several vCPUs, and must not block for long: slow work belongs on the
// device's own goroutine.
type Device interface {
	// Read fills data (1, 2, 4 or 8 bytes) with the value at offset within the device range.
	Read(offset uint64, data []byte)
	// Write stores data (1, 2, 4 or 8 bytes) at offset within the device range.
	Write(offset uint64, data []byte)
}

type entry struct {
	base, size uint64
	name       string
	dev        Device
}

// Bus is one address space: I/O ports or guest-physical MMIO.
type Bus struct {
	name string

	mu      sync.Mutex // serialises Register
	entries atomic.Pointer[[]entry]

	unclaimedReads  atomic.Uint64
	unclaimedWrites atomic.Uint64
}

// New returns an empty bus; name ("pio", "mmio") appears in errors.
func New(name string) *Bus {
	b := &Bus{name: name}
	b.entries.Store(&[]entry{})
	return b
}

// Register makes dev serve [base, base+size). Ranges must not overlap.
func (b *Bus) Register(base, size uint64, name string, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("%s bus: %s: invalid range %#x+%#x", b.name, name, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.entries.Load()
	for _, e := range old {
		if base < e.base+e.size && e.base < base+size {
			return fmt.Errorf("%s bus: %s [%#x, %#x) overlaps %s [%#x, %#x)",
				b.name, name, base, base+size, e.name, e.base, e.base+e.size)
		}
	}
	next := append(append([]entry(nil), old...), entry{base: base, size: size, name: name, dev: dev})
	sort.Slice(next, func(i, j int) bool { return next[i].base < next[j].base })
	b.entries.Store(&next)
	return nil
}

// find returns the device whose range holds the whole access [addr, addr+n).
func (b *Bus) find(addr uint64, n int) (Device, uint64, bool) {
	es := *b.entries.Load()
	i := sort.Search(len(es), func(i int) bool { return es[i].base+es[i].size > addr })
	if i == len(es) || addr < es[i].base {
		return nil, 0, false
	}
	off := addr - es[i].base
	if off+uint64(n) > es[i].size || off+uint64(n) < off {
		return nil, 0, false
	}
	return es[i].dev, off, true
}

// Read dispatches a guest read; it reports whether a device claimed it. Unclaimed reads
// return all ones.
func (b *Bus) Read(addr uint64, data []byte) bool {
	if dev, off, ok := b.find(addr, len(data)); ok {
		dev.Read(off, data)
		return true
	}
	for i := range data {
		data[i] = 0xff
	}
	b.unclaimedReads.Add(1)
	return false
}

// Write dispatches a guest write; it reports whether a device claimed it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	if dev, off, ok := b.find(addr, len(data)); ok {
		dev.Write(off, data)
		return true
	}
	b.unclaimedWrites.Add(1)
	return false
}

// Unclaimed returns how many reads and writes no device claimed.
func (b *Bus) Unclaimed() (reads, writes uint64) {
	return b.unclaimedReads.Load(), b.unclaimedWrites.Load()
}
