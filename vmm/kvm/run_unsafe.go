package kvm

import (
	"sync/atomic"
	"unsafe"
)

// setImmediateExit stores v into kvm_run.immediate_exit (byte 1) atomically. Go has no 8-bit
// atomics, so the aligned 32-bit word holding bytes 0–3 (request_interrupt_window,
// immediate_exit, padding1[0:2]) is updated with a compare-and-swap loop that preserves
// the other bytes. Any goroutine may call it while the vCPU thread is inside KVM_RUN;
// the kernel reads the byte with READ_ONCE on entry.
func (r *Run) setImmediateExit(v uint8) {
	w := (*uint32)(unsafe.Pointer(&r.page[0])) // the mapping is page aligned
	for {
		old := atomic.LoadUint32(w)
		next := old&^0xff00 | uint32(v)<<8
		if atomic.CompareAndSwapUint32(w, old, next) {
			return
		}
	}
}

// immediateExit loads kvm_run.immediate_exit atomically.
func (r *Run) immediateExit() uint8 {
	w := (*uint32)(unsafe.Pointer(&r.page[0]))
	return uint8(atomic.LoadUint32(w) >> 8)
}
