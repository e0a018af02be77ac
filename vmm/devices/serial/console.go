package serial

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultConsoleBuffer is the console buffer size: enough for a whole verbose boot log
// while the writer is slow.
const DefaultConsoleBuffer = 256 << 10

// closeFlushTimeout bounds how long Close waits for a stuck writer.
const closeFlushTimeout = 2 * time.Second

// Console is a non-blocking, bounded io.Writer in front of a possibly slow one. Write
// copies into a buffer of at most max bytes and returns at once; a goroutine drains the
// buffer into the destination. Bytes that do not fit are dropped and counted.
type Console struct {
	dst io.Writer
	max int

	mu      sync.Mutex
	pending []byte // guarded by mu
	closed  bool   // guarded by mu

	wake    chan struct{} // capacity 1: "pending has data or closed"
	done    chan struct{} // closed when the drain goroutine has exited
	dropped atomic.Uint64
	errs    atomic.Uint64
}

// NewConsole starts a console draining into dst (nil discards) with a buffer of max bytes
// (<= 0: DefaultConsoleBuffer).
func NewConsole(dst io.Writer, max int) *Console {
	if dst == nil {
		dst = io.Discard
	}
	if max <= 0 {
		max = DefaultConsoleBuffer
	}
	c := &Console{dst: dst, max: max, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.drain()
	return c
}

// Write buffers p; it never blocks on the destination and always reports len(p) written.
// Bytes beyond the buffer limit (or after Close) are dropped.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	room := c.max - len(c.pending)
	if c.closed {
		room = 0
	}
	n := min(len(p), max(room, 0))
	c.pending = append(c.pending, p[:n]...)
	c.mu.Unlock()
	if n < len(p) {
		c.dropped.Add(uint64(len(p) - n))
	}
	if n > 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (c *Console) drain() {
	defer close(c.done)
	var spare []byte
	for range c.wake {
		for {
			c.mu.Lock()
			buf := c.pending
			c.pending = spare[:0]
			closed := c.closed
			c.mu.Unlock()
			if len(buf) > 0 {
				if _, err := c.dst.Write(buf); err != nil {
					c.errs.Add(1)
				}
			}
			spare = buf
			if closed && len(buf) == 0 {
				return
			}
			if len(buf) == 0 {
				break
			}
		}
	}
}

// Dropped is the number of bytes discarded because the buffer was full.
func (c *Console) Dropped() uint64 { return c.dropped.Load() }

// WriteErrors is the number of failed writes to the destination.
func (c *Console) WriteErrors() uint64 { return c.errs.Load() }

// Close flushes what is buffered to the destination (waiting at most a few seconds for a
// stuck writer) and stops the drain goroutine. Later writes are dropped.
func (c *Console) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case <-c.done:
	case <-time.After(closeFlushTimeout):
	}
	return nil
}
