package guestmem

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// HostAddr is the host virtual address of the region's first byte, for
// KVM_SET_USER_MEMORY_REGION (userspace_addr).
func (r Region) HostAddr() uintptr {
	if len(r.host) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&r.host[0]))
}

// word32 returns the naturally aligned 32-bit word of guest memory that contains the
// 2-byte-aligned uint16 at gpa, and the bit shift of that uint16 inside the word.
// Go has no 16-bit atomics; an aligned 32-bit word holding the field is the unit we
// access atomically. x86 is little-endian: the byte at the lower address is the low half.
func (m *Memory) word32(gpa uint64) (*uint32, uint, error) {
	if gpa%2 != 0 {
		return nil, 0, fmt.Errorf("%w: %#x not 2-byte aligned", ErrOutOfRange, gpa)
	}
	base := gpa &^ 3
	s, err := m.Slice(base, 4)
	if err != nil {
		return nil, 0, err
	}
	// Regions are page aligned in the host, so host and guest alignment agree.
	return (*uint32)(unsafe.Pointer(&s[0])), uint(gpa-base) * 8, nil
}

// AtomicLoad16 reads the uint16 at the 2-byte-aligned gpa with a sequentially consistent
// load (acquire: later reads of ring entries see what the guest wrote before the index).
func (m *Memory) AtomicLoad16(gpa uint64) (uint16, error) {
	w, shift, err := m.word32(gpa)
	if err != nil {
		return 0, err
	}
	return uint16(atomic.LoadUint32(w) >> shift), nil
}

// AtomicStore16 writes the uint16 at the 2-byte-aligned gpa with a sequentially consistent
// store (release: the guest sees the used-ring entries before it sees the new index).
// The other half of the containing word is preserved even if the guest writes it
// concurrently (compare-and-swap loop).
func (m *Memory) AtomicStore16(gpa uint64, v uint16) error {
	w, shift, err := m.word32(gpa)
	if err != nil {
		return err
	}
	mask := uint32(0xffff) << shift
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^mask|uint32(v)<<shift) {
			return nil
		}
	}
}

// mincore reports in vec which pages of b are resident (mincore(2)).
func mincore(b, vec []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
