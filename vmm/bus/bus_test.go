package bus

import (
	"bytes"
	"testing"
)

type recorder struct {
	reads, writes []uint64
	last          []byte
}

func (r *recorder) Read(off uint64, data []byte) {
	r.reads = append(r.reads, off)
	for i := range data {
		data[i] = byte(off) + byte(i)
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.writes = append(r.writes, off)
	r.last = append([]byte(nil), data...)
}

func TestDispatchOffsetsAndUnclaimed(t *testing.T) {
	b := New("pio")
	a, c := &recorder{}, &recorder{}
	if err := b.Register(0x3f8, 8, "uart", a); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(0x60, 5, "i8042", c); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1)
	if !b.Read(0x3fd, data) || data[0] != 5 {
		t.Fatalf("read 0x3fd: claimed data %v", data)
	}
	if !b.Write(0x64, []byte{0xfe}) || c.writes[0] != 4 || !bytes.Equal(c.last, []byte{0xfe}) {
		t.Fatalf("write 0x64: %v %v", c.writes, c.last)
	}
	// Outside every range, and straddling the end of one.
	for _, addr := range []uint64{0x80, 0x3ff + 1, 0x5f} {
		d := []byte{0}
		if b.Read(addr, d) || d[0] != 0xff {
			t.Errorf("read %#x: want unclaimed 0xff, got %#x", addr, d[0])
		}
	}
	if b.Read(0x3fe, make([]byte, 4)) {
		t.Error("read straddling the end of the uart range was claimed")
	}
	if b.Write(^uint64(0)-1, make([]byte, 4)) {
		t.Error("wrapping write was claimed")
	}
	r, w := b.Unclaimed()
	if r != 4 || w != 1 {
		t.Errorf("unclaimed = %d reads %d writes, want 4 and 1", r, w)
	}
}

func TestRegisterRejectsOverlapAndEmpty(t *testing.T) {
	b := New("mmio")
	if err := b.Register(0x1000, 0x1000, "a", &recorder{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ base, size uint64 }{{0x1fff, 2}, {0x800, 0x801}, {0x1000, 0x1000}, {0x3000, 0}, {^uint64(0), 2}} {
		if err := b.Register(tc.base, tc.size, "b", &recorder{}); err == nil {
			t.Errorf("Register(%#x, %#x) succeeded", tc.base, tc.size)
		}
	}
	if err := b.Register(0x2000, 0x1000, "adjacent", &recorder{}); err != nil {
		t.Errorf("adjacent range rejected: %v", err)
	}
}
