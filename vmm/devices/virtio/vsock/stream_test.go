package vsock

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestGuestConnect(t *testing.T) {
	for _, layout := range []txLayout{layoutOne, layoutTwo, layoutThree, layoutSplitN} {
		for _, rxSplit := range []bool{false, true} {
			t.Run(fmt.Sprintf("layout%d/rxsplit=%v", layout, rxSplit), func(t *testing.T) {
				g := newTestGuest(t, guestOpts{layout: layout, rxSplit: rxSplit})
				ln := g.hostListen(5000)
				go func() {
					c, err := ln.AcceptUnix()
					if err == nil {
						echo(c)
						c.Close()
					}
				}()
				c, err := g.dial(5000)
				if err != nil {
					t.Fatal(err)
				}
				msg := bytes.Repeat([]byte("hello vsock "), 1000) // 12 KB: several packets
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("echo: got %d bytes, want %d", len(got), len(msg))
				}
				// Both directions are closed: the device resets the connection.
				if err := c.waitRST(); err != nil {
					t.Fatal(err)
				}
				if err := c.err(); err != nil {
					t.Fatal(err)
				}
				waitConns(t, g.vs, 0)
			})
		}
	}
}

func TestHostConnect(t *testing.T) {
	g := newTestGuest(t, guestOpts{})
	lnG := g.listen(52)
	hc, hp, err := g.hostConnect(52)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if hp < 1<<30 || hp >= 1<<31 {
		t.Errorf("host port %d outside [2^30, 2^31)", hp)
	}
	gc := acceptGuest(t, lnG)
	if gc.key.remote != hp {
		t.Errorf("guest sees host port %d, OK line said %d", gc.key.remote, hp)
	}
	// host → guest
	if _, err := hc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(gc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("guest read %q, %v", buf, err)
	}
	// guest → host
	if _, err := gc.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(hc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("host read %q, %v", buf, err)
	}
	// Port numbers are handed out round-robin.
	hc2, hp2, err := g.hostConnect(52)
	if err != nil {
		t.Fatal(err)
	}
	defer hc2.Close()
	acceptGuest(t, lnG)
	if hp2 != hp+1 {
		t.Errorf("second host port %d, want %d", hp2, hp+1)
	}
	// The host closes: the guest reads EOF; the guest closes: RST.
	hc.Close()
	if _, err := gc.Read(buf); err != io.EOF {
		t.Fatalf("guest read after host close: %v, want EOF", err)
	}
	if err := gc.Close(); err != nil {
		t.Fatal(err)
	}
	waitConns(t, g.vs, 1)
}

// TestHostConnectDataBeforeOK: bytes the host client sends right after its CONNECT line
// (before reading OK) belong to the stream.
func TestHostConnectDataBeforeOK(t *testing.T) {
	g := newTestGuest(t, guestOpts{})
	lnG := g.listen(7)
	hc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.uds, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.Write([]byte("CONNECT 7\nearly bytes")); err != nil {
		t.Fatal(err)
	}
	gc := acceptGuest(t, lnG)
	buf := make([]byte, len("early bytes"))
	if _, err := io.ReadFull(gc, buf); err != nil || string(buf) != "early bytes" {
		t.Fatalf("guest read %q, %v", buf, err)
	}
	line, err := readLine(hc)
	if err != nil || !strings.HasPrefix(line, "OK ") {
		t.Fatalf("OK line %q, %v", line, err)
	}
}

// Test64MiBStream moves 64 MiB each way and compares SHA-256 digests.
func Test64MiBStream(t *testing.T) {
	const size = 64 << 20
	data := randomBytes(size, 1)
	want := sha(data)

	t.Run("guest-to-host", func(t *testing.T) {
		g := newTestGuest(t, guestOpts{layout: layoutOne})
		ln := g.hostListen(1234)
		got := make(chan [32]byte, 1)
		go func() {
			c := accept(t, ln)
			defer c.Close()
			h := sha256.New()
			io.Copy(h, c)
			var s [32]byte
			copy(s[:], h.Sum(nil))
			got <- s
		}()
		c, err := g.dial(1234)
		if err != nil {
			t.Fatal(err)
		}
		c.maxPkt = 64 << 10
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s != want {
			t.Fatal("sha256 mismatch guest→host")
		}
		if st := g.vs.Stats(); st.BufferedToHost != 0 || st.CreditViolated != 0 {
			t.Errorf("stats after the stream: %+v", st)
		}
	})
	t.Run("host-to-guest", func(t *testing.T) {
		g := newTestGuest(t, guestOpts{rxBufs: 128})
		lnG := g.listen(99)
		hc, _, err := g.hostConnect(99)
		if err != nil {
			t.Fatal(err)
		}
		gc := acceptGuest(t, lnG)
		go func() {
			hc.Write(data)
			hc.CloseWrite()
		}()
		h := sha256.New()
		buf := make([]byte, 256<<10)
		for {
			n, err := gc.Read(buf)
			h.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("sha256 mismatch host→guest")
		}
		if err := gc.err(); err != nil {
			t.Fatal(err)
		}
		if err := gc.Close(); err != nil {
			t.Fatal(err)
		}
		hc.Close()
		waitConns(t, g.vs, 0)
	})
}

func TestHalfClose(t *testing.T) {
	t.Run("guest-shuts-write", func(t *testing.T) {
		g := newTestGuest(t, guestOpts{})
		ln := g.hostListen(10)
		gc, err := g.dial(10)
		if err != nil {
			t.Fatal(err)
		}
		hc := accept(t, ln)
		defer hc.Close()
		gc.Write([]byte("request"))
		gc.CloseWrite()
		// The host reads the request, then EOF...
		got, err := io.ReadAll(hc)
		if err != nil || string(got) != "request" {
			t.Fatalf("host read %q, %v", got, err)
		}
		// ...and can still answer.
		hc.Write([]byte("response"))
		buf := make([]byte, 8)
		if _, err := io.ReadFull(gc, buf); err != nil || string(buf) != "response" {
			t.Fatalf("guest read %q, %v", buf, err)
		}
		hc.CloseWrite()
		if _, err := gc.Read(buf); err != io.EOF {
			t.Fatalf("guest read after host CloseWrite: %v", err)
		}
		// Nothing can flow any more: the device resets.
		if err := gc.waitRST(); err != nil {
			t.Fatal(err)
		}
		waitConns(t, g.vs, 0)
	})
	t.Run("host-shuts-write", func(t *testing.T) {
		g := newTestGuest(t, guestOpts{})
		lnG := g.listen(11)
		hc, _, err := g.hostConnect(11)
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		gc := acceptGuest(t, lnG)
		hc.Write([]byte("request"))
		hc.CloseWrite()
		got, err := io.ReadAll(gc)
		if err != nil || string(got) != "request" {
			t.Fatalf("guest read %q, %v", got, err)
		}
		if _, err := gc.Write([]byte("response")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if _, err := io.ReadFull(hc, buf); err != nil || string(buf) != "response" {
			t.Fatalf("host read %q, %v", buf, err)
		}
		gc.CloseWrite()
		if n, err := hc.Read(buf); err != io.EOF {
			t.Fatalf("host read after guest SHUTDOWN: %d, %v", n, err)
		}
		if err := gc.waitRST(); err != nil {
			t.Fatal(err)
		}
		waitConns(t, g.vs, 0)
	})
}

func TestReset(t *testing.T) {
	t.Run("guest-rst", func(t *testing.T) {
		g := newTestGuest(t, guestOpts{})
		ln := g.hostListen(20)
		gc, err := g.dial(20)
		if err != nil {
			t.Fatal(err)
		}
		hc := accept(t, ln)
		defer hc.Close()
		gc.Write([]byte("x"))
		gc.Abort()
		hc.SetReadDeadline(time.Now().Add(waitTimeout))
		got, err := io.ReadAll(hc)
		if err != nil {
			t.Fatalf("host read after guest RST: %q, %v", got, err)
		}
		waitConns(t, g.vs, 0)
	})
	t.Run("host-write-to-closed", func(t *testing.T) {
		// The host closes entirely; the guest's next data makes the device's write fail
		// and the guest gets RST.
		g := newTestGuest(t, guestOpts{})
		ln := g.hostListen(21)
		gc, err := g.dial(21)
		if err != nil {
			t.Fatal(err)
		}
		hc := accept(t, ln)
		hc.Close()
		buf := make([]byte, 1)
		if _, err := gc.Read(buf); err != io.EOF {
			t.Fatalf("guest read after host close: %v", err)
		}
		for range 100 {
			if _, err := gc.Write([]byte("data")); err != nil {
				break
			}
			gc.mu.Lock()
			rst := gc.rst
			gc.mu.Unlock()
			if rst {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := gc.waitRST(); err != nil {
			t.Fatal(err)
		}
		waitConns(t, g.vs, 0)
	})
	t.Run("transport-reset", func(t *testing.T) {
		g := newTestGuest(t, guestOpts{})
		ln := g.hostListen(22)
		if _, err := g.dial(22); err != nil {
			t.Fatal(err)
		}
		hc := accept(t, ln)
		defer hc.Close()
		g.vs.Reset()
		hc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := io.ReadAll(hc); err != nil {
			t.Fatalf("host read after device reset: %v", err)
		}
		if n := g.vs.Stats().Conns; n != 0 {
			t.Errorf("%d connections after reset", n)
		}
	})
}
