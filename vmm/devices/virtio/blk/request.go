package blk

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

// SectorSize is the unit of virtio-blk addresses and of capacity (always 512, §5.2.4).
const SectorSize = 512

// RequestType is the type field of struct virtio_blk_req (VIRTIO_BLK_T_*).
type RequestType uint32

const (
	TypeIn          RequestType = 0  // VIRTIO_BLK_T_IN
	TypeOut         RequestType = 1  // VIRTIO_BLK_T_OUT
	TypeFlush       RequestType = 4  // VIRTIO_BLK_T_FLUSH
	TypeGetID       RequestType = 8  // VIRTIO_BLK_T_GET_ID
	TypeGetLifetime RequestType = 10 // VIRTIO_BLK_T_GET_LIFETIME
	TypeDiscard     RequestType = 11 // VIRTIO_BLK_T_DISCARD
	TypeWriteZeroes RequestType = 13 // VIRTIO_BLK_T_WRITE_ZEROES
	TypeSecureErase RequestType = 15 // VIRTIO_BLK_T_SECURE_ERASE
)

func (t RequestType) String() string {
	switch t {
	case TypeIn:
		return "IN"
	case TypeOut:
		return "OUT"
	case TypeFlush:
		return "FLUSH"
	case TypeGetID:
		return "GET_ID"
	case TypeGetLifetime:
		return "GET_LIFETIME"
	case TypeDiscard:
		return "DISCARD"
	case TypeWriteZeroes:
		return "WRITE_ZEROES"
	case TypeSecureErase:
		return "SECURE_ERASE"
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Status is the status byte the device writes last (VIRTIO_BLK_S_*).
type Status byte

const (
	StatusOK     Status = 0 // VIRTIO_BLK_S_OK
	StatusIOErr  Status = 1 // VIRTIO_BLK_S_IOERR
	StatusUnsupp Status = 2 // VIRTIO_BLK_S_UNSUPP
)

// headerSize is the size of the request header (type, reserved, sector).
const headerSize = 16

// IDBytes is the size of the GET_ID answer (VIRTIO_BLK_ID_BYTES).
const IDBytes = 20

// segmentSize is the size of struct virtio_blk_discard_write_zeroes.
const segmentSize = 16

// WriteZeroesFlagUnmap is VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: the zeroed range may be
// deallocated.
const WriteZeroesFlagUnmap = 1

// Segment is one struct virtio_blk_discard_write_zeroes.
type Segment struct {
	Sector     uint64
	NumSectors uint32
	Flags      uint32
}

// limits are the device properties a request is checked against.
type limits struct {
	capacity    uint64 // sectors
	readOnly    bool
	discard     bool // VIRTIO_BLK_F_DISCARD negotiated
	writeZeroes bool // VIRTIO_BLK_F_WRITE_ZEROES negotiated
	maxSegments uint32
	maxSectors  uint32 // per DISCARD/WRITE_ZEROES segment
}

// request is one parsed, validated virtio_blk_req. Its buffers alias guest memory.
type request struct {
	typ    RequestType
	sector uint64
	// data: IN and GET_ID, the writable buffers before the status byte; OUT, the readable
	// buffers after the header.
	data     [][]byte
	dataLen  uint64
	segments []Segment // DISCARD, WRITE_ZEROES
	status   []byte    // the status byte (len 1)
}

// requestError fails one request with a status.
type requestError struct {
	status Status
	reason string
}

func (e *requestError) Error() string {
	return fmt.Sprintf("blk: request: %s (status %d)", e.reason, e.status)
}

func ioErr(format string, args ...any) *requestError {
	return &requestError{StatusIOErr, fmt.Sprintf(format, args...)}
}

// errNoStatus means the chain has no writable byte to put a status in.
var errNoStatus = &requestError{StatusIOErr, "chain has no writable status byte"}

// totalLen is the combined length of bufs.
func totalLen(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}

// subrange returns the bytes [off, off+n) of bufs viewed as one stream, as sub-slices
// (no copy). The caller guarantees off+n ≤ totalLen(bufs).
func subrange(bufs [][]byte, off, n uint64) [][]byte {
	var out [][]byte
	for _, b := range bufs {
		if n == 0 {
			break
		}
		l := uint64(len(b))
		if off >= l {
			off -= l
			continue
		}
		k := min(l-off, n)
		out = append(out, b[off:off+k])
		n -= k
		off = 0
	}
	return out
}

// parseRequest validates chain c as a virtio-blk request. On a *requestError with a
// non-nil status slice the caller completes the request with that error status; when the
// returned request has no status byte (errNoStatus) it can only return the chain.
func parseRequest(c *virtq.Chain, lim limits) (request, error) {
	var r request
	wlen := totalLen(c.Writable)
	if wlen == 0 {
		return r, errNoStatus
	}
	r.status = subrange(c.Writable, wlen-1, 1)[0]
	rlen := totalLen(c.Readable)
	if rlen < headerSize {
		return r, ioErr("header is %d bytes, want %d", rlen, headerSize)
	}
	var hdr [headerSize]byte
	copy(hdr[:], flatten(subrange(c.Readable, 0, headerSize))) // read the header once
	r.typ = RequestType(binary.LittleEndian.Uint32(hdr[0:]))
	r.sector = binary.LittleEndian.Uint64(hdr[8:])
	readData := rlen - headerSize
	writeData := wlen - 1

	switch r.typ {
	case TypeIn, TypeOut:
		in := r.typ == TypeIn
		if in && readData != 0 || !in && writeData != 0 {
			return r, ioErr("%s with %d readable and %d writable data bytes", r.typ, readData, writeData)
		}
		if in {
			r.data, r.dataLen = subrange(c.Writable, 0, writeData), writeData
		} else {
			if lim.readOnly {
				return r, ioErr("OUT on a read-only device")
			}
			r.data, r.dataLen = subrange(c.Readable, headerSize, readData), readData
		}
		if r.dataLen%SectorSize != 0 {
			return r, ioErr("%s of %d bytes, not a multiple of %d", r.typ, r.dataLen, SectorSize)
		}
		if err := checkRange(r.sector, r.dataLen/SectorSize, lim.capacity); err != nil {
			return r, err
		}
	case TypeFlush:
		// The sector field is reserved for FLUSH; data buffers carry nothing.
	case TypeGetID:
		if writeData == 0 || readData != 0 {
			return r, ioErr("GET_ID with %d readable and %d writable data bytes", readData, writeData)
		}
		r.data, r.dataLen = subrange(c.Writable, 0, min(writeData, IDBytes)), min(writeData, IDBytes)
	case TypeDiscard, TypeWriteZeroes:
		if r.typ == TypeDiscard && !lim.discard || r.typ == TypeWriteZeroes && !lim.writeZeroes {
			return r, &requestError{StatusUnsupp, r.typ.String() + " not negotiated"}
		}
		if lim.readOnly {
			return r, ioErr("%s on a read-only device", r.typ)
		}
		if writeData != 0 || readData == 0 || readData%segmentSize != 0 || readData/segmentSize > uint64(lim.maxSegments) {
			return r, ioErr("%s with %d bytes of segments (max %d segments) and %d writable bytes",
				r.typ, readData, lim.maxSegments, writeData)
		}
		raw := flatten(subrange(c.Readable, headerSize, readData)) // copied once
		for off := 0; off < len(raw); off += segmentSize {
			s := Segment{
				Sector:     binary.LittleEndian.Uint64(raw[off:]),
				NumSectors: binary.LittleEndian.Uint32(raw[off+8:]),
				Flags:      binary.LittleEndian.Uint32(raw[off+12:]),
			}
			// §5.2.6.2: unknown flags, or UNMAP on DISCARD, are UNSUPP.
			if s.Flags&^WriteZeroesFlagUnmap != 0 || r.typ == TypeDiscard && s.Flags != 0 {
				return r, &requestError{StatusUnsupp, fmt.Sprintf("%s segment flags %#x", r.typ, s.Flags)}
			}
			if s.NumSectors > lim.maxSectors {
				return r, ioErr("%s segment of %d sectors exceeds %d", r.typ, s.NumSectors, lim.maxSectors)
			}
			if err := checkRange(s.Sector, uint64(s.NumSectors), lim.capacity); err != nil {
				return r, err
			}
			r.segments = append(r.segments, s)
		}
	default:
		return r, &requestError{StatusUnsupp, "unsupported request " + r.typ.String()}
	}
	return r, nil
}

// checkRange fails unless sectors [sector, sector+n) lie inside the disk.
func checkRange(sector, n, capacity uint64) error {
	end, carry := bits.Add64(sector, n, 0)
	if carry != 0 || end > capacity {
		return ioErr("sectors [%d, +%d) beyond capacity %d", sector, n, capacity)
	}
	return nil
}

// flatten copies bufs into one new slice.
func flatten(bufs [][]byte) []byte {
	out := make([]byte, 0, totalLen(bufs))
	for _, b := range bufs {
		out = append(out, b...)
	}
	return out
}
