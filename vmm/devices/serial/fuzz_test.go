package serial

import "testing"

// FuzzUART drives the registers with an arbitrary access sequence (what a hostile guest can
// do): no panic, bounded receive FIFO, and the IRQ line always equals "IIR has a pending
// interrupt".
func FuzzUART(f *testing.F) {
	f.Add([]byte{0x81, 0x02, 0x03, 0x80, 0x05, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		irq := &irqRecorder{}
		u := New(NewConsole(nil, 64), irq)
		for i := 0; i+1 < len(ops); i += 2 {
			off := uint64(ops[i] & 0x0f) // include offsets beyond the 8 registers
			if ops[i]&0x80 != 0 {
				u.Write(off, []byte{ops[i+1]})
			} else {
				rd(u, off)
			}
			u.mu.Lock()
			pending := u.iir()&iirNoInt == 0
			rxLen := len(u.rx)
			u.mu.Unlock()
			if pending != irq.high() {
				t.Fatalf("op %d: IRQ line %v, IIR pending %v", i/2, irq.high(), pending)
			}
			if rxLen > rxFIFOSize {
				t.Fatalf("receive FIFO grew to %d", rxLen)
			}
		}
	})
}
