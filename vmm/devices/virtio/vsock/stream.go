// stream.go — the host half of one established connection: two goroutines that move
// bytes between the Unix socket and the device loop without ever letting either side
// block the other.
//
//	goroutine  owns                         waits for                       reports (event)
//	writer     the consumer end of out      wake (loop appended / shut)     evWritten{n, err}, evWriteClosed
//	reader     one chunk buffer at a time   grant (loop: guest has credit)  evRead{data, err}
//
// The loop is the only producer of out (guest RW payloads, copied straight from guest
// memory) and the only sender on grant/wake; both channels have capacity 1 and the loop
// never has more than one grant outstanding, so the loop never blocks on a stream. The
// goroutines block on the socket and on posting events; closing the socket (teardown)
// and the done channel release them.
//
// out is a single-producer single-consumer byte ring of bufAlloc bytes, allocated when
// the first payload arrives. Its indices are guarded by mu; the bytes themselves are
// touched outside the lock, each region by one side only: the producer writes only free
// space and the consumer reads only filled space, and the index updates under mu order
// the two.

package vsock

import (
	"errors"
	"io"
	"net"
	"sync"
)

// maxWrite bounds one write to the Unix socket.
const maxWrite = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, MaxPayload); return &b }}

func getChunkBuf() *[]byte { return chunkPool.Get().(*[]byte) }

func putChunkBuf(b *[]byte) {
	if b != nil {
		chunkPool.Put(b)
	}
}

// byteRing is the guest→host buffer of one connection.
type byteRing struct {
	mu    sync.Mutex
	buf   []byte // len bufAlloc once allocated; guarded by mu for allocation only
	r, w  uint64 // bytes consumed / produced so far; guarded by mu
	shut  bool   // after draining, shut the write side; guarded by mu
	wrote bool   // (writer only) the write side was shut
}

// put appends the payload slices. Precondition: called by the loop only, and the total
// fits (the loop's credit accounting guarantees len(payload) ≤ free space).
func (b *byteRing) put(payload [][]byte) {
	b.mu.Lock()
	if b.buf == nil {
		b.buf = make([]byte, bufAlloc)
	}
	buf, w := b.buf, b.w
	b.mu.Unlock()
	n := uint64(0)
	size := uint64(len(buf))
	for _, p := range payload {
		for len(p) > 0 {
			pos := (w + n) % size
			k := copy(buf[pos:], p)
			p = p[k:]
			n += uint64(k)
		}
	}
	b.mu.Lock()
	b.w += n
	b.mu.Unlock()
}

// next returns the next contiguous filled segment (consumer only), and whether the write
// side should be shut once everything is written.
func (b *byteRing) next() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r == b.w {
		return nil, b.shut
	}
	size := uint64(len(b.buf))
	pos := b.r % size
	end := min(pos+(b.w-b.r), size)
	return b.buf[pos:end], b.shut
}

func (b *byteRing) consume(n int) {
	b.mu.Lock()
	b.r += uint64(n)
	b.mu.Unlock()
}

func (b *byteRing) shutWrite() {
	b.mu.Lock()
	b.shut = true
	b.mu.Unlock()
}

// stream runs the I/O goroutines of one connection.
type stream struct {
	c        *conn
	sock     *net.UnixConn
	out      byteRing
	preamble []byte        // written before anything else ("OK <port>\n" for host clients)
	wake     chan struct{} // loop → writer: out has data or should be shut
	grant    chan int      // loop → reader: read at most this many bytes
	done     chan struct{} // closed on teardown
}

func newStream(c *conn, sock *net.UnixConn, preamble []byte) *stream {
	return &stream{
		c:        c,
		sock:     sock,
		preamble: preamble,
		wake:     make(chan struct{}, 1),
		grant:    make(chan int, 1),
		done:     make(chan struct{}),
	}
}

// start runs the reader and writer goroutines, tracked by h.wg.
func (s *stream) start(h *host) {
	h.wg.Add(2)
	go func() { defer h.wg.Done(); s.writeLoop(h) }()
	go func() { defer h.wg.Done(); s.readLoop(h) }()
}

// notify wakes the writer (loop only; never blocks).
func (s *stream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// allowRead lets the reader read n bytes. Precondition: no grant is outstanding (the
// loop tracks conn.grant), so the send never blocks.
func (s *stream) allowRead(n int) {
	select {
	case s.grant <- n:
	default:
		panic("vsock: read grant while one is outstanding") // invariant of conn.grant
	}
}

// stop releases both goroutines: closing the socket fails their blocked calls.
func (s *stream) stop() {
	close(s.done)
	s.sock.Close()
}

func (s *stream) writeLoop(h *host) {
	if len(s.preamble) > 0 {
		if _, err := s.sock.Write(s.preamble); err != nil {
			h.post(event{kind: evWritten, c: s.c, err: err})
			return
		}
	}
	for {
		seg, shut := s.out.next()
		if len(seg) == 0 {
			if shut && !s.out.wrote {
				s.out.wrote = true
				err := s.sock.CloseWrite()
				if !h.post(event{kind: evWriteClosed, c: s.c, err: err}) {
					return
				}
			}
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		// At most maxWrite per call, so fwd_cnt (and the guest's credit) advances in
		// steps even when the Unix peer reads slowly.
		n, err := s.sock.Write(seg[:min(len(seg), maxWrite)])
		s.out.consume(n)
		if !h.post(event{kind: evWritten, c: s.c, n: n, err: err}) || err != nil {
			return
		}
	}
}

func (s *stream) readLoop(h *host) {
	for {
		var n int
		select {
		case n = <-s.grant:
		case <-s.done:
			return
		}
		buf := getChunkBuf()
		k, err := s.sock.Read((*buf)[:n])
		if k == 0 && err == nil {
			err = io.ErrNoProgress
		}
		if !h.post(event{kind: evRead, c: s.c, buf: buf, data: (*buf)[:k], err: err}) {
			putChunkBuf(buf)
			return
		}
		if err != nil {
			return
		}
	}
}

// isEOF reports whether a read error is an orderly end of stream.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }
