package virtq_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
	"github.com/vmbench/runner/vmm/guestmem"
)

// Layout of the fuzzed guest memory. The input after its first byte is copied to
// fuzzBase, covering the descriptor table, the available ring and a scratch area where
// indirect tables and buffers can live; the used ring sits after it.
const (
	fuzzBase  = 0x1000
	fuzzDesc  = 0x1000 // up to 32 × 16 bytes
	fuzzAvail = 0x1200 // up to 6 + 2×32 bytes
	fuzzUsed  = 0x1400 // up to 6 + 8×32 bytes
	fuzzEnd   = 0x4000
)

var (
	fuzzMemOnce sync.Once
	fuzzMem     *guestmem.Memory
)

// FuzzChain feeds arbitrary descriptor tables, available rings and indirect tables to the
// device side of a queue. Input: byte 0 = log2(queue size) in bits 0-2 (mod 6, so 1..32
// entries), EVENT_IDX in bit 3, INDIRECT_DESC in bit 4; the rest is guest memory from
// 0x1000 (descriptor table at 0x1000, available ring at 0x1200, scratch from 0x1600).
//
// Properties: nothing panics; every chain is well formed (buffers non-empty, within the
// descriptor limit, lengths consistent); Pop terminates for every input.
func FuzzChain(f *testing.F) {
	f.Add([]byte{0x03}) // size 8, empty ring
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		fuzzMemOnce.Do(func() {
			m, err := guestmem.New(1<<20, guestmem.Options{})
			if err != nil {
				panic(err)
			}
			fuzzMem = m
		})
		mem := fuzzMem
		area, _ := mem.Slice(fuzzBase, fuzzEnd-fuzzBase)
		clear(area)
		copy(area, data[1:])
		size := uint16(1) << ((data[0] & 7) % 6)
		q, err := virtq.New(mem, virtq.Config{
			Size: size, DescTable: fuzzDesc, AvailRing: fuzzAvail, UsedRing: fuzzUsed,
			EventIdx: data[0]&8 != 0, Indirect: data[0]&16 != 0,
		})
		if err != nil {
			t.Fatalf("valid geometry rejected: %v", err)
		}
		for i := 0; i < 2*int(size)+1; i++ {
			c, err := q.Pop()
			var ce *virtq.ChainError
			switch {
			case errors.Is(err, virtq.ErrInvalidAvailIdx):
				return
			case errors.As(err, &ce):
				if ce.HeadValid {
					if ce.Head >= size {
						t.Fatalf("ChainError head %d valid in a queue of %d", ce.Head, size)
					}
					q.Push(ce.Head, 0)
				}
				continue
			case err != nil:
				t.Fatalf("Pop: unexpected error %v", err)
			case c == nil:
				q.EnableNotifications()
				q.NeedsInterrupt()
				return
			}
			checkChain(t, c, size)
			c.WriteAt(make([]byte, c.WritableLen()), 0)
			q.Push(c.Head, uint32(c.WritableLen()))
			q.NeedsInterrupt()
		}
	})
}

func checkChain(t *testing.T, c *virtq.Chain, size uint16) {
	t.Helper()
	if c.Head >= size {
		t.Fatalf("chain head %d in a queue of %d", c.Head, size)
	}
	if n := len(c.Readable) + len(c.Writable); n > 2*int(size) {
		t.Fatalf("chain of %d buffers in a queue of %d", n, size)
	}
	var r, w uint64
	for _, b := range c.Readable {
		if len(b) == 0 {
			t.Fatal("empty readable buffer")
		}
		r += uint64(len(b))
	}
	for _, b := range c.Writable {
		if len(b) == 0 {
			t.Fatal("empty writable buffer")
		}
		w += uint64(len(b))
	}
	if r != c.ReadableLen() || w != c.WritableLen() {
		t.Fatalf("lengths %d/%d, chain says %d/%d", r, w, c.ReadableLen(), c.WritableLen())
	}
}
