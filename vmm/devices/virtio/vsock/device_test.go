package vsock

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio"
)

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// hostListen listens on <uds>_<port> like a host service waiting for the guest.
func (g *testGuest) hostListen(port uint32) *net.UnixListener {
	g.t.Helper()
	path := g.uds + "_" + strconv.FormatUint(uint64(port), 10)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { ln.Close() })
	return ln
}

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// hostConnect connects a host client to the guest's port and completes the handshake.
func (g *testGuest) hostConnect(port uint32) (*net.UnixConn, uint32, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.uds, Net: "unix"})
	if err != nil {
		return nil, 0, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		c.Close()
		return nil, 0, err
	}
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	line, err := readLine(c)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("read OK line: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	var hp uint32
	if _, err := fmt.Sscanf(line, "OK %d", &hp); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("handshake reply %q: %w", line, err)
	}
	return c, hp, nil
}

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// readLine reads up to a newline one byte at a time (no read-ahead into the stream).
func readLine(r io.Reader) (string, error) {
	var b [1]byte
	var s []byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return string(s), err
		}
		if b[0] == '\n' {
			return string(s), nil
		}
		s = append(s, b[0])
	}
}

func accept(t testing.TB, ln *net.UnixListener) *net.UnixConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(waitTimeout))
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func acceptGuest(t testing.TB, ch chan *gconn) *gconn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("guest listener: no connection")
		return nil
	}
}

func expectUnmatched(t testing.TB, g *testGuest, want func(Hdr) bool, what string) Hdr {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case h := <-g.unmatched:
			if want(h) {
				return h
			}
		case <-deadline:
			t.Fatalf("no %s from the device", what)
		}
	}
}

func TestDeviceIdentity(t *testing.T) {
	g := newTestGuest(t, guestOpts{})
	if g.vs.ID() != virtio.DeviceVsock {
		t.Errorf("ID %v", g.vs.ID())
	}
	if f := g.dev.Features; f&virtio.FeatureVersion1 == 0 || f&virtio.FeatureRingEventIdx == 0 {
		t.Errorf("negotiated features %#x lack VERSION_1 or EVENT_IDX", f)
	}
	if got := binary.LittleEndian.Uint64(g.dev.ReadConfig(0, 8)); got != DefaultGuestCID {
		t.Errorf("guest_cid %d, want %d", got, DefaultGuestCID)
	}
	// Out-of-range config reads are zero, writes are ignored.
	if got := g.dev.ReadConfig(6, 4); !bytes.Equal(got, []byte{0, 0, 0, 0}) {
		t.Errorf("config bytes 6..10 = %v", got)
	}
	g.vs.WriteConfig(0, []byte{9, 9, 9, 9})
	if got := binary.LittleEndian.Uint64(g.dev.ReadConfig(0, 8)); got != DefaultGuestCID {
		t.Errorf("guest_cid changed to %d by a write", got)
	}
	if s := g.vs.QueueMaxSizes(); len(s) != 3 || s[0] != 256 || s[1] != 256 || s[2] != 256 {
		t.Errorf("queue max sizes %v", s)
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{UDSPath: ""},
		{UDSPath: dir + "/a", GuestCID: 2},
		{UDSPath: dir + "/a", GuestCID: 0xffffffff},
	} {
		if d, err := New(cfg); err == nil {
			d.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	// A regular file in the way is not removed.
	f := dir + "/file"
	os.WriteFile(f, []byte("x"), 0o600)
	if d, err := New(Config{UDSPath: f}); err == nil {
		d.Close()
		t.Error("New over a regular file succeeded")
	}
	// A stale socket file is replaced.
	stale := dir + "/stale"
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	d, err := New(Config{UDSPath: stale, GuestCID: 42})
	if err != nil {
		t.Fatalf("New over a stale socket: %v", err)
	}
	var cid [8]byte
	d.ReadConfig(0, cid[:])
	if binary.LittleEndian.Uint64(cid[:]) != 42 {
		t.Errorf("guest_cid %v", cid)
	}
	d.Close()
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// echo copies everything from c back to it, then half-closes.
func echo(c *net.UnixConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

func waitConns(t testing.TB, d *Device, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for d.Stats().Conns != n {
		if time.Now().After(deadline) {
			t.Fatalf("connections: %d, want %d", d.Stats().Conns, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

func TestNotifyNeverBlocks(t *testing.T) {
	g := newTestGuest(t, guestOpts{})
	done := make(chan struct{})
	go func() {
		for range 100000 {
			g.vs.Notify(QueueTX)
			g.vs.Notify(QueueRX)
			g.vs.Notify(QueueEvent)
			g.vs.Notify(-1)
			g.vs.Notify(1 << 20)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Notify blocked")
	}
}

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.

// TestCloseReleasesEverything: after Close no goroutine or socket of the device remains.
func TestCloseReleasesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	fdsBefore := countFDs(t)
	func() {
		g := newTestGuest(t, guestOpts{})
		ln := g.hostListen(90)
		lnG := g.listen(91)
		for range 5 {
			if _, err := g.dial(90); err != nil {
				t.Fatal(err)
			}
			defer accept(t, ln).Close()
			hc, _, err := g.hostConnect(91)
			if err != nil {
				t.Fatal(err)
			}
			defer hc.Close()
			acceptGuest(t, lnG)
		}
		// A host client stuck in its handshake.
		stuck, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.uds, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer stuck.Close()
		g.close()
		ln.Close()
		if _, err := os.Lstat(g.uds); !os.IsNotExist(err) {
			t.Errorf("listener socket file remains: %v", err)
		}
		// Close is idempotent, and the API is safe after it.
		g.vs.Close()
		g.vs.Reset()
		g.vs.Notify(0)
		if err := g.vs.Activate(virtio.ActivateArgs{}); err == nil {
			t.Error("Activate after Close succeeded")
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before || countFDs(t) > fdsBefore {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines %d (before %d), fds %d (before %d)\n%s",
				runtime.NumGoroutine(), before, countFDs(t), fdsBefore, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}
