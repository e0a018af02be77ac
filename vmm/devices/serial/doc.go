// Package serial emulates the 8250/16550A UART a Linux guest uses as its console (ttyS0 at
// I/O port 0x3f8, IRQ 4), and the bounded console sink its output goes to.
//
// The UART is output-only from the host's point of view (nothing is typed into the guest),
// but its registers behave like a real 16550A as far as Linux's 8250 driver probes and uses
// them: without the THR-empty interrupt on IRQ 4, user-space writes to the console never
// drain (the kernel's printk path polls; the tty path waits for the interrupt).
//
// Console writes never block a vCPU: bytes go into a bounded buffer drained by a goroutine
// into the host io.Writer; when the writer falls behind, excess bytes are dropped and
// counted (Console.Dropped).
package serial
