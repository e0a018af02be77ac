package serial

import (
	"sync"
	"testing"

	"github.com/vmbench/runner/internal/syncbuf"
)

// irqRecorder records interrupt-line levels.
type irqRecorder struct {
	mu     sync.Mutex
	levels []bool
}

func (r *irqRecorder) SetLevel(high bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.levels = append(r.levels, high)
	return nil
}

func (r *irqRecorder) high() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.levels) > 0 && r.levels[len(r.levels)-1]
}

func rd(u *UART, off uint64) uint8 {
	b := []byte{0xaa}
	u.Read(off, b)
	return b[0]
}

func wr(u *UART, off uint64, v uint8) { u.Write(off, []byte{v}) }

func TestTransmit(t *testing.T) {
	var out syncbuf.Buffer
	u := New(&out, nil)
	for _, c := range []byte("hi\n") {
		wr(u, regData, c)
	}
	if out.String() != "hi\n" {
		t.Errorf("out %q", out.String())
	}
	if lsr := rd(u, regLSR); lsr != lsrTHRE|lsrTEMT {
		t.Errorf("LSR %#x", lsr)
	}
}

// TestLinuxProbe follows what drivers/tty/serial/8250/8250_port.c autoconfig() checks
// before it reports "ttyS0 ... is a 16550A".
func TestLinuxProbe(t *testing.T) {
	var out syncbuf.Buffer
	u := New(&out, nil)
	// Scratch register.
	wr(u, regSCR, 0xa5)
	if rd(u, regSCR) != 0xa5 {
		t.Error("scratch register")
	}
	// IER must be writable and read back (the "IER test").
	wr(u, regIER, 0x0f)
	if rd(u, regIER) != 0x0f {
		t.Error("IER readback")
	}
	wr(u, regIER, 0)
	// Loopback test: MCR = LOOP|RTS|OUT2 makes MSR[7:4] read 0x9.
	wr(u, regMCR, mcrLoop|0x0a)
	if msr := rd(u, regMSR) & 0xf0; msr != 0x90 {
		t.Errorf("loopback MSR %#x, want 0x90", msr)
	}
	// Loopback data comes back on RBR and is not transmitted.
	wr(u, regData, 'x')
	if rd(u, regLSR)&lsrDR == 0 || rd(u, regData) != 'x' || out.Len() != 0 {
		t.Error("loopback data")
	}
	wr(u, regMCR, 0)
	if msr := rd(u, regMSR); msr != 0xb0 {
		t.Errorf("MSR %#x", msr)
	}
	// FIFO enable shows as IIR[7:6] = 11 (16550A).
	wr(u, regIIR, fcrEnableFIFO)
	if iir := rd(u, regIIR); iir&0xc0 != 0xc0 || iir&iirNoInt == 0 {
		t.Errorf("IIR %#x", iir)
	}
	// Divisor latch.
	wr(u, regLCR, lcrDLAB|3)
	wr(u, regData, 1)
	wr(u, regIER, 0)
	if rd(u, regData) != 1 || rd(u, regIER) != 0 {
		t.Error("divisor latch")
	}
	wr(u, regLCR, 3)
	if rd(u, regLCR) != 3 {
		t.Error("LCR")
	}
}

// TestTHREInterrupt: the THR-empty interrupt follows qemu's rules (and passes Linux's
// UART_BUG_THRE test), and IRQ 4 follows IIR.
func TestTHREInterrupt(t *testing.T) {
	var out syncbuf.Buffer
	irq := &irqRecorder{}
	u := New(&out, irq)
	if irq.high() {
		t.Fatal("IRQ high at reset")
	}
	wr(u, regIER, ierTHRI) // enabling THRI with THR empty raises it
	if !irq.high() {
		t.Fatal("IRQ low after enabling THRI")
	}
	if iir := rd(u, regIIR); iir&0x0f != iirTHRI {
		t.Fatalf("IIR %#x", iir)
	}
	if irq.high() {
		t.Fatal("reading IIR did not acknowledge THRI")
	}
	if iir := rd(u, regIIR); iir&iirNoInt == 0 {
		t.Fatalf("IIR %#x after acknowledge", iir)
	}
	// Linux's THRE-bug test: IER off and on again must re-assert.
	wr(u, regIER, 0)
	wr(u, regIER, ierTHRI)
	if iir := rd(u, regIIR); iir&iirNoInt != 0 {
		t.Fatal("THRE not re-asserted")
	}
	// A transmitted byte raises it again.
	wr(u, regData, 'a')
	if !irq.high() {
		t.Fatal("no interrupt after transmit")
	}
	wr(u, regIER, 0)
	if irq.high() {
		t.Fatal("IRQ high with interrupts disabled")
	}
	// Receive-data interrupt in loopback has priority.
	wr(u, regMCR, mcrLoop)
	wr(u, regIER, ierRDI|ierTHRI)
	wr(u, regData, 'z')
	if iir := rd(u, regIIR); iir&0x0f != iirRDI {
		t.Fatalf("IIR %#x, want RDI", iir)
	}
	rd(u, regData)
	if iir := rd(u, regIIR); iir&0x0f != iirTHRI {
		t.Fatalf("IIR %#x, want THRI after draining RX", iir)
	}
}

func TestOddAccesses(t *testing.T) {
	u := New(NewConsole(nil, 16), nil)
	u.Read(100, make([]byte, 4))
	u.Write(100, []byte{1})
	u.Write(0, nil)
	u.Read(0, nil)
	b := []byte{9, 9, 9, 9}
	u.Read(regLSR, b)
	if b[0] != 0x60 || b[1] != 0 || b[3] != 0 {
		t.Errorf("4-byte LSR read %x", b)
	}
}
