package rootfs

import (
	"errors"
	"io"
	"sync"
)

// readahead reads its source (a decompressing layer reader) in its own goroutine into a few
// buffers, so decompression runs in parallel with writing the files, as `gzip -d | tar -x`
// does with two processes. Close stops the goroutine and closes the source.
type readahead struct {
	full  chan []byte // filled buffers, in order
	empty chan []byte // buffers to refill
	errc  chan error  // the source's final error (io.EOF at the end)
	done  chan struct{}
	src   io.ReadCloser
	buf   []byte // the buffer being consumed
	cur   []byte // its unread part
	err   error
	once  sync.Once
}

const (
	readaheadBuffers = 4
	readaheadSize    = 1 << 20
)

func newReadahead(src io.ReadCloser) *readahead {
	r := &readahead{
		full:  make(chan []byte, readaheadBuffers),
		empty: make(chan []byte, readaheadBuffers),
		errc:  make(chan error, 1),
		done:  make(chan struct{}),
		src:   src,
	}
	for range readaheadBuffers {
		r.empty <- make([]byte, readaheadSize)
	}
	go r.fill()
	return r
}

func (r *readahead) fill() {
	defer close(r.full)
	for {
		var buf []byte
		select {
		case buf = <-r.empty:
		case <-r.done:
			return
		}
		n, err := io.ReadFull(r.src, buf[:cap(buf)])
		if n > 0 {
			select {
			case r.full <- buf[:n]:
			case <-r.done:
				return
			}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		if err != nil {
			r.errc <- err
			return
		}
	}
}

func (r *readahead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		buf, ok := <-r.full
		if !ok {
			select {
			case r.err = <-r.errc:
			default:
				r.err = io.ErrClosedPipe
			}
			continue
		}
		r.buf, r.cur = buf, buf
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	if len(r.cur) == 0 {
		r.empty <- r.buf[:cap(r.buf)]
		r.buf, r.cur = nil, nil
	}
	return n, nil
}

// Close stops reading ahead and closes the source.
func (r *readahead) Close() error {
	r.once.Do(func() { close(r.done) })
	for range r.full { // wait for fill to exit so the source is no longer in use
	}
	return r.src.Close()
}
