// Package blk is a virtio-blk device (virtio 1.2 §5.2) backed by a disk-image file: the
// guest's root filesystem (ext4 read-write, or squashfs read-only).
//
// # Requests (§5.2.6)
//
// Each descriptor chain is one struct virtio_blk_req:
//
//	readable   le32 type, le32 reserved, le64 sector      (16-byte header)
//	readable   data                                       (OUT; DISCARD/WRITE_ZEROES segments)
//	writable   data                                       (IN; GET_ID)
//	writable   u8 status                                  (the last writable byte)
//
// The layout is found by byte offsets across the chain's buffers, so a driver may split or
// merge descriptors freely. Supported: IN (read), OUT (write), FLUSH (fdatasync), GET_ID
// (the serial number, i.e. the run id), DISCARD (punches holes, keeping sparse images
// sparse) and WRITE_ZEROES. Other types complete with VIRTIO_BLK_S_UNSUPP.
//
// # What the guest controls
//
// The whole chain: type, sector, every buffer's length and placement. parseRequest copies
// the header out once and checks everything before any I/O: data lengths a multiple of 512,
// sector ranges inside the image with overflow-safe arithmetic, the segment count of
// DISCARD/WRITE_ZEROES, flags, and read-only mode. A request that fails a check completes
// with VIRTIO_BLK_S_IOERR (or UNSUPP); a chain without even a status byte, or a malformed
// chain (virtq.ChainError), is returned with a used length of 0. A ring the driver broke
// (virtq.ErrInvalidAvailIdx, a head index out of range) sets DEVICE_NEEDS_RESET and the
// device stops touching the queue until reset. Nothing a guest does can panic the VMM.
//
// # Concurrency
//
// I/O runs on one device goroutine per activation, started by Activate and stopped (and
// waited for) by Reset and Close. Notify, called on a vCPU thread or an ioeventfd
// goroutine, only wakes that goroutine and never blocks. Reads and writes go straight
// between the file and the chain's guest-memory buffers with preadv/pwritev, no copies.
// Interrupts follow virtq.NeedsInterrupt (EVENT_IDX or VIRTQ_AVAIL_F_NO_INTERRUPT), once
// per batch of requests.
//
// The image is locked with flock (shared for read-only, exclusive for read-write) so two
// VMs never write one image.
package blk
