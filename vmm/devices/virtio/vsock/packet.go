// packet.go — the virtio-vsock packet: the 44-byte header (struct virtio_vsock_hdr,
// include/uapi/linux/virtio_vsock.h; virtio 1.2 §5.10.6) and the parser for packets the
// guest places on the TX queue.
//
// What the guest controls: every byte of the header, the payload, and how both are split
// across descriptors. Linux ≥ 6.2 puts header and payload in one descriptor, older kernels
// in two; any split is legal, including a header cut across descriptors. The parser
// copies the header out of guest memory once and validates the copy; the payload is left
// in place (a list of slices aliasing guest memory) and copied exactly once by the caller.
//
// Validation (in this order; the first failure wins):
//
//	check                                 outcome
//	fewer than 44 readable bytes          ErrShortHeader: dropped, no reply (no addresses to answer)
//	src_cid ≠ guest CID, dst_cid ≠ 2      *PacketError, Reply false: dropped (the guest lied about
//	                                      who it is; an RST would go to a made-up address)
//	type ≠ STREAM                         *PacketError, Reply true: answered with RST (type echoed)
//	op not in 1..7                        *PacketError, Reply true: RST
//	len > 64 KiB (MaxPayload)             *PacketError, Reply true: RST
//	len > readable bytes after the header *PacketError, Reply true: RST
//
// Nothing here panics on any input; FuzzPacket checks that.

package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HdrSize is the size of struct virtio_vsock_hdr in bytes.
const HdrSize = 44

// MaxPayload is the largest payload a packet may carry (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE,
// 64 KiB, as in Linux and Firecracker). Larger len fields are rejected.
const MaxPayload = 64 << 10

// HostCID is the context ID of the host (VMADDR_CID_HOST).
const HostCID = 2

// DefaultGuestCID is the guest's context ID when Config.GuestCID is zero.
const DefaultGuestCID = 3

// Type is the socket type field (VIRTIO_VSOCK_TYPE_*).
type Type uint16

// TypeStream is VIRTIO_VSOCK_TYPE_STREAM, the only type this device supports.
const TypeStream Type = 1

// Op is the operation field (enum virtio_vsock_op).
type Op uint16

// Operations (virtio 1.2 §5.10.6).
const (
	OpInvalid       Op = 0 // VIRTIO_VSOCK_OP_INVALID
	OpRequest       Op = 1 // VIRTIO_VSOCK_OP_REQUEST: connect
	OpResponse      Op = 2 // VIRTIO_VSOCK_OP_RESPONSE: connection accepted
	OpRST           Op = 3 // VIRTIO_VSOCK_OP_RST: connection refused or torn down
	OpShutdown      Op = 4 // VIRTIO_VSOCK_OP_SHUTDOWN: flags say which direction(s) closed
	OpRW            Op = 5 // VIRTIO_VSOCK_OP_RW: payload
	OpCreditUpdate  Op = 6 // VIRTIO_VSOCK_OP_CREDIT_UPDATE: buf_alloc/fwd_cnt changed
	OpCreditRequest Op = 7 // VIRTIO_VSOCK_OP_CREDIT_REQUEST: please send a CREDIT_UPDATE
)

func (o Op) String() string {
	switch o {
	case OpInvalid:
		return "INVALID"
	case OpRequest:
		return "REQUEST"
	case OpResponse:
		return "RESPONSE"
	case OpRST:
		return "RST"
	case OpShutdown:
		return "SHUTDOWN"
	case OpRW:
		return "RW"
	case OpCreditUpdate:
		return "CREDIT_UPDATE"
	case OpCreditRequest:
		return "CREDIT_REQUEST"
	}
	return fmt.Sprintf("op(%d)", uint16(o))
}

// Shutdown flags (VIRTIO_VSOCK_SHUTDOWN_*), carried by OpShutdown.
const (
	ShutdownRcv  uint32 = 1 << 0 // the sender will receive no more data
	ShutdownSend uint32 = 1 << 1 // the sender will send no more data
	ShutdownBoth        = ShutdownRcv | ShutdownSend
)

// Hdr is struct virtio_vsock_hdr (include/uapi/linux/virtio_vsock.h), little-endian,
// packed, 44 bytes.
type Hdr struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32 // payload bytes following the header
	Type     Type
	Op       Op
	Flags    uint32
	BufAlloc uint32 // sender's receive buffer size for this connection
	FwdCnt   uint32 // bytes the sender has consumed from its receive buffer (wrapping)
}

// Decode fills h from the first HdrSize bytes of b. b must hold at least HdrSize bytes.
func (h *Hdr) Decode(b []byte) {
	_ = b[HdrSize-1]
	h.SrcCID = binary.LittleEndian.Uint64(b[0:])
	h.DstCID = binary.LittleEndian.Uint64(b[8:])
	h.SrcPort = binary.LittleEndian.Uint32(b[16:])
	h.DstPort = binary.LittleEndian.Uint32(b[20:])
	h.Len = binary.LittleEndian.Uint32(b[24:])
	h.Type = Type(binary.LittleEndian.Uint16(b[28:]))
	h.Op = Op(binary.LittleEndian.Uint16(b[30:]))
	h.Flags = binary.LittleEndian.Uint32(b[32:])
	h.BufAlloc = binary.LittleEndian.Uint32(b[36:])
	h.FwdCnt = binary.LittleEndian.Uint32(b[40:])
}

// Encode writes h into the first HdrSize bytes of b. b must hold at least HdrSize bytes.
func (h *Hdr) Encode(b []byte) {
	_ = b[HdrSize-1]
	binary.LittleEndian.PutUint64(b[0:], h.SrcCID)
	binary.LittleEndian.PutUint64(b[8:], h.DstCID)
	binary.LittleEndian.PutUint32(b[16:], h.SrcPort)
	binary.LittleEndian.PutUint32(b[20:], h.DstPort)
	binary.LittleEndian.PutUint32(b[24:], h.Len)
	binary.LittleEndian.PutUint16(b[28:], uint16(h.Type))
	binary.LittleEndian.PutUint16(b[30:], uint16(h.Op))
	binary.LittleEndian.PutUint32(b[32:], h.Flags)
	binary.LittleEndian.PutUint32(b[36:], h.BufAlloc)
	binary.LittleEndian.PutUint32(b[40:], h.FwdCnt)
}

func (h *Hdr) String() string {
	return fmt.Sprintf("%s %d:%d→%d:%d len=%d type=%d flags=%#x buf_alloc=%d fwd_cnt=%d",
		h.Op, h.SrcCID, h.SrcPort, h.DstCID, h.DstPort, h.Len, h.Type, h.Flags, h.BufAlloc, h.FwdCnt)
}

// ErrShortHeader means a TX chain had fewer than HdrSize readable bytes.
var ErrShortHeader = errors.New("vsock: packet shorter than the 44-byte header")

// PacketError is a TX packet whose header was read but is invalid.
type PacketError struct {
	Hdr    Hdr
	Reason string
	// Reply is true when the header's addresses are the guest's own and the packet should
	// be answered with an RST (unless it is itself an RST).
	Reply bool
}

func (e *PacketError) Error() string {
	return fmt.Sprintf("vsock: packet %v: %s", &e.Hdr, e.Reason)
}

// Packet is a validated guest→host packet. Payload aliases guest memory: exactly Hdr.Len
// bytes spread over one or more slices.
type Packet struct {
	Hdr     Hdr
	Payload [][]byte
}

// ParsePacket parses and validates the packet in bufs, the device-readable buffers of one
// TX descriptor chain in order. guestCID is the only source CID accepted.
func ParsePacket(bufs [][]byte, guestCID uint64) (Packet, error) {
	var raw [HdrSize]byte
	n, rest := gatherHeader(bufs, raw[:])
	if n < HdrSize {
		return Packet{}, ErrShortHeader
	}
	var p Packet
	p.Hdr.Decode(raw[:])
	h := &p.Hdr
	bad := func(reply bool, format string, args ...any) (Packet, error) {
		return Packet{}, &PacketError{Hdr: *h, Reason: fmt.Sprintf(format, args...), Reply: reply}
	}
	switch {
	case h.SrcCID != guestCID:
		return bad(false, "source CID %d is not the guest's (%d)", h.SrcCID, guestCID)
	case h.DstCID != HostCID:
		return bad(false, "destination CID %d is not the host's (%d)", h.DstCID, HostCID)
	case h.Type != TypeStream:
		return bad(true, "unsupported socket type %d", h.Type)
	case h.Op < OpRequest || h.Op > OpCreditRequest:
		return bad(true, "unknown operation %d", uint16(h.Op))
	case h.Len > MaxPayload:
		return bad(true, "payload length %d exceeds %d", h.Len, MaxPayload)
	}
	avail := 0
	for _, b := range rest {
		avail += len(b)
		if avail >= int(h.Len) {
			break
		}
	}
	if avail < int(h.Len) {
		return bad(true, "payload length %d but only %d bytes follow the header", h.Len, avail)
	}
	// Trim the payload view to exactly Len bytes.
	need := int(h.Len)
	for _, b := range rest {
		if need == 0 {
			break
		}
		if len(b) == 0 {
			continue
		}
		k := min(len(b), need)
		p.Payload = append(p.Payload, b[:k:k])
		need -= k
	}
	return p, nil
}

// gatherHeader copies the first len(dst) bytes spread over bufs into dst and returns how
// many it copied and the buffers that follow them (the first one possibly trimmed).
func gatherHeader(bufs [][]byte, dst []byte) (int, [][]byte) {
	n := 0
	for i, b := range bufs {
		k := copy(dst[n:], b)
		n += k
		if n == len(dst) {
			rest := bufs[i+1:]
			if k < len(b) {
				rest = append([][]byte{b[k:]}, rest...)
			}
			return n, rest
		}
	}
	return n, nil
}
