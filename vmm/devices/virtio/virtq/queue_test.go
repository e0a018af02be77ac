package virtq_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio/virtiotest"
	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
	"github.com/vmbench/runner/vmm/guestmem"
)

// setup returns a bare driver, a driver queue and the device-side queue over it.
func setup(t testing.TB, size uint16, eventIdx, indirect bool) (*virtiotest.Driver, *virtiotest.DriverQueue, *virtq.Queue) {
	t.Helper()
	mem, err := guestmem.New(4<<20, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	d := virtiotest.NewDriver(mem)
	dq := d.AddQueue(size, eventIdx)
	cfg := dq.Config()
	cfg.Indirect = indirect
	q, err := virtq.New(mem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, dq, q
}

func mustPop(t testing.TB, q *virtq.Queue) *virtq.Chain {
	t.Helper()
	c, err := q.Pop()
	if err != nil {
		t.Fatal(err)
	}
	if c == nil {
		t.Fatal("Pop: ring empty, want a chain")
	}
	return c
}

func TestNewValidatesGeometry(t *testing.T) {
	mem, err := guestmem.New(1<<20, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	good := virtq.Config{Size: 16, DescTable: 0x1000, AvailRing: 0x2000, UsedRing: 0x3000}
	if _, err := virtq.New(mem, good); err != nil {
		t.Fatalf("valid geometry rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*virtq.Config)
	}{
		{"size 0", func(c *virtq.Config) { c.Size = 0 }},
		{"size not a power of two", func(c *virtq.Config) { c.Size = 24 }},
		{"size above 32768", func(c *virtq.Config) { c.Size = 0xffff }},
		{"descriptor table misaligned", func(c *virtq.Config) { c.DescTable = 0x1008 }},
		{"available ring misaligned", func(c *virtq.Config) { c.AvailRing = 0x2001 }},
		{"used ring misaligned", func(c *virtq.Config) { c.UsedRing = 0x3002 }},
		{"descriptor table beyond RAM", func(c *virtq.Config) { c.DescTable = 1<<20 - 0x80 }},
		{"available ring beyond RAM", func(c *virtq.Config) { c.AvailRing = 1<<20 - 0x10 }},
		{"used ring beyond RAM", func(c *virtq.Config) { c.UsedRing = 1<<20 - 0x40 }},
		{"descriptor table wraps", func(c *virtq.Config) { c.DescTable = ^uint64(0) &^ 15 }},
		{"used ring in the MMIO hole", func(c *virtq.Config) { c.UsedRing = guestmem.MMIOHoleStart }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			if q, err := virtq.New(mem, c); err == nil {
				t.Fatalf("New accepted %+v: %v", c, q)
			}
		})
	}
}

func TestPopPush(t *testing.T) {
	_, dq, q := setup(t, 8, false, false)
	if c, err := q.Pop(); c != nil || err != nil {
		t.Fatalf("Pop on an empty ring = %v, %v", c, err)
	}
	if ok, _ := q.HasAvailable(); ok {
		t.Fatal("HasAvailable on an empty ring")
	}
	head, err := dq.Add([][]byte{[]byte("ab"), {}, []byte("cde")}, []int{0, 4, 2})
	if err != nil {
		t.Fatal(err)
	}
	c := mustPop(t, q)
	// Zero-length descriptors carry nothing and are dropped from the chain.
	if c.Head != head || len(c.Readable) != 2 || len(c.Writable) != 2 || c.ReadableLen() != 5 || c.WritableLen() != 6 {
		t.Fatalf("chain %+v", c)
	}
	got, err := readAll(c)
	if err != nil || string(got) != "abcde" {
		t.Fatalf("Reader = %q, %v", got, err)
	}
	if _, err := c.ReadAt(make([]byte, 2), 4); err == nil {
		t.Fatal("ReadAt past the readable bytes succeeded")
	}
	if n, err := c.WriteAt([]byte("0123456"), 0); err == nil || n != 6 {
		t.Fatalf("WriteAt beyond writable: n %d err %v, want 6 and ErrShortWrite", n, err)
	}
	if _, err := c.WriteAt([]byte("xy"), 3); err != nil { // spans both writable buffers
		t.Fatal(err)
	}
	if err := q.Push(c.Head, 6); err != nil {
		t.Fatal(err)
	}
	u := dq.Used()
	if len(u) != 1 || u[0].Head != head || string(u[0].Data) != "012xy5" {
		t.Fatalf("used %+v", u)
	}
}

func readAll(c *virtq.Chain) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(c.Reader(0))
	return b.Bytes(), err
}

// TestIndexWrap runs more than 65536 chains so both 16-bit ring indices wrap, with a
// queue size that does and one that does not divide the number in flight.
func TestIndexWrap(t *testing.T) {
	_, dq, q := setup(t, 4, true, false)
	for i := 0; i < 70000; i++ {
		batch := 1 + i%4
		for j := 0; j < batch; j++ {
			if _, err := dq.Add([][]byte{{byte(i), byte(j)}}, nil); err != nil {
				// 4 entries: a batch of 4 fills the ring exactly.
				t.Fatalf("chain %d/%d: %v", i, j, err)
			}
		}
		for j := 0; j < batch; j++ {
			c := mustPop(t, q)
			if c.Readable[0][0] != byte(i) || c.Readable[0][1] != byte(j) {
				t.Fatalf("chain %d/%d: got %v", i, j, c.Readable[0])
			}
			q.Push(c.Head, 0)
		}
		if c, err := q.Pop(); c != nil || err != nil {
			t.Fatalf("round %d: extra chain %v %v", i, c, err)
		}
		if n := len(dq.Used()); n != batch {
			t.Fatalf("round %d: %d used, want %d", i, n, batch)
		}
		i += batch - 1
	}
	if dq.UsedIdx() == 0 {
		t.Fatal("used index did not move")
	}
}

func TestIndirect(t *testing.T) {
	_, dq, q := setup(t, 16, false, true)
	// A full table: as many entries as the queue has (Linux virtio-blk with
	// seg_max = size-2 sends exactly that).
	readable := make([][]byte, 10)
	for i := range readable {
		readable[i] = []byte{byte(i)}
	}
	head, err := dq.AddIndirect(readable, []int{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	c := mustPop(t, q)
	if c.Head != head || len(c.Readable) != 10 || c.WritableLen() != 21 {
		t.Fatalf("indirect chain: %d readable, %d writable bytes", len(c.Readable), c.WritableLen())
	}
	// Direct descriptors followed by one indirect descriptor (§2.7.5.3.2 allows it).
	d2, dq2, q2 := setup(t, 16, false, true)
	table, _ := d2.Alloc(32, 16)
	b1, _ := d2.Alloc(8, 8)
	b2, _ := d2.Alloc(8, 8)
	d2.Mem().WriteAt([]byte("direct.."), int64(b1))
	dq2.RawTableDesc(table, 0, b2, 8, virtq.DescFNext, 1)
	dq2.RawTableDesc(table, 1, b2, 4, virtq.DescFWrite, 0)
	dq2.RawDesc(3, b1, 8, virtq.DescFNext, 7)
	dq2.RawDesc(7, table, 32, virtq.DescFIndirect|virtq.DescFWrite /* ignored */, 0)
	dq2.PublishRaw(3)
	c = mustPop(t, q2)
	if c.Head != 3 || len(c.Readable) != 2 || c.ReadableLen() != 16 || c.WritableLen() != 4 {
		t.Fatalf("mixed chain %+v", c)
	}
}

// TestMalformed covers every malformed case in the package documentation: each fails its
// own chain only, and the queue keeps working.
func TestMalformed(t *testing.T) {
	type desc struct {
		i     uint16
		addr  uint64
		len   uint32
		flags uint16
		next  uint16
	}
	const (
		N = virtq.DescFNext
		W = virtq.DescFWrite
		I = virtq.DescFIndirect
	)
	for _, tc := range []struct {
		name      string
		noFeature bool // VIRTIO_F_INDIRECT_DESC not negotiated
		descs     []desc
		table     []desc // indirect table at tableGPA
		head      uint16
		headValid bool
		reason    string
	}{
		{name: "head out of range", head: 16, reason: "head index"},
		{name: "next out of range", descs: []desc{{0, buf, 8, N, 16}}, headValid: true, reason: "next index"},
		{name: "self loop", descs: []desc{{0, buf, 8, N, 0}}, headValid: true, reason: "loop"},
		{name: "long loop", descs: []desc{{0, buf, 8, N, 1}, {1, buf, 8, N, 2}, {2, buf, 8, N, 0}}, headValid: true, reason: "loop"},
		{name: "buffer beyond RAM", descs: []desc{{0, 4<<20 - 4, 8, 0, 0}}, headValid: true, reason: "out of range"},
		{name: "buffer address wraps", descs: []desc{{0, ^uint64(0) - 3, 8, 0, 0}}, headValid: true, reason: "out of range"},
		{name: "huge length", descs: []desc{{0, buf, 0xffffffff, W, 0}}, headValid: true, reason: "out of range"},
		{name: "readable after writable", descs: []desc{{0, buf, 8, W | N, 1}, {1, buf, 8, 0, 0}}, headValid: true, reason: "readable buffer after"},
		{name: "indirect not negotiated", noFeature: true, descs: []desc{{0, tableGPA, 16, I, 0}}, table: []desc{{0, buf, 8, 0, 0}}, headValid: true, reason: "without VIRTIO_F_INDIRECT_DESC"},
		{name: "indirect with next", descs: []desc{{0, tableGPA, 16, I | N, 1}, {1, buf, 8, 0, 0}}, table: []desc{{0, buf, 8, 0, 0}}, headValid: true, reason: "NEXT"},
		{name: "indirect length zero", descs: []desc{{0, tableGPA, 0, I, 0}}, headValid: true, reason: "multiple of 16"},
		{name: "indirect length not multiple of 16", descs: []desc{{0, tableGPA, 20, I, 0}}, headValid: true, reason: "multiple of 16"},
		{name: "indirect table larger than the queue", descs: []desc{{0, tableGPA, 17 * 16, I, 0}}, headValid: true, reason: "exceeds queue size"},
		{name: "indirect table beyond RAM", descs: []desc{{0, 4<<20 - 16, 32, I, 0}}, headValid: true, reason: "indirect table"},
		{name: "nested indirect", descs: []desc{{0, tableGPA, 16, I, 0}}, table: []desc{{0, tableGPA, 16, I, 0}}, headValid: true, reason: "nested"},
		{name: "indirect next out of table", descs: []desc{{0, tableGPA, 32, I, 0}}, table: []desc{{0, buf, 8, N, 2}, {1, buf, 8, 0, 0}}, headValid: true, reason: "next index 2"},
		{name: "indirect loop", descs: []desc{{0, tableGPA, 32, I, 0}}, table: []desc{{0, buf, 8, N, 1}, {1, buf, 8, N, 0}}, headValid: true, reason: "loop"},
		{name: "indirect buffer beyond RAM", descs: []desc{{0, tableGPA, 16, I, 0}}, table: []desc{{0, 8 << 20, 8, 0, 0}}, headValid: true, reason: "out of range"},
		{name: "indirect readable after writable", descs: []desc{{0, tableGPA, 32, I, 0}}, table: []desc{{0, buf, 8, W | N, 1}, {1, buf, 8, 0, 0}}, headValid: true, reason: "readable buffer after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dq, q := setup(t, 16, false, !tc.noFeature)
			for _, d := range tc.descs {
				dq.RawDesc(d.i, d.addr, d.len, d.flags, d.next)
			}
			for _, d := range tc.table {
				dq.RawTableDesc(tableGPA, d.i, d.addr, d.len, d.flags, d.next)
			}
			dq.PublishRaw(tc.head)
			c, err := q.Pop()
			var ce *virtq.ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("Pop = %v, %v; want a *ChainError", c, err)
			}
			if ce.Head != tc.head || ce.HeadValid != tc.headValid || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q (head %d valid %v), want head %d valid %v mentioning %q",
					err, ce.Head, ce.HeadValid, tc.head, tc.headValid, tc.reason)
			}
			if tc.headValid {
				if err := q.Push(ce.Head, 0); err != nil {
					t.Fatal(err)
				}
			}
			// The malformed chain was consumed; a good one behind it works.
			dq.RawDesc(5, buf, 8, 0, 0)
			dq.PublishRaw(5)
			if c := mustPop(t, q); c.Head != 5 || c.ReadableLen() != 8 {
				t.Fatalf("chain after the malformed one: %+v", c)
			}
		})
	}
}

// Fixed guest addresses for hand-made chains (inside the 4 MiB of setup, above the
// driver's allocations).
const (
	buf      = 0x300000
	tableGPA = 0x310000
)

func TestInvalidAvailIdx(t *testing.T) {
	_, dq, q := setup(t, 8, false, false)
	dq.SetAvailIdx(9) // 9 new entries in an 8-entry ring
	if _, err := q.Pop(); !errors.Is(err, virtq.ErrInvalidAvailIdx) {
		t.Fatalf("Pop = %v, want ErrInvalidAvailIdx", err)
	}
	if _, err := q.HasAvailable(); !errors.Is(err, virtq.ErrInvalidAvailIdx) {
		t.Fatalf("HasAvailable = %v, want ErrInvalidAvailIdx", err)
	}
	dq.SetAvailIdx(8) // exactly a full ring is fine
	for i := 0; i < 8; i++ {
		dq.RawDesc(uint16(i), buf, 1, 0, 0)
	}
	for i := 0; i < 8; i++ {
		mustPop(t, q)
	}
}

// TestEventIdxInterrupts: the device interrupts exactly when used.idx passes used_event.
func TestEventIdxInterrupts(t *testing.T) {
	_, dq, q := setup(t, 8, true, false)
	push := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := dq.Add([][]byte{{1}}, nil); err != nil {
				t.Fatal(err)
			}
			c := mustPop(t, q)
			q.Push(c.Head, 0)
		}
	}
	need := func() bool {
		ok, err := q.NeedsInterrupt()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if need() {
		t.Fatal("interrupt wanted with nothing pushed")
	}
	dq.SetUsedEvent(0) // interrupt when the entry at index 0 is used
	push(1)
	if !need() {
		t.Fatal("used.idx passed used_event 0: want an interrupt")
	}
	if need() {
		t.Fatal("second decision without new pushes wants an interrupt")
	}
	dq.SetUsedEvent(3) // driver: wake me when entry 3 is used
	push(1)            // used.idx 2
	if need() {
		t.Fatal("used.idx 2 has not passed used_event 3")
	}
	push(1) // used.idx 3
	if need() {
		t.Fatal("used.idx 3 has not passed used_event 3 (entry 3 not used yet)")
	}
	push(2) // used.idx 5, passing 3 within this batch
	if !need() {
		t.Fatal("batch crossed used_event: want an interrupt")
	}
	// The flags are ignored with EVENT_IDX.
	dq.SetAvailFlags(virtq.AvailFNoInterrupt)
	dq.SetUsedEvent(5)
	push(1)
	if !need() {
		t.Fatal("EVENT_IDX in use: VIRTQ_AVAIL_F_NO_INTERRUPT must be ignored")
	}
	// Wrap-around: used_event far "behind" in 16-bit arithmetic.
	dq.SetUsedEvent(6 + 0x8000)
	push(1)
	if need() {
		t.Fatal("used_event behind by 0x8000: no interrupt expected")
	}
}

func TestFlagInterrupts(t *testing.T) {
	_, dq, q := setup(t, 8, false, false)
	dq.Add([][]byte{{1}}, nil)
	q.Push(mustPop(t, q).Head, 0)
	if ok, _ := q.NeedsInterrupt(); !ok {
		t.Fatal("no flags: want an interrupt")
	}
	dq.SetAvailFlags(virtq.AvailFNoInterrupt)
	dq.Add([][]byte{{1}}, nil)
	q.Push(mustPop(t, q).Head, 0)
	if ok, _ := q.NeedsInterrupt(); ok {
		t.Fatal("VIRTQ_AVAIL_F_NO_INTERRUPT set: no interrupt expected")
	}
}

// TestEventIdxNotifications: the device's avail_event suppresses driver kicks.
func TestEventIdxNotifications(t *testing.T) {
	_, dq, q := setup(t, 8, true, false)
	if more, err := q.EnableNotifications(); more || err != nil {
		t.Fatalf("EnableNotifications on an empty ring = %v, %v", more, err)
	}
	if dq.AvailEvent() != 0 {
		t.Fatalf("avail_event = %d, want 0", dq.AvailEvent())
	}
	dq.Add([][]byte{{1}}, nil)
	if !dq.Kick() {
		t.Fatal("avail_event 0 reached: driver must notify")
	}
	// The device is busy: it does not move avail_event, so further kicks are suppressed.
	q.DisableNotifications()
	dq.Add([][]byte{{2}}, nil)
	if dq.Kick() {
		t.Fatal("avail_event not advanced: driver must not notify")
	}
	mustPop(t, q)
	mustPop(t, q)
	if more, _ := q.EnableNotifications(); more {
		t.Fatal("ring drained, EnableNotifications reports more")
	}
	if dq.AvailEvent() != 2 {
		t.Fatalf("avail_event = %d, want 2", dq.AvailEvent())
	}
	// Race closed: buffers published before the device re-enabled are reported.
	q.DisableNotifications()
	dq.Add([][]byte{{3}}, nil)
	if more, _ := q.EnableNotifications(); !more {
		t.Fatal("a chain is available: EnableNotifications must say so")
	}
}

func TestFlagNotifications(t *testing.T) {
	_, dq, q := setup(t, 8, false, false)
	q.DisableNotifications()
	if dq.UsedFlags() != virtq.UsedFNoNotify {
		t.Fatalf("used.flags = %d after DisableNotifications", dq.UsedFlags())
	}
	dq.Add([][]byte{{1}}, nil)
	if dq.Kick() {
		t.Fatal("VIRTQ_USED_F_NO_NOTIFY set: driver must not notify")
	}
	if more, _ := q.EnableNotifications(); !more {
		t.Fatal("a chain is available: EnableNotifications must say so")
	}
	if dq.UsedFlags() != 0 {
		t.Fatal("used.flags not cleared")
	}
	dq.Add([][]byte{{1}}, nil)
	if !dq.Kick() {
		t.Fatal("notifications enabled: driver must notify")
	}
}

// TestConcurrentDriver publishes from a driver goroutine while the device pops and pushes,
// under the race detector the atomics on the indices are what make this correct.
func TestConcurrentDriver(t *testing.T) {
	_, dq, q := setup(t, 32, true, true)
	const n = 5000
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			msg := []byte{byte(i), byte(i >> 8)}
			add := dq.Add
			if i%3 == 0 {
				add = dq.AddIndirect
			}
			for {
				_, err := add([][]byte{msg}, []int{2})
				if err == nil {
					break
				}
				if !errors.Is(err, virtiotest.ErrQueueFull) {
					done <- err
					return
				}
				time.Sleep(10 * time.Microsecond)
			}
		}
		done <- nil
	}()
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < n && time.Now().Before(deadline) {
		c, err := q.Pop()
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			time.Sleep(10 * time.Microsecond)
			continue
		}
		b := make([]byte, 2)
		c.ReadAt(b, 0)
		if int(b[0])|int(b[1])<<8 != got&0xffff {
			t.Fatalf("chain %d carries %v", got, b)
		}
		c.WriteAt(b, 0)
		q.Push(c.Head, 2)
		got++
	}
	if err := <-done; err != nil || got != n {
		t.Fatalf("driver: %v; device saw %d of %d chains", err, got, n)
	}
}
