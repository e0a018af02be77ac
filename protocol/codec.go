package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Payload encoding: little-endian fixed-size integers; strings and byte slices are a u32
// length then the bytes; lists are a u32 count then the elements. A payload must be consumed
// exactly: trailing bytes are an error (they would hide a version mismatch).

func appendU8(b []byte, v uint8) []byte   { return append(b, v) }
func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func appendI64(b []byte, v int64) []byte  { return appendU64(b, uint64(v)) }
func appendDur(b []byte, d time.Duration) []byte {
	return appendI64(b, int64(d))
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = appendU32(b, uint32(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// ErrMalformed is wrapped by every payload decoding error.
var ErrMalformed = errors.New("protocol: malformed payload")

// decoder reads fields from one payload. The first error sticks; later reads return zero
// values, so decode functions read all fields and check err once.
type decoder struct {
	buf []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
}

// take returns the next n bytes of the payload, or nil after recording an error.
func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf)-d.off {
		d.fail("%s: need %d bytes at offset %d, have %d", what, n, d.off, len(d.buf)-d.off)
		return nil
	}
	p := d.buf[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(what string) uint8 {
	if p := d.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if p := d.take(2, what); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if p := d.take(4, what); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if p := d.take(8, what); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) i64(what string) int64 { return int64(d.u64(what)) }

func (d *decoder) dur(what string) time.Duration { return time.Duration(d.i64(what)) }

func (d *decoder) boolean(what string) bool {
	switch v := d.u8(what); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("%s: bool byte %d", what, v)
		return false
	}
}

// bytes returns a length-prefixed byte slice aliasing the payload.
func (d *decoder) bytes(what string, limit int) []byte {
	n := d.u32(what)
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(limit) {
		d.fail("%s: length %d exceeds limit %d", what, n, limit)
		return nil
	}
	return d.take(int(n), what)
}

func (d *decoder) str(what string, limit int) string {
	return string(d.bytes(what, limit))
}

// strs decodes a list of at most maxCount strings of at most maxLen bytes each. The count
// is checked against the bytes left (each element takes at least 4), so a lying count cannot
// make it allocate more than the payload justifies.
func (d *decoder) strs(what string, maxCount, maxLen int) []string {
	n := d.u32(what)
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(maxCount) {
		d.fail("%s: count %d exceeds limit %d", what, n, maxCount)
		return nil
	}
	if uint64(n)*4 > uint64(len(d.buf)-d.off) {
		d.fail("%s: count %d larger than the %d bytes left", what, n, len(d.buf)-d.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := uint32(0); i < n && d.err == nil; i++ {
		out = append(out, d.str(what, maxLen))
	}
	return out
}

// finish reports the sticky error, or an error if bytes are left over.
func (d *decoder) finish(t Type) error {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", len(d.buf)-d.off)
	}
	if d.err != nil {
		return fmt.Errorf("%v: %w", t, d.err)
	}
	return nil
}
