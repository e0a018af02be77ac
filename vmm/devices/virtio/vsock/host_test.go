package vsock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUnknownPortAndConnection(t *testing.T) {
	g := newTestGuest(t, guestOpts{})
	// Nobody listens on <uds>_4444: the dial fails, the guest gets RST.
	if _, err := g.dial(4444); !errors.Is(err, errRefused) {
		t.Fatalf("dial to an unserved port: %v, want refused", err)
	}
	// RW for a connection that does not exist: RST.
	g.send(Hdr{SrcPort: 777, DstPort: 888, Op: OpRW}, []byte("stray"))
	expectUnmatched(t, g, func(h Hdr) bool {
		return h.Op == OpRST && h.SrcPort == 888 && h.DstPort == 777
	}, "RST for a stray RW")
	// An RST for an unknown connection is not answered; a CREDIT_REQUEST is.
	g.send(Hdr{SrcPort: 777, DstPort: 889, Op: OpRST}, nil)
	g.send(Hdr{SrcPort: 777, DstPort: 890, Op: OpCreditRequest}, nil)
	h := expectUnmatched(t, g, func(h Hdr) bool { return h.Op == OpRST }, "RST")
	if h.SrcPort != 890 {
		t.Errorf("RST from port %d: the RST for port 889 was answered", h.SrcPort)
	}
	waitConns(t, g.vs, 0)
}

func TestMalformedPackets(t *testing.T) {
	g := newTestGuest(t, guestOpts{layout: layoutTwo})
	hdr := func(h Hdr) []byte {
		if h.SrcCID == 0 {
			h.SrcCID = DefaultGuestCID
		}
		if h.DstCID == 0 {
			h.DstCID = HostCID
		}
		b := make([]byte, HdrSize)
		h.Encode(b)
		return b
	}
	cases := []struct {
		name    string
		hdr     []byte
		payload []byte
		rst     bool
		rstType Type
	}{
		{"short header", hdr(Hdr{SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpRW})[:43], nil, false, 0},
		{"seqpacket type", hdr(Hdr{SrcPort: 3, DstPort: 4, Type: 2, Op: OpRequest}), nil, true, 2},
		{"unknown op", hdr(Hdr{SrcPort: 5, DstPort: 6, Type: TypeStream, Op: 99}), nil, true, TypeStream},
		{"op zero", hdr(Hdr{SrcPort: 7, DstPort: 8, Type: TypeStream, Op: OpInvalid}), nil, true, TypeStream},
		{"len too large", hdr(Hdr{SrcPort: 9, DstPort: 10, Type: TypeStream, Op: OpRW, Len: 1 << 20}), make([]byte, 100), true, TypeStream},
		{"len beyond buffer", hdr(Hdr{SrcPort: 11, DstPort: 12, Type: TypeStream, Op: OpRW, Len: 200}), make([]byte, 100), true, TypeStream},
		{"wrong src cid", hdr(Hdr{SrcCID: 77, SrcPort: 13, DstPort: 14, Type: TypeStream, Op: OpRequest}), nil, false, 0},
		{"wrong dst cid", hdr(Hdr{DstCID: 5, SrcPort: 15, DstPort: 16, Type: TypeStream, Op: OpRequest}), nil, false, 0},
	}
	before := g.vs.Stats().Malformed
	for _, tc := range cases {
		if err := g.sendRaw(tc.hdr, tc.payload); err != nil {
			t.Fatal(err)
		}
	}
	// A marker packet whose RST arrives after every reply above.
	g.send(Hdr{SrcPort: 1000, DstPort: 1001, Op: OpRW}, []byte("m"))
	got := map[uint32]Hdr{}
	for {
		h := expectUnmatched(t, g, func(Hdr) bool { return true }, "reply")
		if h.DstPort == 1000 {
			break
		}
		got[h.DstPort] = h
	}
	for _, tc := range cases {
		var h Hdr
		if len(tc.hdr) == HdrSize {
			h.Decode(tc.hdr)
		}
		r, ok := got[h.SrcPort]
		if tc.rst != ok || (ok && (r.Op != OpRST || r.Type != tc.rstType || r.SrcPort != h.DstPort)) {
			t.Errorf("%s: reply %v (present %v), want RST %v of type %d", tc.name, &r, ok, tc.rst, tc.rstType)
		}
	}
	if n := g.vs.Stats().Malformed - before; n != uint64(len(cases)) {
		t.Errorf("malformed count %d, want %d", n, len(cases))
	}

	// A malformed packet on a live connection resets that connection only.
	ln := g.hostListen(30)
	gc, err := g.dial(30)
	if err != nil {
		t.Fatal(err)
	}
	hc := accept(t, ln)
	defer hc.Close()
	other, err := g.dial(30)
	if err != nil {
		t.Fatal(err)
	}
	hc2 := accept(t, ln)
	defer hc2.Close()
	bad := hdr(Hdr{SrcPort: gc.key.local, DstPort: 30, Type: TypeStream, Op: OpRW, Len: 500})
	g.sendRaw(bad, make([]byte, 10))
	if err := gc.waitRST(); err != nil {
		t.Fatal(err)
	}
	hc.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadAll(hc); err != nil {
		t.Fatal(err)
	}
	other.Write([]byte("still here"))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(hc2, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("other connection: %q, %v", buf, err)
	}
}

func TestConnectHandshake(t *testing.T) {
	g := newTestGuest(t, guestOpts{hsT: 200 * time.Millisecond, quiet: false})
	g.listen(5)
	dialRaw := func(send string, closeWrite bool) (string, error) {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.uds, Net: "unix"})
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.Write([]byte(send))
		if closeWrite {
			c.CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		b, err := io.ReadAll(c)
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil // closed with our unread bytes in its buffer
		}
		return string(b), err
	}
	for _, tc := range []struct {
		name, send string
		closeWrite bool
	}{
		{"garbage", "HELLO\n", false},
		{"no port", "CONNECT\n", false},
		{"bad port", "CONNECT 12x\n", false},
		{"port too big", "CONNECT 4294967296\n", false},
		{"extra field", "CONNECT 5 6\n", false},
		{"eof without newline", "CONNECT 5", true},
		{"empty eof", "", true},
		{"too long", strings.Repeat("A", 100), false},
		{"timeout", "CONN", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dialRaw(tc.send, tc.closeWrite)
			if err != nil || got != "" {
				t.Fatalf("reply %q, %v; want the client closed without a reply", got, err)
			}
		})
	}
	// Nothing listens on guest port 6: the guest answers RST, the client is closed.
	got, err := dialRaw("CONNECT 6\n", false)
	if err != nil || got != "" {
		t.Fatalf("CONNECT to a closed guest port: %q, %v", got, err)
	}
	// The device is still fine.
	lnG := g.listen(5)
	hc, _, err := g.hostConnect(5)
	if err != nil {
		t.Fatal(err)
	}
	hc.Close()
	acceptGuest(t, lnG)
}

func TestConnectTimeout(t *testing.T) {
	g := newTestGuest(t, guestOpts{connectT: 200 * time.Millisecond, quiet: true})
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.uds, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT 9\n")
	// The guest ignores the REQUEST; after the timeout it gets an RST and the client is
	// closed.
	req := expectUnmatched(t, g, func(h Hdr) bool { return h.Op == OpRequest }, "REQUEST")
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("client read %q, %v", b, err)
	}
	rst := expectUnmatched(t, g, func(h Hdr) bool { return h.Op == OpRST }, "RST")
	if rst.SrcPort != req.SrcPort || rst.DstPort != 9 {
		t.Errorf("RST %v does not match REQUEST %v", &rst, &req)
	}
	waitConns(t, g.vs, 0)
}

func TestConnectionLimit(t *testing.T) {
	g := newTestGuest(t, guestOpts{maxConns: 3})
	ln := g.hostListen(40)
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	var conns []*gconn
	for range 3 {
		c, err := g.dial(40)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if _, err := g.dial(40); !errors.Is(err, errRefused) {
		t.Fatalf("4th connection: %v, want refused", err)
	}
	// A host client beyond the cap is closed.
	g.listen(41)
	if _, _, err := g.hostConnect(41); err == nil {
		t.Fatal("host client beyond the cap got OK")
	}
	if g.vs.Stats().Refused != 2 {
		t.Errorf("refused %d, want 2", g.vs.Stats().Refused)
	}
	conns[0].Abort()
	waitConns(t, g.vs, 2)
	if _, err := g.dial(40); err != nil {
		t.Fatalf("after closing one: %v", err)
	}
}
