package virtiotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

// ErrQueueFull is returned by Add when the ring has too few free descriptors.
var ErrQueueFull = errors.New("virtiotest: not enough free descriptors")

// ErrTimeout is returned by WaitUsed and SubmitWait when the device did not answer in time.
var ErrTimeout = errors.New("virtiotest: timed out waiting for the device")

// Used is one completed chain: the head the device returned, the length it reported in
// the used ring, and copies of what the device could write. Data and Writable are nil for
// chains published with PublishRaw or for a head the driver never made available.
//
// A head can be reused by the next Add as soon as its completion has been harvested (by
// Used, WaitUsed, or an Add that found the ring full), so match completions to requests by
// content or by order, not by head alone, when several share a head over time.
type Used struct {
	Head uint16
	Len  uint32
	// Data is the first Len bytes of the chain's writable buffers (capped at their total
	// size): what the device says it wrote.
	Data []byte
	// Writable is all of the chain's writable buffers, concatenated (e.g. a virtio-blk
	// status byte is its last byte whatever Len says). Data is a prefix of it.
	Writable []byte
}

// UsedElem is one raw used-ring entry (struct virtq_used_elem).
type UsedElem struct {
	ID  uint32
	Len uint32
}

type segment struct {
	gpa uint64
	len uint32
}

// inflight is the driver's record of a published chain.
type inflight struct {
	descs    []uint16  // ring descriptors to return to the free list
	blocks   []uint64  // guest RAM blocks to free (buffers, indirect table)
	writable []segment // where the device may write, in chain order
}

// DriverQueue is the driver side of one split virtqueue. It is safe for concurrent use.
type DriverQueue struct {
	d                 *Driver
	size              uint16
	desc, avail, used uint64
	eventIdx          bool

	// Set by Start when the queue belongs to a Device.
	notify func()
	wake   func() <-chan struct{}

	mu            sync.Mutex
	free          []uint16 // free descriptor indices (a stack)
	availIdx      uint16   // the driver's copy of avail.idx
	kickedIdx     uint16   // avail.idx at the last notification decision
	lastUsed      uint16   // next used-ring slot to harvest
	inflight      map[uint16]*inflight
	done          []Used // harvested, not yet returned
	discard       bool
	autoUsedEvent bool
	deviceErr     error // the device broke the used ring
}

// Config is the queue geometry, for virtq.New or the mmio queue registers. Indirect is
// left false: it depends on negotiation, not on the layout.
func (q *DriverQueue) Config() virtq.Config {
	return virtq.Config{Size: q.size, DescTable: q.desc, AvailRing: q.avail, UsedRing: q.used, EventIdx: q.eventIdx}
}

// Size is the number of ring entries.
func (q *DriverQueue) Size() uint16 { return q.size }

// Add copies each readable buffer into freshly allocated guest RAM, allocates writable
// buffers of the given lengths, links them into one descriptor chain (readable first) and
// publishes its head in the available ring. It does not notify the device: call Kick.
func (q *DriverQueue) Add(readable [][]byte, writableLens []int) (uint16, error) {
	return q.add(readable, writableLens, false)
}

// AddIndirect is Add with the buffers described by an indirect descriptor table
// (VIRTQ_DESC_F_INDIRECT): the chain occupies one ring descriptor.
func (q *DriverQueue) AddIndirect(readable [][]byte, writableLens []int) (uint16, error) {
	return q.add(readable, writableLens, true)
}

// Submit is Add followed by Kick.
func (q *DriverQueue) Submit(readable [][]byte, writableLens []int) (uint16, error) {
	head, err := q.Add(readable, writableLens)
	if err != nil {
		return 0, err
	}
	q.Kick()
	return head, nil
}

// SubmitWait is Submit that waits up to timeout for the device to return descriptors when
// the ring is full.
func (q *DriverQueue) SubmitWait(readable [][]byte, writableLens []int, timeout time.Duration) (uint16, error) {
	deadline := time.Now().Add(timeout)
	for {
		var wake <-chan struct{}
		if q.wake != nil {
			wake = q.wake()
		}
		head, err := q.Submit(readable, writableLens)
		if !errors.Is(err, ErrQueueFull) {
			return head, err
		}
		if err := q.sleep(wake, deadline); err != nil {
			return 0, fmt.Errorf("submit: %w", err)
		}
	}
}

func (q *DriverQueue) add(readable [][]byte, writableLens []int, indirect bool) (uint16, error) {
	n := len(readable) + len(writableLens)
	if n == 0 {
		return 0, errors.New("virtiotest: empty chain")
	}
	if n > int(q.size) && !indirect {
		return 0, fmt.Errorf("virtiotest: chain of %d buffers exceeds queue size %d", n, q.size)
	}
	ringDescs := n
	if indirect {
		ringDescs = 1
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.free) < ringDescs {
		q.harvest()
		if len(q.free) < ringDescs {
			return 0, ErrQueueFull
		}
	}
	rec := &inflight{}
	fail := func(err error) (uint16, error) {
		for _, b := range rec.blocks {
			q.d.Free(b)
		}
		return 0, err
	}
	type buf struct {
		gpa   uint64
		len   uint32
		flags uint16
	}
	bufs := make([]buf, 0, n)
	for _, r := range readable {
		gpa, err := q.d.Alloc(uint64(len(r)), 8)
		if err != nil {
			return fail(err)
		}
		rec.blocks = append(rec.blocks, gpa)
		if _, err := q.d.mem.WriteAt(r, int64(gpa)); err != nil {
			return fail(err)
		}
		bufs = append(bufs, buf{gpa, uint32(len(r)), 0})
	}
	for _, l := range writableLens {
		if l < 0 {
			return fail(fmt.Errorf("virtiotest: negative writable length %d", l))
		}
		gpa, err := q.d.Alloc(uint64(l), 8)
		if err != nil {
			return fail(err)
		}
		rec.blocks = append(rec.blocks, gpa)
		rec.writable = append(rec.writable, segment{gpa, uint32(l)})
		bufs = append(bufs, buf{gpa, uint32(l), virtq.DescFWrite})
	}
	if indirect {
		table, err := q.d.Alloc(uint64(16*n), 16)
		if err != nil {
			return fail(err)
		}
		rec.blocks = append(rec.blocks, table)
		for i, b := range bufs {
			flags, next := b.flags, uint16(0)
			if i < n-1 {
				flags, next = flags|virtq.DescFNext, uint16(i+1)
			}
			q.putDesc(table, uint16(i), b.gpa, b.len, flags, next)
		}
		bufs = []buf{{table, uint32(16 * n), virtq.DescFIndirect}}
	}
	idx := make([]uint16, len(bufs))
	for i := range idx {
		idx[i] = q.free[len(q.free)-1]
		q.free = q.free[:len(q.free)-1]
	}
	for i, b := range bufs {
		flags, next := b.flags, uint16(0)
		if i < len(bufs)-1 {
			flags, next = flags|virtq.DescFNext, idx[i+1]
		}
		q.putDesc(q.desc, idx[i], b.gpa, b.len, flags, next)
	}
	rec.descs = idx
	q.inflight[idx[0]] = rec
	q.publish(idx[0])
	return idx[0], nil
}

// putDesc writes descriptor i of the table at base.
func (q *DriverQueue) putDesc(base uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	b, err := q.d.mem.Slice(base+16*uint64(i), 16)
	if err != nil {
		panic(fmt.Sprintf("virtiotest: descriptor %d at %#x: %v", i, base, err)) // our own layout
	}
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// publish puts head in the next available-ring slot and then publishes avail.idx (release).
//
// Precondition: q.mu held.
func (q *DriverQueue) publish(heads ...uint16) {
	for _, h := range heads {
		slot := uint64(q.availIdx % q.size)
		q.must(q.d.mem.PutUint16(q.avail+4+2*slot, h))
		q.availIdx++
	}
	q.must(q.d.mem.AtomicStore16(q.avail+2, q.availIdx))
}

func (q *DriverQueue) must(err error) {
	if err != nil {
		panic(fmt.Sprintf("virtiotest: queue at %#x: %v", q.desc, err)) // our own layout
	}
}

// needEvent is vring_need_event from the virtio specification (§2.7.10).
func needEvent(event, newIdx, old uint16) bool {
	return newIdx-event-1 < newIdx-old
}

// Kick notifies the device about newly published chains unless the device asked not to
// be notified (VIRTQ_USED_F_NO_NOTIFY, or with EVENT_IDX an avail_event that the new
// chains have not reached). It reports whether it notified. Without a device (a bare
// Driver) it only reports the decision.
func (q *DriverQueue) Kick() bool {
	q.mu.Lock()
	old, now := q.kickedIdx, q.availIdx
	q.kickedIdx = now
	var need bool
	if old != now {
		if q.eventIdx {
			ev, err := q.d.mem.AtomicLoad16(q.used + 4 + 8*uint64(q.size))
			q.must(err)
			need = needEvent(ev, now, old)
		} else {
			flags, err := q.d.mem.AtomicLoad16(q.used)
			q.must(err)
			need = flags&virtq.UsedFNoNotify == 0
		}
	}
	q.mu.Unlock()
	if need && q.notify != nil {
		q.notify()
	}
	return need
}

// Notify notifies the device unconditionally.
func (q *DriverQueue) Notify() {
	q.mu.Lock()
	q.kickedIdx = q.availIdx
	q.mu.Unlock()
	if q.notify != nil {
		q.notify()
	}
}

// harvest moves new used-ring entries into q.done, freeing their descriptors and buffers.
//
// Precondition: q.mu held.
func (q *DriverQueue) harvest() {
	usedIdx, err := q.d.mem.AtomicLoad16(q.used + 2)
	q.must(err)
	if n := usedIdx - q.lastUsed; n > q.size && q.deviceErr == nil {
		q.deviceErr = fmt.Errorf("virtiotest: device published used.idx %d, %d ahead of %d (size %d)", usedIdx, n, q.lastUsed, q.size)
		return
	}
	for q.lastUsed != usedIdx {
		slot := uint64(q.lastUsed % q.size)
		id, err1 := q.d.mem.Uint32(q.used + 4 + 8*slot)
		length, err2 := q.d.mem.Uint32(q.used + 4 + 8*slot + 4)
		q.must(errors.Join(err1, err2))
		q.lastUsed++
		u := Used{Head: uint16(id), Len: length}
		if rec, ok := q.inflight[uint16(id)]; ok && id < uint32(q.size) {
			delete(q.inflight, uint16(id))
			u.Writable = q.copyWritable(rec.writable)
			u.Data = u.Writable[:min(uint64(length), uint64(len(u.Writable)))]
			for _, b := range rec.blocks {
				q.d.Free(b)
			}
			q.free = append(q.free, rec.descs...)
		}
		if !q.discard {
			q.done = append(q.done, u)
		}
	}
	if q.eventIdx && q.autoUsedEvent {
		// Ask for an interrupt on the very next used buffer, as Linux does when it
		// re-enables callbacks.
		q.must(q.d.mem.AtomicStore16(q.avail+4+2*uint64(q.size), q.lastUsed))
	}
}

func (q *DriverQueue) copyWritable(segs []segment) []byte {
	out := []byte{}
	for _, s := range segs {
		b, err := q.d.mem.Slice(s.gpa, uint64(s.len))
		q.must(err)
		out = append(out, b...)
	}
	return out
}

// Used harvests the used ring and returns every completion not returned before.
func (q *DriverQueue) Used() []Used {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.harvest()
	out := q.done
	q.done = nil
	return out
}

// WaitUsed returns the next completion, waiting up to timeout for it.
func (q *DriverQueue) WaitUsed(timeout time.Duration) (Used, error) {
	deadline := time.Now().Add(timeout)
	for {
		var wake <-chan struct{}
		if q.wake != nil {
			wake = q.wake() // taken before the check so no interrupt is missed
		}
		q.mu.Lock()
		q.harvest()
		if len(q.done) > 0 {
			u := q.done[0]
			q.done = q.done[1:]
			q.mu.Unlock()
			return u, nil
		}
		err := q.deviceErr
		q.mu.Unlock()
		if err != nil {
			return Used{}, err
		}
		if err := q.sleep(wake, deadline); err != nil {
			return Used{}, err
		}
	}
}

// sleep waits for an interrupt, a 1 ms poll tick or the deadline.
func (q *DriverQueue) sleep(wake <-chan struct{}, deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		return ErrTimeout
	}
	t := time.NewTimer(min(left, time.Millisecond))
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	}
	return nil
}

// SetDiscardUsed makes harvesting drop completions instead of keeping them for Used and
// WaitUsed (descriptors and buffers are still reclaimed).
func (q *DriverQueue) SetDiscardUsed(discard bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.discard = discard
	if discard {
		q.done = nil
	}
}

// Outstanding is the number of chains published with Add and not yet harvested.
func (q *DriverQueue) Outstanding() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.inflight)
}

// RawDesc writes descriptor i of the ring's descriptor table verbatim. Together with
// PublishRaw it crafts chains Add never would; do not mix it with Add on one queue.
func (q *DriverQueue) RawDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	if i >= q.size {
		panic(fmt.Sprintf("virtiotest: RawDesc index %d beyond queue size %d", i, q.size))
	}
	q.putDesc(q.desc, i, addr, length, flags, next)
}

// RawTableDesc writes entry i of a descriptor table at gpa (e.g. an indirect table from
// Driver.Alloc).
func (q *DriverQueue) RawTableDesc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	q.putDesc(table, i, addr, length, flags, next)
}

// PublishRaw puts heads (any values, valid or not) into the available ring and publishes
// the new avail.idx.
func (q *DriverQueue) PublishRaw(heads ...uint16) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.publish(heads...)
}

// SetAvailIdx writes avail.idx directly (the driver's copy follows it).
func (q *DriverQueue) SetAvailIdx(idx uint16) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.availIdx = idx
	q.must(q.d.mem.AtomicStore16(q.avail+2, idx))
}

// SetAvailFlags writes avail.flags (VIRTQ_AVAIL_F_NO_INTERRUPT).
func (q *DriverQueue) SetAvailFlags(flags uint16) {
	q.must(q.d.mem.AtomicStore16(q.avail, flags))
}

// SetUsedEvent writes used_event (EVENT_IDX) and stops the automatic updates harvesting
// otherwise makes.
func (q *DriverQueue) SetUsedEvent(v uint16) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.autoUsedEvent = false
	q.must(q.d.mem.AtomicStore16(q.avail+4+2*uint64(q.size), v))
}

// UsedIdx reads used.idx as the device last published it.
func (q *DriverQueue) UsedIdx() uint16 {
	v, err := q.d.mem.AtomicLoad16(q.used + 2)
	q.must(err)
	return v
}

// UsedFlags reads used.flags (VIRTQ_USED_F_NO_NOTIFY).
func (q *DriverQueue) UsedFlags() uint16 {
	v, err := q.d.mem.AtomicLoad16(q.used)
	q.must(err)
	return v
}

// AvailEvent reads avail_event, the device's EVENT_IDX notification threshold.
func (q *DriverQueue) AvailEvent() uint16 {
	v, err := q.d.mem.AtomicLoad16(q.used + 4 + 8*uint64(q.size))
	q.must(err)
	return v
}

// UsedRing returns the used-ring entries the device published that have not been
// harvested yet, without consuming them.
func (q *DriverQueue) UsedRing() []UsedElem {
	q.mu.Lock()
	defer q.mu.Unlock()
	usedIdx := q.UsedIdx()
	var out []UsedElem
	for i := q.lastUsed; i != usedIdx && len(out) < int(q.size); i++ {
		slot := uint64(i % q.size)
		id, err1 := q.d.mem.Uint32(q.used + 4 + 8*slot)
		length, err2 := q.d.mem.Uint32(q.used + 4 + 8*slot + 4)
		q.must(errors.Join(err1, err2))
		out = append(out, UsedElem{ID: id, Len: length})
	}
	return out
}
