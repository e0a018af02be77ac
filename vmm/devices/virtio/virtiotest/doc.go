// Package virtiotest plays the guest's side of virtio in host tests: a test-side driver
// that lays out split virtqueues in a guestmem.Memory, writes descriptor chains into them,
// notifies the device and reads the used ring back, plus a helper that brings a whole
// virtio.Device up through the real mmio.Transport register interface.
//
// It is test infrastructure (imported only from _test.go files) but deliberately an
// ordinary package so every device package can share one faithful driver.
//
// # API (stable)
//
//	// Rings and buffers in guest memory.
//	d := virtiotest.NewDriver(mem)            // mem nil: 128 MiB of fresh guest RAM (d.Close frees it)
//	d.Mem() *guestmem.Memory
//	d.Alloc(size, align uint64) (uint64, error) / d.Free(gpa)   // guest-RAM allocator
//	q := d.AddQueue(size uint16, eventIdx bool) *DriverQueue     // rings laid out, empty
//	q.Config() virtq.Config                   // geometry for virtq.New or the mmio queue registers
//
//	// Submitting work (safe for concurrent use; each call publishes one chain).
//	q.Add(readable [][]byte, writableLens []int) (head uint16, err error)          // no notification
//	q.AddIndirect(readable [][]byte, writableLens []int) (uint16, error)           // one INDIRECT descriptor
//	q.Submit(readable, writableLens) (uint16, error)   // Add + Kick
//	q.SubmitWait(readable, writableLens, timeout)      // Submit, waiting for free descriptors if the ring is full
//	q.Kick() bool      // notify unless the device suppressed it (used.flags / avail_event); reports whether it did
//	q.Notify()         // notify unconditionally
//	ErrQueueFull       // Add when no descriptors are free
//
//	// Completions. Used elements are harvested from the used ring, their descriptors and
//	// buffers freed, and the writable buffers copied out: Used{Head, Len, Data (the first
//	// Len bytes), Writable (all of them)}. A head may be reused once harvested.
//	q.Used() []Used                                    // everything completed so far, non-blocking
//	q.WaitUsed(timeout time.Duration) (Used, error)   // the next completion; ErrTimeout
//	q.SetDiscardUsed(true)                            // drop completions (e.g. a vsock TX queue)
//	q.Outstanding() int                               // chains published and not yet harvested
//
//	// Crafting hostile or unusual rings (bypass the bookkeeping above; use a fresh queue).
//	q.RawDesc(i uint16, addr uint64, length uint32, flags, next uint16)
//	q.RawTableDesc(table uint64, i uint16, addr uint64, length uint32, flags, next uint16) // indirect tables
//	q.PublishRaw(heads ...uint16)        // put heads in the available ring and publish avail.idx
//	q.SetAvailIdx(idx uint16)            // write avail.idx directly (e.g. run ahead of the ring)
//	q.SetAvailFlags(flags uint16)        // VIRTQ_AVAIL_F_NO_INTERRUPT
//	q.SetUsedEvent(v uint16)             // used_event; also turns off automatic used_event updates
//	q.UsedIdx() uint16; q.UsedFlags() uint16; q.AvailEvent() uint16
//	q.UsedRing() []UsedElem              // the raw used ring entries published so far, not harvested
//
//	// A whole device behind the real mmio transport.
//	dev, err := virtiotest.Start(device, virtiotest.Options{QueueSizes: ..., ExcludeFeatures: ...})
//	dev.Queues[i]        // *DriverQueue wired so Kick writes the QueueNotify register
//	dev.IRQ.Count()      // fake interrupt line: Trigger() calls so far
//	dev.Status()         // the Status register; dev.Features: the negotiated features
//	dev.ReadConfig(off, n) / dev.Reg(r) / dev.SetReg(r, v) / dev.AckInterrupts()
//	dev.Reinit(opts)     // Status = 0 (reset), then the whole init again on fresh queues
//	dev.Close()          // closes the transport (and the device) and owned memory
//
// WaitUsed sleeps on the fake IRQ (when the queue belongs to a Device) and polls the used
// ring every millisecond as a fallback, so it also works with interrupts suppressed.
//
// Driver-side memory ordering mirrors Linux: descriptors and ring entries are written
// before avail.idx is published with guestmem.AtomicStore16, and used.idx is read with
// AtomicLoad16 before the used entries it covers.
package virtiotest
