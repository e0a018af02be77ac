package serial

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmbench/runner/internal/syncbuf"
)

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	buf     syncbuf.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.buf.Write(p)
}

func TestConsoleNeverBlocksAndCountsDrops(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	c := NewConsole(w, 64)
	// The drain goroutine takes the first chunk and blocks in Write; later bytes pile up to
	// 64 and the rest is dropped — all without blocking this goroutine.
	c.Write([]byte("first"))
	for range 100 {
		c.Write([]byte("0123456789"))
	}
	if c.Dropped() == 0 {
		t.Fatal("nothing dropped with a blocked writer")
	}
	close(w.release)
	c.Close()
	got := w.buf.String()
	if len(got)+int(c.Dropped()) != 5+1000 {
		t.Errorf("written %d + dropped %d != 1005", len(got), c.Dropped())
	}
	if !strings.HasPrefix(got, "first") || len(got) > 2*64 { // at most one buffer in flight plus one pending
		t.Errorf("got %q", got)
	}
	if n, err := c.Write([]byte("late")); n != 4 || err != nil || c.Dropped() != 1005-uint64(len(got))+4 {
		t.Errorf("write after close: %d %v dropped %d", n, err, c.Dropped())
	}
}

func TestConsoleFlushesOnClose(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out, 0)
	for range 1000 {
		c.Write([]byte("line of console output\n"))
	}
	c.Close()
	if out.Len() != 1000*23 || c.Dropped() != 0 {
		t.Errorf("flushed %d bytes, dropped %d", out.Len(), c.Dropped())
	}
	c.Close() // idempotent
}
