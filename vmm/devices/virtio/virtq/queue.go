package virtq

import (
	"errors"
	"fmt"

	"github.com/vmbench/runner/vmm/guestmem"
)

// Descriptor flags (virtio 1.2 §2.7.5).
const (
	DescFNext     uint16 = 1 // VIRTQ_DESC_F_NEXT
	DescFWrite    uint16 = 2 // VIRTQ_DESC_F_WRITE
	DescFIndirect uint16 = 4 // VIRTQ_DESC_F_INDIRECT
)

// Ring flags.
const (
	AvailFNoInterrupt uint16 = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	UsedFNoNotify     uint16 = 1 // VIRTQ_USED_F_NO_NOTIFY
)

// MaxSize is the largest queue size the split ring allows (§2.7: 32768).
const MaxSize = 32768

// DescSize is the size of one descriptor in bytes.
const DescSize = 16

// ErrInvalidAvailIdx means the driver published more available entries than the ring holds:
// the queue can no longer be trusted.
var ErrInvalidAvailIdx = errors.New("virtq: available index runs ahead of the ring")

// Config is the queue geometry the driver configured and the features that change how the
// rings are read.
type Config struct {
	Size      uint16 // number of entries, a power of two ≤ MaxSize
	DescTable uint64 // GPA of the descriptor table, 16-byte aligned
	AvailRing uint64 // GPA of the available ring (driver area), 2-byte aligned
	UsedRing  uint64 // GPA of the used ring (device area), 4-byte aligned
	// EventIdx: VIRTIO_F_EVENT_IDX was negotiated (used_event/avail_event fields).
	EventIdx bool
	// Indirect: VIRTIO_F_INDIRECT_DESC was negotiated.
	Indirect bool
}

// Queue is the device side of one split virtqueue.
type Queue struct {
	mem *guestmem.Memory
	cfg Config

	lastAvail uint16 // next available-ring slot to consume
	usedIdx   uint16 // next used-ring slot to fill (the device's copy of used.idx)
	// signalledUsed is used.idx as of the last interrupt decision (the "old" index of
	// vring_need_event).
	signalledUsed uint16
}

// New validates the geometry and returns a queue positioned at index 0.
func New(mem *guestmem.Memory, cfg Config) (*Queue, error) {
	if cfg.Size == 0 || cfg.Size > MaxSize || cfg.Size&(cfg.Size-1) != 0 {
		return nil, fmt.Errorf("virtq: size %d: must be a power of two in [1, %d]", cfg.Size, MaxSize)
	}
	n := uint64(cfg.Size)
	areas := []struct {
		name       string
		addr, size uint64
		align      uint64
	}{
		{"descriptor table", cfg.DescTable, DescSize * n, 16},
		{"available ring", cfg.AvailRing, 6 + 2*n, 2},
		{"used ring", cfg.UsedRing, 6 + 8*n, 4},
	}
	for _, a := range areas {
		if a.addr%a.align != 0 {
			return nil, fmt.Errorf("virtq: %s at %#x: not %d-byte aligned", a.name, a.addr, a.align)
		}
		if !mem.Contains(a.addr, a.size) {
			return nil, fmt.Errorf("virtq: %s [%#x, +%#x): %w", a.name, a.addr, a.size, guestmem.ErrOutOfRange)
		}
	}
	return &Queue{mem: mem, cfg: cfg}, nil
}

// Size is the number of entries in the queue.
func (q *Queue) Size() uint16 { return q.cfg.Size }

// Config returns the geometry the queue was created with.
func (q *Queue) Config() Config { return q.cfg }

// availIdx reads avail.idx (acquire).
func (q *Queue) availIdx() (uint16, error) {
	return q.mem.AtomicLoad16(q.cfg.AvailRing + 2)
}

// pending returns how many chains the driver has made available and we have not consumed.
func (q *Queue) pending() (uint16, error) {
	idx, err := q.availIdx()
	if err != nil {
		return 0, err
	}
	n := idx - q.lastAvail
	if n > q.cfg.Size {
		return 0, fmt.Errorf("%w: avail.idx %d, last seen %d, size %d", ErrInvalidAvailIdx, idx, q.lastAvail, q.cfg.Size)
	}
	return n, nil
}

// HasAvailable reports whether Pop would return a chain.
func (q *Queue) HasAvailable() (bool, error) {
	n, err := q.pending()
	return n > 0, err
}

// Pop consumes the next available descriptor chain. It returns (nil, nil) when the ring is
// empty. A malformed chain is consumed and returned as a *ChainError whose Head, when
// HeadValid, should be given back with Push(head, 0). ErrInvalidAvailIdx means the whole
// queue is broken.
func (q *Queue) Pop() (*Chain, error) {
	n, err := q.pending()
	if err != nil || n == 0 {
		return nil, err
	}
	slot := uint64(q.lastAvail % q.cfg.Size)
	head, err := q.mem.Uint16(q.cfg.AvailRing + 4 + 2*slot)
	if err != nil {
		return nil, err // cannot happen: the ring was validated in New
	}
	q.lastAvail++
	c, err := q.walk(head)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Push returns a chain to the driver: it appends {head, written} to the used ring and
// publishes the new used index. written is how many bytes the device wrote into the chain's
// writable buffers.
func (q *Queue) Push(head uint16, written uint32) error {
	slot := uint64(q.usedIdx % q.cfg.Size)
	elem := q.cfg.UsedRing + 4 + 8*slot
	if err := q.mem.PutUint32(elem, uint32(head)); err != nil {
		return err
	}
	if err := q.mem.PutUint32(elem+4, written); err != nil {
		return err
	}
	q.usedIdx++
	// Release: the entry above is visible before the index that covers it.
	return q.mem.AtomicStore16(q.cfg.UsedRing+2, q.usedIdx)
}

// NeedsInterrupt decides, after one or more Push calls, whether the driver wants an
// interrupt now (§2.7.10): with EVENT_IDX when used.idx has passed avail.used_event since the
// last decision, else unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT. It returns false when
// nothing was pushed since the last decision.
func (q *Queue) NeedsInterrupt() (bool, error) {
	old := q.signalledUsed
	now := q.usedIdx
	if old == now {
		return false, nil
	}
	q.signalledUsed = now
	if q.cfg.EventIdx {
		usedEvent, err := q.mem.AtomicLoad16(q.cfg.AvailRing + 4 + 2*uint64(q.cfg.Size))
		if err != nil {
			return true, err
		}
		// vring_need_event: (u16)(new - event - 1) < (u16)(new - old)
		return now-usedEvent-1 < now-old, nil
	}
	flags, err := q.mem.AtomicLoad16(q.cfg.AvailRing)
	if err != nil {
		return true, err
	}
	return flags&AvailFNoInterrupt == 0, nil
}

// EnableNotifications asks the driver to notify (kick) the device when it makes new buffers
// available, then re-checks the ring to close the race with a driver that added buffers
// before it saw the request. It reports whether buffers are already available, in which case
// the caller should keep processing instead of waiting for a kick.
func (q *Queue) EnableNotifications() (bool, error) {
	var err error
	if q.cfg.EventIdx {
		// avail_event = next index we will consume: kick us when you publish it.
		err = q.mem.AtomicStore16(q.cfg.UsedRing+4+8*uint64(q.cfg.Size), q.lastAvail)
	} else {
		err = q.mem.AtomicStore16(q.cfg.UsedRing, 0)
	}
	if err != nil {
		return false, err
	}
	return q.HasAvailable()
}

// DisableNotifications tells the driver that kicks are not needed (the device is already
// processing). With EVENT_IDX this is implicit: avail_event stays behind until
// EnableNotifications moves it.
func (q *Queue) DisableNotifications() error {
	if q.cfg.EventIdx {
		return nil
	}
	return q.mem.AtomicStore16(q.cfg.UsedRing, UsedFNoNotify)
}

// ChainError describes a malformed descriptor chain.
type ChainError struct {
	Head      uint16
	HeadValid bool // Head is a valid descriptor index and may be returned with Push
	Reason    string
	Err       error // underlying error, if any (e.g. guestmem.ErrOutOfRange)
}

func (e *ChainError) Error() string {
	s := fmt.Sprintf("virtq: chain at descriptor %d: %s", e.Head, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ChainError) Unwrap() error { return e.Err }

// desc reads descriptor i of the table at base (which holds n entries).
func (q *Queue) desc(base uint64, i uint16) (addr uint64, length uint32, flags, next uint16, err error) {
	b, err := q.mem.Slice(base+uint64(i)*DescSize, DescSize)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	// Copy each field out once; the guest may rewrite the table concurrently.
	addr = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	length = uint32(b[8]) | uint32(b[9])<<8 | uint32(b[10])<<16 | uint32(b[11])<<24
	flags = uint16(b[12]) | uint16(b[13])<<8
	next = uint16(b[14]) | uint16(b[15])<<8
	return addr, length, flags, next, nil
}

// walk follows the chain starting at head and resolves every buffer to host memory.
func (q *Queue) walk(head uint16) (*Chain, error) {
	size := q.cfg.Size
	fail := func(valid bool, reason string, err error) (*Chain, error) {
		return nil, &ChainError{Head: head, HeadValid: valid, Reason: reason, Err: err}
	}
	if head >= size {
		return fail(false, fmt.Sprintf("head index %d out of range (size %d)", head, size), nil)
	}
	c := &Chain{Head: head}
	table, tableLen := q.cfg.DescTable, size // the table we are walking
	i := head
	indirect := false
	// budget is how many more descriptors the table being walked may contribute: the queue
	// size for the descriptor table, the entry count for an indirect table. A table of n
	// entries cannot hold a longer loop-free chain, so running out means a loop.
	budget := int(size)
	for {
		budget--
		if budget < 0 {
			return fail(true, "chain longer than the queue size (loop?)", nil)
		}
		addr, length, flags, next, err := q.desc(table, i)
		if err != nil {
			return fail(true, fmt.Sprintf("descriptor %d", i), err)
		}
		if flags&DescFIndirect != 0 {
			switch {
			case !q.cfg.Indirect:
				return fail(true, "indirect descriptor without VIRTIO_F_INDIRECT_DESC", nil)
			case indirect:
				return fail(true, "nested indirect descriptor", nil)
			case flags&DescFNext != 0:
				return fail(true, "indirect descriptor with NEXT set", nil)
			case length == 0 || length%DescSize != 0:
				return fail(true, fmt.Sprintf("indirect table length %d not a non-zero multiple of 16", length), nil)
			case uint64(length)/DescSize > uint64(size):
				return fail(true, fmt.Sprintf("indirect table of %d entries exceeds queue size %d", length/DescSize, size), nil)
			}
			if !q.mem.Contains(addr, uint64(length)) {
				return fail(true, "indirect table", fmt.Errorf("[%#x, +%#x): %w", addr, length, guestmem.ErrOutOfRange))
			}
			// The indirect descriptor itself does not count against the table it points
			// to: a full table of size entries is legal (§2.7.5.3.1 bounds the table by
			// the queue size; Linux virtio-blk sends seg_max+2 entries).
			table, tableLen, i, indirect = addr, uint16(length/DescSize), 0, true
			budget = int(tableLen)
			continue
		}
		if length > 0 {
			buf, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return fail(true, fmt.Sprintf("buffer of descriptor %d", i), err)
			}
			if flags&DescFWrite != 0 {
				c.Writable = append(c.Writable, buf)
				c.writableLen += uint64(length)
			} else {
				if len(c.Writable) > 0 {
					return fail(true, "device-readable buffer after a device-writable one", nil)
				}
				c.Readable = append(c.Readable, buf)
				c.readableLen += uint64(length)
			}
		}
		if flags&DescFNext == 0 {
			return c, nil
		}
		if next >= tableLen {
			return fail(true, fmt.Sprintf("next index %d out of range (%d entries)", next, tableLen), nil)
		}
		i = next
	}
}
