package serial

import (
	"io"
	"sync"
)

// Register offsets from the base port (National Semiconductor PC16550D data sheet; Linux
// include/uapi/linux/serial_reg.h).
const (
	regData = 0 // RBR (read), THR (write); DLL when LCR.DLAB
	regIER  = 1 // interrupt enable; DLM when LCR.DLAB
	regIIR  = 2 // interrupt identification (read), FCR (write)
	regLCR  = 3 // line control
	regMCR  = 4 // modem control
	regLSR  = 5 // line status
	regMSR  = 6 // modem status
	regSCR  = 7 // scratch

	// Size is the number of I/O ports the UART decodes.
	Size = 8
)

// Register bits.
const (
	ierRDI  = 0x01 // received data available interrupt
	ierTHRI = 0x02 // transmitter holding register empty interrupt
	ierMask = 0x0f

	iirNoInt = 0x01
	iirTHRI  = 0x02
	iirRDI   = 0x04
	iirFIFO  = 0xc0 // FIFOs enabled (16550A)

	fcrEnableFIFO = 0x01
	fcrClearRX    = 0x02

	lcrDLAB = 0x80

	mcrLoop = 0x10

	lsrDR   = 0x01 // data ready
	lsrTHRE = 0x20 // transmitter holding register empty
	lsrTEMT = 0x40 // transmitter empty

	msrCTS = 0x10
	msrDSR = 0x20
	msrRI  = 0x40
	msrDCD = 0x80

	rxFIFOSize = 16
)

// IRQLine is the UART's interrupt line (KVM_IRQ_LINE on the in-kernel irqchip).
type IRQLine interface {
	SetLevel(high bool) error
}

// UART is a 16550A. It implements bus.Device; all methods are safe for concurrent use by
// several vCPUs (one mutex: every access is a few instructions).
type UART struct {
	mu  sync.Mutex
	out io.Writer // receives transmitted bytes; must not block (use a Console)
	irq IRQLine

	// Registers, guarded by mu.
	ier, lcr, mcr, scr, dll, dlm, fcr uint8
	thrPending                        bool // THR-empty interrupt pending (qemu's thr_ipending)
	rx                                []byte
	irqHigh                           bool
	irqErrs                           uint64
}

// New returns a UART that sends transmitted bytes to out and signals irq.
func New(out io.Writer, irq IRQLine) *UART {
	return &UART{out: out, irq: irq, dll: 0x0c /* 9600 baud */, lcr: 0x03 /* 8N1 */}
}

// Read implements bus.Device. Accesses wider than a byte read the register at offset only.
func (u *UART) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
	if len(data) == 0 || offset >= Size {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	data[0] = u.readReg(offset)
	u.updateIRQ()
}

// Write implements bus.Device. Only the first byte of a wider access is used.
func (u *UART) Write(offset uint64, data []byte) {
	if len(data) == 0 || offset >= Size {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.writeReg(offset, data[0])
	u.updateIRQ()
}

func (u *UART) readReg(off uint64) uint8 {
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			return u.dll
		}
		if len(u.rx) == 0 {
			return 0
		}
		b := u.rx[0]
		u.rx = u.rx[1:]
		return b
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			return u.dlm
		}
		return u.ier
	case regIIR:
		iir := u.iir()
		if iir&0x0f == iirTHRI {
			u.thrPending = false // reading IIR acknowledges THR empty
		}
		return iir
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		lsr := uint8(lsrTHRE | lsrTEMT) // transmission is instantaneous
		if len(u.rx) > 0 {
			lsr |= lsrDR
		}
		return lsr
	case regMSR:
		if u.mcr&mcrLoop != 0 {
			// Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD (Linux's probe expects 0x90
			// after writing LOOP|RTS|OUT2).
			var msr uint8
			if u.mcr&0x01 != 0 {
				msr |= msrDSR
			}
			if u.mcr&0x02 != 0 {
				msr |= msrCTS
			}
			if u.mcr&0x04 != 0 {
				msr |= msrRI
			}
			if u.mcr&0x08 != 0 {
				msr |= msrDCD
			}
			return msr
		}
		return msrDCD | msrDSR | msrCTS
	case regSCR:
		return u.scr
	}
	return 0
}

func (u *UART) writeReg(off uint64, v uint8) {
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			return
		}
		if u.mcr&mcrLoop != 0 {
			if len(u.rx) < rxFIFOSize {
				u.rx = append(u.rx, v)
			}
		} else {
			u.out.Write([]byte{v}) // a Console never blocks and never fails
		}
		u.thrPending = true
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			return
		}
		changed := (u.ier ^ v) & ierMask
		u.ier = v & ierMask
		if changed&ierTHRI != 0 {
			u.thrPending = u.ier&ierTHRI != 0 // THR is always empty
		}
	case regIIR: // FCR
		if v&fcrClearRX != 0 {
			u.rx = nil
		}
		u.fcr = v & fcrEnableFIFO
	case regLCR:
		u.lcr = v
	case regMCR:
		u.mcr = v & 0x1f
	case regSCR:
		u.scr = v
	}
}

// iir computes the interrupt identification register (highest-priority pending source).
func (u *UART) iir() uint8 {
	var fifo uint8
	if u.fcr&fcrEnableFIFO != 0 {
		fifo = iirFIFO
	}
	switch {
	case u.ier&ierRDI != 0 && len(u.rx) > 0:
		return iirRDI | fifo
	case u.ier&ierTHRI != 0 && u.thrPending:
		return iirTHRI | fifo
	}
	return iirNoInt | fifo
}

// updateIRQ drives the interrupt line to match the pending interrupts.
// Precondition: mu held.
func (u *UART) updateIRQ() {
	high := u.iir()&iirNoInt == 0
	if high == u.irqHigh || u.irq == nil {
		return
	}
	if err := u.irq.SetLevel(high); err != nil {
		u.irqErrs++
		return
	}
	u.irqHigh = high
}

// IRQErrors counts failed interrupt-line updates.
func (u *UART) IRQErrors() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.irqErrs
}
