package i8042

import "testing"

func TestReset(t *testing.T) {
	n := 0
	d := New(func() { n++ })
	st := []byte{0xff}
	d.Read(offCommand, st)
	if st[0]&0x02 != 0 { // Linux's kb_wait polls IBF (bit 1) until clear
		t.Fatalf("status %#x: input buffer full", st[0])
	}
	d.Write(offCommand, []byte{cmdPulseReset})
	if n != 1 || d.Resets() != 1 {
		t.Fatalf("resets %d", n)
	}
	// Legacy path: write output port with the reset line low.
	d.Write(offCommand, []byte{cmdWriteOutputPort})
	d.Write(offData, []byte{0xfe})
	if n != 2 {
		t.Fatalf("output-port reset not seen: %d", n)
	}
	d.Write(offCommand, []byte{cmdWriteOutputPort})
	d.Write(offData, []byte{0x03}) // reset line high: no reset
	d.Write(offCommand, []byte{0xfd})
	d.Write(offData, []byte{0xfe}) // data without a pending command
	if n != 2 {
		t.Fatalf("spurious reset: %d", n)
	}
}

func TestCommands(t *testing.T) {
	d := New(nil)
	read := func(off uint64) uint8 {
		b := []byte{0}
		d.Read(off, b)
		return b[0]
	}
	d.Write(offCommand, []byte{cmdSelfTest})
	if read(offCommand)&statusOBF == 0 || read(offData) != selfTestOK || read(offCommand)&statusOBF != 0 {
		t.Error("self test")
	}
	d.Write(offCommand, []byte{cmdWriteCommandByte})
	d.Write(offData, []byte{0x61})
	d.Write(offCommand, []byte{cmdReadCommandByte})
	if read(offData) != 0x61 {
		t.Error("command byte")
	}
	d.Write(offCommand, []byte{cmdPulseReset}) // nil callback: counted only
	if d.Resets() != 1 {
		t.Error("reset not counted")
	}
	d.Read(2, make([]byte, 2))
	d.Write(1, nil)
}
