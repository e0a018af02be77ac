package vsock

// guest_test.go — a small guest-side vsock stack for host-driven tests. It drives the
// device through the real mmio transport with virtiotest (rings in guest memory, kicks
// through QueueNotify, completions from the used ring) and speaks the vsock protocol the
// way Linux's virtio_transport_common.c does: connect/listen, credit on both directions,
// SHUTDOWN and RST. Knobs let tests misbehave (ignore credit, stop sending credit
// updates, choose the TX descriptor layout, answer nothing).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio/virtiotest"
)

// txLayout is how the guest splits a TX packet across descriptors.
type txLayout int

const (
	layoutOne    txLayout = iota // header and payload in one descriptor (Linux ≥ 6.2)
	layoutTwo                    // header, then payload (older Linux)
	layoutThree                  // header cut in two, then payload
	layoutSplitN                 // header cut in two, payload cut in two
)

const (
	guestRXPayload = 4096 // payload room of each RX buffer, like Linux
	guestBufAlloc  = 256 << 10
	waitTimeout    = 20 * time.Second
)

type guestOpts struct {
	layout   txLayout
	rxSplit  bool // RX buffers as [44][4096] instead of one descriptor
	rxBufs   int  // RX buffers kept posted (default 64)
	maxConns int
	connectT time.Duration
	hsT      time.Duration
	quiet    bool // do not answer REQUESTs for unknown ports (no RST)
}

type testGuest struct {
	t    testing.TB
	dir  string
	uds  string
	vs   *Device
	dev  *virtiotest.Device
	rxq  *virtiotest.DriverQueue
	txq  *virtiotest.DriverQueue
	opts guestOpts
	cid  uint64

	mu        sync.Mutex
	conns     map[gkey]*gconn
	listeners map[uint32]chan *gconn
	nextPort  uint32
	// log receives every packet from the device that matched no connection.
	unmatched chan Hdr
	stop      chan struct{}
	pumpDone  chan struct{}
	pumpErr   error
}

type gkey struct{ local, remote uint32 } // guest port, host port

// newTestGuest starts a device on a fresh socket path and brings it up through mmio.
func newTestGuest(t testing.TB, opts guestOpts) *testGuest {
	t.Helper()
	dir, err := os.MkdirTemp("", "vsock")
	if err != nil {
		t.Fatal(err)
	}
	g := &testGuest{
		t: t, dir: dir, uds: filepath.Join(dir, "v.sock"), opts: opts, cid: DefaultGuestCID,
		conns: map[gkey]*gconn{}, listeners: map[uint32]chan *gconn{}, nextPort: 49152,
		unmatched: make(chan Hdr, 1024), stop: make(chan struct{}), pumpDone: make(chan struct{}),
	}
	if g.opts.rxBufs == 0 {
		g.opts.rxBufs = 64
	}
	vs, err := New(Config{
		UDSPath: g.uds, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxConns: opts.maxConns, ConnectTimeout: opts.connectT, HandshakeTimeout: opts.hsT,
	})
	if err != nil {
		t.Fatal(err)
	}
	g.vs = vs
	dev, err := virtiotest.Start(vs, virtiotest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g.dev = dev
	g.rxq, g.txq = dev.Queues[QueueRX], dev.Queues[QueueTX]
	g.txq.SetDiscardUsed(true)
	for range g.opts.rxBufs {
		g.postRX()
	}
	g.rxq.Kick()
	go g.pump()
	t.Cleanup(g.close)
	return g
}

func (g *testGuest) close() {
	select {
	case <-g.stop:
		return
	default:
	}
	close(g.stop)
	<-g.pumpDone
	if err := g.dev.Close(); err != nil {
		g.t.Errorf("close device: %v", err)
	}
	os.RemoveAll(g.dir)
	if g.pumpErr != nil {
		g.t.Errorf("guest: %v", g.pumpErr)
	}
}

func (g *testGuest) postRX() {
	lens := []int{HdrSize + guestRXPayload}
	if g.opts.rxSplit {
		lens = []int{HdrSize, guestRXPayload}
	}
	if _, err := g.rxq.Add(nil, lens); err != nil {
		panic(err)
	}
}

// pump harvests RX completions, dispatches them and reposts buffers.
func (g *testGuest) pump() {
	defer close(g.pumpDone)
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		u, err := g.rxq.WaitUsed(50 * time.Millisecond)
		if errors.Is(err, virtiotest.ErrTimeout) {
			continue
		}
		if err != nil {
			g.pumpErr = err
			return
		}
		g.postRX()
		g.rxq.Kick()
		if len(u.Data) < HdrSize {
			g.pumpErr = fmt.Errorf("RX buffer returned with %d bytes", len(u.Data))
			continue
		}
		var h Hdr
		h.Decode(u.Data)
		if int(u.Len) != HdrSize+int(h.Len) || len(u.Data) != int(u.Len) {
			g.pumpErr = fmt.Errorf("RX used len %d for packet %v", u.Len, &h)
			continue
		}
		if h.SrcCID != HostCID || h.DstCID != g.cid || h.Type != TypeStream && h.Op != OpRST {
			g.pumpErr = fmt.Errorf("RX packet with bad addressing: %v", &h)
			continue
		}
		if err := g.recv(&h, u.Data[HdrSize:]); err != nil {
			g.pumpErr = err
		}
	}
}

// send puts one packet on the TX queue in the configured layout.
func (g *testGuest) send(h Hdr, payload []byte) error {
	if h.SrcCID == 0 {
		h.SrcCID = g.cid
	}
	if h.DstCID == 0 {
		h.DstCID = HostCID
	}
	if h.Type == 0 {
		h.Type = TypeStream
	}
	if h.Len == 0 {
		h.Len = uint32(len(payload))
	}
	hb := make([]byte, HdrSize)
	h.Encode(hb)
	return g.sendRaw(hb, payload)
}

func (g *testGuest) sendRaw(hb, payload []byte) error {
	var bufs [][]byte
	switch g.opts.layout {
	case layoutOne:
		bufs = [][]byte{append(hb, payload...)}
	case layoutTwo:
		bufs = [][]byte{hb}
		if len(payload) > 0 {
			bufs = append(bufs, payload)
		}
	case layoutThree, layoutSplitN:
		cut := min(17, len(hb))
		bufs = [][]byte{hb[:cut], hb[cut:]}
		if len(payload) > 0 {
			if g.opts.layout == layoutSplitN && len(payload) > 1 {
				bufs = append(bufs, payload[:len(payload)/2], payload[len(payload)/2:])
			} else {
				bufs = append(bufs, payload)
			}
		}
	}
	_, err := g.txq.SubmitWait(bufs, nil, waitTimeout)
	return err
}

// recv handles one packet from the device.
func (g *testGuest) recv(h *Hdr, payload []byte) error {
	key := gkey{local: h.DstPort, remote: h.SrcPort}
	g.mu.Lock()
	c := g.conns[key]
	if c == nil {
		ln := g.listeners[h.DstPort]
		g.mu.Unlock()
		if h.Op == OpRequest && ln != nil {
			c = g.newConn(key)
			c.established = true
			c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
			if err := c.sendCtl(OpResponse, 0); err != nil {
				return err
			}
			select {
			case ln <- c:
			default:
				return fmt.Errorf("listener backlog on port %d full", h.DstPort)
			}
			return nil
		}
		select {
		case g.unmatched <- *h:
		default:
		}
		if h.Op != OpRST && !g.opts.quiet {
			return g.send(Hdr{SrcPort: h.DstPort, DstPort: h.SrcPort, Op: OpRST}, nil)
		}
		return nil
	}
	g.mu.Unlock()
	return c.recv(h, payload)
}

func (g *testGuest) newConn(key gkey) *gconn {
	c := &gconn{g: g, key: key, bufAlloc: guestBufAlloc, autoCredit: true}
	c.cond = sync.NewCond(&c.mu)
	g.mu.Lock()
	g.conns[key] = c
	g.mu.Unlock()
	return c
}

func (g *testGuest) forget(c *gconn) {
	g.mu.Lock()
	if g.conns[c.key] == c {
		delete(g.conns, c.key)
	}
	g.mu.Unlock()
}

// listen makes the guest accept connections on port.
func (g *testGuest) listen(port uint32) chan *gconn {
	ch := make(chan *gconn, 256)
	g.mu.Lock()
	g.listeners[port] = ch
	g.mu.Unlock()
	return ch
}

// dial connects from the guest to host port.
func (g *testGuest) dial(port uint32) (*gconn, error) {
	g.mu.Lock()
	local := g.nextPort
	g.nextPort++
	g.mu.Unlock()
	c := g.newConn(gkey{local: local, remote: port})
	if err := c.sendCtl(OpRequest, 0); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(waitTimeout)
	for !c.established && !c.rst {
		if err := c.wait(deadline); err != nil {
			return nil, fmt.Errorf("dial %d: %w", port, err)
		}
	}
	if c.rst {
		return nil, errRefused
	}
	return c, nil
}

var (
	errRefused = errors.New("connection reset by peer")
	errTimeout = errors.New("timed out")
)

// gconn is one guest-side connection.
type gconn struct {
	g   *testGuest
	key gkey

	mu          sync.Mutex
	cond        *sync.Cond
	established bool
	rst         bool
	rx          bytes.Buffer
	peerShut    uint32 // flags the host sent
	shutSent    uint32
	// receive side (guest is receiver)
	bufAlloc    uint32
	fwdCnt      uint32
	lastFwdSent uint32
	autoCredit  bool
	// send side
	txCnt        uint32
	peerBufAlloc uint32
	peerFwdCnt   uint32
	ignoreCredit bool
	maxPkt       int // payload per RW (default 4096)
	recvErr      error
}

// wait sleeps on the condition with a deadline. Precondition: c.mu held.
func (c *gconn) wait(deadline time.Time) error {
	if time.Now().After(deadline) {
		return errTimeout
	}
	t := time.AfterFunc(time.Until(deadline), func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	c.cond.Wait()
	t.Stop()
	return nil
}

func (c *gconn) hdr(op Op, flags uint32) Hdr {
	return Hdr{SrcPort: c.key.local, DstPort: c.key.remote, Op: op, Flags: flags,
		BufAlloc: c.bufAlloc, FwdCnt: c.fwdCnt}
}

// sendCtl sends a packet without payload carrying the current credit.
func (c *gconn) sendCtl(op Op, flags uint32) error {
	c.mu.Lock()
	h := c.hdr(op, flags)
	c.lastFwdSent = c.fwdCnt
	c.mu.Unlock()
	return c.g.send(h, nil)
}

func (c *gconn) recv(h *Hdr, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.cond.Broadcast()
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	switch h.Op {
	case OpResponse:
		if c.established {
			c.recvErr = fmt.Errorf("RESPONSE on an established connection: %v", h)
		}
		c.established = true
	case OpRST:
		c.rst = true
		c.g.forget(c)
	case OpRW:
		if c.peerShut&ShutdownSend != 0 {
			c.recvErr = fmt.Errorf("RW after SHUTDOWN SEND: %v", h)
		}
		// The device may have in flight at most buf_alloc beyond the fwd_cnt we last
		// advertised (received = consumed + buffered).
		if inFlight := c.fwdCnt + uint32(c.rx.Len()) + uint32(len(payload)) - c.lastFwdSent; inFlight > c.bufAlloc {
			c.recvErr = fmt.Errorf("device exceeded advertised credit: %d > %d", inFlight, c.bufAlloc)
		}
		c.rx.Write(payload)
	case OpShutdown:
		c.peerShut |= h.Flags & ShutdownBoth
	case OpCreditUpdate:
	case OpCreditRequest:
		h := c.hdr(OpCreditUpdate, 0)
		c.lastFwdSent = c.fwdCnt
		go c.g.send(h, nil) // not under c.mu: the TX queue may be full
	case OpRequest:
		c.recvErr = fmt.Errorf("REQUEST on an existing connection: %v", h)
	}
	return c.recvErr
}

// peerFree is the host's free space as the guest sees it. Precondition: c.mu held.
func (c *gconn) peerFree() int {
	inFlight := c.txCnt - c.peerFwdCnt
	if inFlight > c.peerBufAlloc {
		return 0
	}
	return int(c.peerBufAlloc - inFlight)
}

// Write sends p, waiting for credit like a Linux socket.
func (c *gconn) Write(p []byte) (int, error) {
	maxPkt := c.maxPkt
	if maxPkt == 0 {
		maxPkt = guestRXPayload
	}
	deadline := time.Now().Add(waitTimeout)
	n := 0
	for len(p) > 0 {
		c.mu.Lock()
		for !c.rst && !c.ignoreCredit && c.peerFree() == 0 {
			if err := c.wait(deadline); err != nil {
				c.mu.Unlock()
				return n, err
			}
		}
		if c.rst {
			c.mu.Unlock()
			return n, errRefused
		}
		k := min(len(p), maxPkt)
		if !c.ignoreCredit {
			k = min(k, c.peerFree())
		}
		h := c.hdr(OpRW, 0)
		h.Len = uint32(k)
		c.txCnt += uint32(k)
		c.lastFwdSent = c.fwdCnt
		c.mu.Unlock()
		if err := c.g.send(h, p[:k]); err != nil {
			return n, err
		}
		p = p[k:]
		n += k
	}
	return n, nil
}

// Read returns buffered data, io.EOF after the host's SHUTDOWN SEND, errRefused after RST.
func (c *gconn) Read(p []byte) (int, error) {
	c.mu.Lock()
	deadline := time.Now().Add(waitTimeout)
	for c.rx.Len() == 0 && !c.rst && c.peerShut&ShutdownSend == 0 {
		if err := c.wait(deadline); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	if c.rx.Len() == 0 {
		rst := c.rst
		c.mu.Unlock()
		if rst && c.peerShut&ShutdownSend == 0 {
			return 0, errRefused
		}
		return 0, io.EOF
	}
	n, _ := c.rx.Read(p)
	c.fwdCnt += uint32(n)
	var upd *Hdr
	if c.autoCredit && !c.rst && c.fwdCnt-c.lastFwdSent >= c.bufAlloc/4 {
		h := c.hdr(OpCreditUpdate, 0)
		c.lastFwdSent = c.fwdCnt
		upd = &h
	}
	c.mu.Unlock()
	if upd != nil {
		if err := c.g.send(*upd, nil); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CloseWrite is shutdown(SHUT_WR).
func (c *gconn) CloseWrite() error {
	c.mu.Lock()
	c.shutSent |= ShutdownSend
	f := c.shutSent
	c.mu.Unlock()
	return c.sendCtl(OpShutdown, f)
}

// Close is close(): SHUTDOWN with both flags, then wait for the device's RST.
func (c *gconn) Close() error {
	c.mu.Lock()
	c.shutSent = ShutdownBoth
	c.mu.Unlock()
	if err := c.sendCtl(OpShutdown, ShutdownBoth); err != nil {
		return err
	}
	return c.waitRST()
}

// Abort sends RST.
func (c *gconn) Abort() error {
	c.g.forget(c)
	c.mu.Lock()
	c.rst = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.sendCtl(OpRST, 0)
}

// waitRST waits for the device to reset the connection.
func (c *gconn) waitRST() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(waitTimeout)
	for !c.rst {
		if err := c.wait(deadline); err != nil {
			return fmt.Errorf("waiting for RST: %w", err)
		}
	}
	return nil
}

// buffered is how many received bytes the guest holds unread.
func (c *gconn) buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rx.Len()
}

func (c *gconn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recvErr
}
