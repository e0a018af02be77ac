package virtiotest

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/vmbench/runner/vmm/guestmem"
)

// DefaultMemSize is the guest RAM NewDriver allocates when given none.
const DefaultMemSize = 128 << 20

// allocBase is the lowest GPA the allocator hands out; page zero and the first pages stay
// unused so a zero address in a descriptor is always a bug in the test, not a real buffer.
const allocBase = 0x10000

// minBlock is the smallest allocation; every block is aligned to min(its size, 4096).
const minBlock = 64

// Driver is the guest side of one or more virtqueues: it owns an allocator over guest RAM
// and creates DriverQueues in it. It is safe for concurrent use.
type Driver struct {
	mem      *guestmem.Memory
	ownsMem  bool
	limit    uint64 // end of the first RAM region
	mu       sync.Mutex
	next     uint64              // bump pointer
	freeList map[uint64][]uint64 // block size → free blocks
	sizes    map[uint64]uint64   // allocated block GPA → block size
}

// NewDriver returns a driver over mem. With mem nil it maps DefaultMemSize bytes of guest
// RAM itself (and panics if it cannot: this is test setup) and Close unmaps it.
func NewDriver(mem *guestmem.Memory) *Driver {
	d := &Driver{mem: mem, next: allocBase, freeList: map[uint64][]uint64{}, sizes: map[uint64]uint64{}}
	if mem == nil {
		m, err := guestmem.New(DefaultMemSize, guestmem.Options{})
		if err != nil {
			panic(fmt.Sprintf("virtiotest: map guest RAM: %v", err))
		}
		d.mem, d.ownsMem = m, true
	}
	if rs := d.mem.Regions(); len(rs) > 0 {
		d.limit = rs[0].GuestAddr + rs[0].Size
	}
	return d
}

// Mem is the guest RAM the driver works in.
func (d *Driver) Mem() *guestmem.Memory { return d.mem }

// Close unmaps guest RAM if NewDriver allocated it.
func (d *Driver) Close() error {
	if d.ownsMem {
		d.ownsMem = false
		return d.mem.Close()
	}
	return nil
}

// ErrNoMemory is returned when guest RAM is exhausted.
var ErrNoMemory = errors.New("virtiotest: guest RAM exhausted")

// Alloc reserves size bytes of zeroed guest RAM aligned to align (at most 4096) and returns
// its GPA. Blocks are rounded up to a power of two (at least 64 bytes).
func (d *Driver) Alloc(size, align uint64) (uint64, error) {
	if align > 4096 || align&(align-1) != 0 {
		return 0, fmt.Errorf("virtiotest: alloc: alignment %d must be a power of two ≤ 4096", align)
	}
	block := uint64(minBlock)
	if size > block {
		block = 1 << bits.Len64(size-1)
	}
	block = max(block, align)
	d.mu.Lock()
	var gpa uint64
	if fl := d.freeList[block]; len(fl) > 0 {
		gpa = fl[len(fl)-1]
		d.freeList[block] = fl[:len(fl)-1]
	} else {
		a := min(block, 4096)
		start := (d.next + a - 1) &^ (a - 1)
		if start+block > d.limit || start+block < start {
			d.mu.Unlock()
			return 0, fmt.Errorf("%w: %d bytes requested, %d in use", ErrNoMemory, size, d.next)
		}
		gpa, d.next = start, start+block
	}
	d.sizes[gpa] = block
	d.mu.Unlock()
	b, err := d.mem.Slice(gpa, block)
	if err != nil {
		return 0, err
	}
	clear(b)
	return gpa, nil
}

// Free returns a block from Alloc. Freeing an address Alloc did not return is ignored.
func (d *Driver) Free(gpa uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	block, ok := d.sizes[gpa]
	if !ok {
		return
	}
	delete(d.sizes, gpa)
	d.freeList[block] = append(d.freeList[block], gpa)
}

// InUse is the number of bytes currently allocated (rounded block sizes).
func (d *Driver) InUse() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n uint64
	for _, s := range d.sizes {
		n += s
	}
	return n
}

// AddQueue lays out an empty split virtqueue of size entries (a power of two) in guest RAM:
// descriptor table, available ring and used ring, each with its EVENT_IDX trailer. eventIdx
// says whether VIRTIO_F_EVENT_IDX is in effect for this queue. It panics if size is invalid
// or RAM is exhausted (test setup).
func (d *Driver) AddQueue(size uint16, eventIdx bool) *DriverQueue {
	if size == 0 || size&(size-1) != 0 || size > 32768 {
		panic(fmt.Sprintf("virtiotest: queue size %d is not a power of two ≤ 32768", size))
	}
	n := uint64(size)
	desc, err1 := d.Alloc(16*n, 16)
	avail, err2 := d.Alloc(6+2*n, 2)
	used, err3 := d.Alloc(6+8*n, 4)
	if err := errors.Join(err1, err2, err3); err != nil {
		panic(fmt.Sprintf("virtiotest: lay out queue: %v", err))
	}
	q := &DriverQueue{
		d:             d,
		size:          size,
		desc:          desc,
		avail:         avail,
		used:          used,
		eventIdx:      eventIdx,
		inflight:      map[uint16]*inflight{},
		autoUsedEvent: true,
	}
	for i := int(size) - 1; i >= 0; i-- {
		q.free = append(q.free, uint16(i))
	}
	return q
}
