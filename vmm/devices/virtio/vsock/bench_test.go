package vsock

import (
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// The vsock benchmarks move a stream of msg-sized writes through the device, with the
// guest played by the virtiotest driver over the real mmio transport (so the numbers
// include that test driver's own copying). Each reports, besides MB/s, the throughput of
// a plain Unix socket pair copying the same stream with the same write size, measured in
// the same run ("baseline-MB/s"), and the ratio of the two ("x-baseline").
//
//	go test -run XXX -bench Vsock -benchtime 2s ./vmm/devices/virtio/vsock/

const baselineBytes = 64 << 20

// unixPair returns both ends of a connected Unix stream socket pair.
func unixPair(tb testing.TB) (*net.UnixConn, *net.UnixConn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			tb.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

// baselineMBps copies baselineBytes through a Unix socket pair in msg-sized writes.
func baselineMBps(tb testing.TB, msg int) float64 {
	a, b := unixPair(tb)
	defer a.Close()
	defer b.Close()
	buf := make([]byte, msg)
	start := time.Now()
	go func() {
		for n := 0; n < baselineBytes; n += msg {
			if _, err := a.Write(buf); err != nil {
				return
			}
		}
		a.CloseWrite()
	}()
	rbuf := make([]byte, max(msg, 64<<10))
	got, _ := io.CopyBuffer(io.Discard, b, rbuf)
	if got < baselineBytes {
		tb.Fatalf("baseline copied %d bytes", got)
	}
	return float64(got) / time.Since(start).Seconds() / 1e6
}

// report records the baseline (measured before the device run, averaged with a second
// measurement now, since the machine is shared) and the ratio.
func report(b *testing.B, n int64, elapsed time.Duration, before float64, msg int) {
	base := (before + baselineMBps(b, msg)) / 2
	mbps := float64(n) / elapsed.Seconds() / 1e6
	b.ReportMetric(base, "baseline-MB/s")
	b.ReportMetric(mbps/base, "x-baseline")
}

func benchHostToGuest(b *testing.B, msg int) {
	base := baselineMBps(b, msg)
	g := newTestGuest(b, guestOpts{rxBufs: 128})
	lnG := g.listen(1)
	hc, _, err := g.hostConnect(1)
	if err != nil {
		b.Fatal(err)
	}
	defer hc.Close()
	gc := acceptGuest(b, lnG)
	buf := make([]byte, msg)
	total := int64(b.N) * int64(msg)
	b.SetBytes(int64(msg))
	b.ResetTimer()
	start := time.Now()
	go func() {
		for range b.N {
			if _, err := hc.Write(buf); err != nil {
				return
			}
		}
	}()
	rbuf := make([]byte, 256<<10)
	for got := int64(0); got < total; {
		n, err := gc.Read(rbuf)
		if err != nil {
			b.Fatal(err)
		}
		got += int64(n)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	report(b, total, elapsed, base, msg)
}

func benchGuestToHost(b *testing.B, msg int) {
	base := baselineMBps(b, msg)
	g := newTestGuest(b, guestOpts{})
	ln := g.hostListen(2)
	gc, err := g.dial(2)
	if err != nil {
		b.Fatal(err)
	}
	hc := accept(b, ln)
	defer hc.Close()
	gc.maxPkt = msg
	buf := make([]byte, msg)
	total := int64(b.N) * int64(msg)
	b.SetBytes(int64(msg))
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for range b.N {
			if _, err := gc.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	if _, err := io.CopyN(io.Discard, hc, total); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	report(b, total, elapsed, base, msg)
}

func BenchmarkVsockHostToGuest4K(b *testing.B)  { benchHostToGuest(b, 4<<10) }
func BenchmarkVsockHostToGuest64K(b *testing.B) { benchHostToGuest(b, 64<<10) }
func BenchmarkVsockGuestToHost4K(b *testing.B)  { benchGuestToHost(b, 4<<10) }
func BenchmarkVsockGuestToHost64K(b *testing.B) { benchGuestToHost(b, 64<<10) }
