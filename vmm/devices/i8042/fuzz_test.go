package i8042

import "testing"

// FuzzAccess drives the ports with an arbitrary sequence: no panic, and a reset is reported
// exactly when the guest asked for one.
func FuzzAccess(f *testing.F) {
	f.Add([]byte{0x84, 0xfe})
	f.Fuzz(func(t *testing.T, ops []byte) {
		calls := 0
		d := New(func() { calls++ })
		for i := 0; i+1 < len(ops); i += 2 {
			off := uint64(ops[i] & 0x07)
			if ops[i]&0x80 != 0 {
				d.Write(off, []byte{ops[i+1]})
			} else {
				d.Read(off, make([]byte, 1+int(ops[i+1]&3)))
			}
		}
		if calls != d.Resets() {
			t.Fatalf("callback ran %d times, %d resets counted", calls, d.Resets())
		}
	})
}
