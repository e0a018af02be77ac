package virtq

import (
	"io"
)

// Chain is one validated descriptor chain: the buffers the driver made available, resolved
// to host memory. Readable buffers (the request) come first, writable ones (room for the
// response) after, as §2.7.4 requires.
//
// The byte slices alias guest memory, which the guest may change at any time: copy a header
// out before validating it, and validate what you copied.
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte

	readableLen, writableLen uint64
}

// ReadableLen is the total size of the device-readable buffers.
func (c *Chain) ReadableLen() uint64 { return c.readableLen }

// WritableLen is the total size of the device-writable buffers.
func (c *Chain) WritableLen() uint64 { return c.writableLen }

// ReadAt copies device-readable bytes starting at off (counted across all readable buffers)
// into p. It returns io.EOF when fewer than len(p) bytes exist from off.
func (c *Chain) ReadAt(p []byte, off int64) (int, error) {
	return gather(c.Readable, p, off)
}

// WriteAt copies p into the device-writable buffers at off (counted across all writable
// buffers). It returns io.ErrShortWrite when they are too small for all of p.
func (c *Chain) WriteAt(p []byte, off int64) (int, error) {
	n, err := scatter(c.Writable, p, off)
	if err == io.EOF {
		err = io.ErrShortWrite
	}
	return n, err
}

// Reader returns an io.Reader over the device-readable bytes from off.
func (c *Chain) Reader(off int64) io.Reader {
	return io.NewSectionReader(readerAtFunc(c.ReadAt), off, int64(c.readableLen)-off)
}

type readerAtFunc func([]byte, int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// gather copies from bufs (viewed as one stream) at off into p.
func gather(bufs [][]byte, p []byte, off int64) (int, error) {
	return copyAt(bufs, p, off, func(b, p []byte) int { return copy(p, b) })
}

// scatter copies p into bufs (viewed as one stream) at off.
func scatter(bufs [][]byte, p []byte, off int64) (int, error) {
	return copyAt(bufs, p, off, func(b, p []byte) int { return copy(b, p) })
}

// copyAt walks bufs as one stream from off and calls move on each buffer's part that
// lines up with the rest of p; move copies in one direction and returns the bytes moved.
// It reports io.EOF when the stream ends before p does.
func copyAt(bufs [][]byte, p []byte, off int64, move func(b, p []byte) int) (int, error) {
	if off < 0 {
		return 0, io.EOF
	}
	n := 0
	for _, b := range bufs {
		if len(p) == 0 {
			break
		}
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		k := move(b[off:], p)
		n += k
		p = p[k:]
		off = 0
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}
