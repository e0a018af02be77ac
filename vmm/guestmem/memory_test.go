package guestmem

import "testing"

func TestResidentCountsTouchedPages(t *testing.T) {
	m, err := New(8<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	before, err := m.Resident()
	if err != nil {
		t.Fatal(err)
	}
	// Touch three pages.
	for _, gpa := range []uint64{0, 1 << 20, 5 << 20} {
		if err := m.PutUint64(gpa, 1); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := m.Resident()
	if got := after - before; got != 3*4096 {
		t.Fatalf("resident grew by %d bytes, want %d", got, 3*4096)
	}
}

func TestSliceBounds(t *testing.T) {
	m, err := New(1<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, c := range []struct {
		gpa, n uint64
		ok     bool
	}{
		{0, 1 << 20, true}, {1<<20 - 1, 1, true}, {1 << 20, 1, false}, {1<<20 - 1, 2, false},
		{^uint64(0), 2, false}, {^uint64(0) - 4, 8, false}, {MMIOHoleStart, 1, false},
	} {
		if _, err := m.Slice(c.gpa, c.n); (err == nil) != c.ok {
			t.Errorf("Slice(%#x, %#x): err %v, want ok=%v", c.gpa, c.n, err, c.ok)
		}
	}
	if err := m.AtomicStore16(1<<20-2, 7); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.AtomicLoad16(1<<20 - 2); v != 7 {
		t.Fatalf("AtomicLoad16 = %d", v)
	}
	if _, err := m.AtomicLoad16(1<<20 - 1); err == nil {
		t.Fatal("unaligned AtomicLoad16 accepted")
	}
}

func TestLargeGuestSkipsTheMMIOHole(t *testing.T) {
	m, err := New(MMIOHoleStart+(64<<20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rs := m.Regions()
	if len(rs) != 2 || rs[0].Size != MMIOHoleStart || rs[1].GuestAddr != MMIOHoleEnd || rs[1].Size != 64<<20 {
		t.Fatalf("regions %+v", rs)
	}
	if m.Contains(MMIOHoleStart, 1) || !m.Contains(MMIOHoleEnd, 64<<20) {
		t.Fatal("hole mapped or high RAM missing")
	}
}
