// Package virtq implements the device side of a split virtqueue (virtio 1.2 §2.7).
//
// A split virtqueue is three areas of guest memory written by different sides:
//
//	descriptor table  driver writes  16 bytes × size   {addr u64, len u32, flags u16, next u16}
//	available ring    driver writes  flags u16, idx u16, ring[size] u16, used_event u16
//	used ring         device writes  flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16
//
// The guest controls every byte of all three, so nothing read from them is trusted: New
// validates the geometry once (size a power of two, alignments 16/2/4, each area wholly in
// RAM), and each Pop checks the head index, every descriptor index, every buffer range, the
// chain length (at most the queue size in the descriptor table and at most the entry count
// in an indirect table, which also breaks loops), indirect tables (length a non-zero
// multiple of 16 and at most the queue size in entries, no nesting, INDIRECT never with
// NEXT) and the order of readable before writable buffers. A malformed chain is reported as a *ChainError for that one request;
// an available index that runs ahead of the device by more than the queue size means the
// driver is broken, reported as ErrInvalidAvailIdx (the device should then ask for a reset).
//
// Ring indices shared with the guest are read and written with sequentially consistent
// atomics (guestmem.AtomicLoad16/AtomicStore16), which provide the barriers §2.7.13 asks for:
// ring entries are read only after the index that publishes them, and the used index is
// published only after the used entries it covers.
//
// Notification suppression (§2.7.7, §2.7.10) supports both the flags and VIRTIO_F_EVENT_IDX.
//
// A Queue is owned by one goroutine at a time; it is not safe for concurrent use.
package virtq
