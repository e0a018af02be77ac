package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrFrameTooLarge is wrapped by errors about a frame longer than its type allows.
var ErrFrameTooLarge = errors.New("protocol: frame too large")

// VersionError reports a peer that speaks another protocol version.
type VersionError struct {
	Got, Want uint16
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("protocol: peer speaks version %d, want %d", e.Got, e.Want)
}

// CheckHello returns a *VersionError unless h is from a peer of this Version.
func CheckHello(h Hello) error {
	if h.Version != Version {
		return &VersionError{Got: h.Version, Want: Version}
	}
	return nil
}

// Writer writes frames to a stream. It is safe for concurrent use: each frame is written
// whole under a lock, so two goroutines pumping stdout and stderr interleave at frame
// boundaries only.
type Writer struct {
	mu      sync.Mutex
	w       io.Writer
	scratch []byte // guarded by mu
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write encodes m and writes it as one frame (one Write call on the underlying stream).
func (w *Writer) Write(m Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := append(w.scratch[:0], 0, 0, 0, 0, 0)
	b = m.appendPayload(b)
	if cap(b) <= 64<<10 {
		w.scratch = b // keep small buffers; drop the odd large one
	}
	return w.writeLocked(m.Type(), b)
}

// WriteFrame writes a frame whose payload the caller already placed at
// frame[HeaderSize:]; it fills in the header. This lets a producer read straight into a
// frame buffer and send it with a single write, without copying.
func (w *Writer) WriteFrame(t Type, frame []byte) error {
	if len(frame) < HeaderSize {
		return fmt.Errorf("protocol: write %v: frame shorter than its header", t)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(t, frame)
}

// Precondition: w.mu held; frame[:HeaderSize] is free for the header.
func (w *Writer) writeLocked(t Type, frame []byte) error {
	n := len(frame) - HeaderSize
	if limit := MaxPayload(t); limit < 0 || n > limit {
		return fmt.Errorf("%w: write %v: %d bytes, limit %d", ErrFrameTooLarge, t, n, limit)
	}
	frame[0] = byte(t)
	binary.LittleEndian.PutUint32(frame[1:HeaderSize], uint32(n))
	if _, err := w.w.Write(frame); err != nil {
		return fmt.Errorf("protocol: write %v: %w", t, err)
	}
	return nil
}

// Reader reads frames from a stream. It is not safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	hdr [HeaderSize]byte
	buf []byte // payload buffer, reused; grows up to the largest frame seen
	err error  // sticky: after a framing error the stream position is unknown
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Read returns the next message. It returns io.EOF if the stream ended cleanly between
// frames and io.ErrUnexpectedEOF if it ended inside one. Data and FileData alias the
// reader's buffer and are valid until the next call. Any error is final.
func (r *Reader) Read() (Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	m, err := r.read()
	if err != nil {
		r.err = err
	}
	return m, err
}

func (r *Reader) read() (Message, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return nil, err
	}
	t := Type(r.hdr[0])
	n := binary.LittleEndian.Uint32(r.hdr[1:])
	limit := MaxPayload(t)
	if limit < 0 {
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, uint8(t))
	}
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: %v of %d bytes, limit %d", ErrFrameTooLarge, t, n, limit)
	}
	p, err := r.readPayload(int(n))
	if err != nil {
		return nil, fmt.Errorf("protocol: read %v payload: %w", t, err)
	}
	return decodePayload(t, p)
}

// growStep is the first allocation for a payload larger than the buffer.
const growStep = 64 << 10

// readPayload reads n bytes into r.buf. The buffer grows with the bytes that actually
// arrive (doubling from growStep), so a header that promises 1 MiB followed by a short
// stream costs at most about twice what was received, not what was promised.
func (r *Reader) readPayload(n int) ([]byte, error) {
	if n <= cap(r.buf) {
		p := r.buf[:n]
		if _, err := io.ReadFull(r.r, p); err != nil {
			return nil, unexpected(err)
		}
		return p, nil
	}
	got := 0
	buf := r.buf[:0]
	for got < n {
		size := min(n, max(2*cap(buf), growStep))
		if size > cap(buf) {
			nb := make([]byte, size)
			copy(nb, buf[:got])
			buf = nb
		}
		buf = buf[:size]
		m, err := io.ReadFull(r.r, buf[got:size])
		got += m
		if err != nil {
			return nil, unexpected(err)
		}
	}
	r.buf = buf
	return buf[:n], nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
