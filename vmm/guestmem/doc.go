// Package guestmem is the guest's physical memory as the VMM sees it.
//
// Guest RAM is anonymous host memory mapped once at start-up and registered with KVM
// (KVM_SET_USER_MEMORY_REGION). On x86 the 32-bit MMIO hole [MMIOHoleStart, 4 GiB) is never
// RAM: a guest larger than MMIOHoleStart gets a second region starting at 4 GiB.
//
// Every address handed to this package comes from the guest and is hostile: all accessors
// take a guest-physical address (GPA) and a length, check the whole range against the
// regions with overflow-safe arithmetic, and return ErrOutOfRange instead of touching
// anything outside the mapping. A range must lie inside one region; nothing legitimate
// spans the MMIO hole.
//
// Ring indices that the guest and devices share are accessed with AtomicLoad16 and
// AtomicStore16, which are sequentially consistent (they also act as the memory barriers
// the virtio specification asks for).
//
// Unsafe code lives only in memory_unsafe.go.
package guestmem
