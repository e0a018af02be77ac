package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// memRX is an RX buffer in plain memory.
type memRX struct{ b []byte }

func (r *memRX) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(r.b)) {
		return 0, io.ErrShortWrite
	}
	n := copy(r.b[off:], p)
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

func (r *memRX) WritableLen() uint64 { return uint64(len(r.b)) }

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// muxHarness drives a muxer directly, with the loop played by the test: dials are
// recorded instead of performed, host events are fed by hand or drained from the host's
// event channel.
type muxHarness struct {
	t     testing.TB
	h     *host
	m     *muxer
	st    counters
	dials []*conn
	peers []*net.UnixConn // our ends of the Unix sockets handed to the muxer
}

func newMuxHarness(t testing.TB, maxConns int) *muxHarness {
	x := &muxHarness{t: t}
	x.h = newHost(discardLog, "/nonexistent", nil, time.Second)
	x.m = newMuxer(discardLog, DefaultGuestCID, maxConns, time.Second, x.h, &x.st)
	x.m.dial = func(c *conn) { x.dials = append(x.dials, c) }
	return x
}

func (x *muxHarness) close() {
	x.m.resetAll()
	x.h.close()
	x.h.wg.Wait()
	for _, p := range x.peers {
		p.Close()
	}
}

// pair returns a socket for the muxer and keeps the other end.
func (x *muxHarness) pair() *net.UnixConn {
	a, b := unixPair(x.t)
	x.peers = append(x.peers, b)
	return a
}

func (x *muxHarness) tx(h Hdr, payload []byte) {
	if h.SrcCID == 0 {
		h.SrcCID = DefaultGuestCID
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
	x.m.handleTX([][]byte{encodeHdr(h), payload})
}

// rx fills one RX buffer of size room; ok is false when nothing was due.
func (x *muxHarness) rx(room int) (Hdr, []byte, bool) {
	if !x.m.hasRXWork() {
		return Hdr{}, nil, false
	}
	buf := &memRX{b: make([]byte, room)}
	n := x.m.fillRX(buf)
	if n == 0 {
		return Hdr{}, nil, true
	}
	var h Hdr
	h.Decode(buf.b)
	if int(n) != HdrSize+int(h.Len) {
		x.t.Fatalf("fillRX returned %d for %v", n, &h)
	}
	return h, buf.b[HdrSize:n], true
}

// drain feeds host events to the muxer until none arrives for wait.
func (x *muxHarness) drain(wait time.Duration) {
	for {
		select {
		case ev := <-x.h.events:
			x.m.handleEvent(ev)
		case <-time.After(wait):
			return
		}
	}
}

// establishGuest opens a guest-initiated connection local←peer with the given guest
// credit and returns it and the host's end of its socket.
func (x *muxHarness) establishGuest(local, peer uint32, bufAlloc uint32) (*conn, *net.UnixConn) {
	x.tx(Hdr{SrcPort: peer, DstPort: local, Op: OpRequest, BufAlloc: bufAlloc}, nil)
	c := x.dials[len(x.dials)-1]
	x.m.handleEvent(event{kind: evDialed, c: c, sock: x.pair()})
	if h, _, _ := x.rx(4096); h.Op != OpResponse {
		x.t.Fatalf("expected RESPONSE, got %v", &h)
	}
	return c, x.peers[len(x.peers)-1]
}

func TestMuxerRoundRobin(t *testing.T) {
	x := newMuxHarness(t, 16)
	defer x.close()
	flood, fh := x.establishGuest(100, 1, 1<<20)
	small, sh := x.establishGuest(100, 2, 1<<20)
	// The flood connection has 128 KiB queued before the small one has 5 bytes.
	fh.Write(make([]byte, 128<<10))
	for flood.pendingBytes < 2*MaxPayload {
		x.drain(time.Millisecond)
	}
	sh.Write([]byte("hello"))
	for small.pendingBytes == 0 {
		x.drain(time.Millisecond)
	}
	var order []uint32
	for range 6 {
		h, _, ok := x.rx(4096 + HdrSize)
		if !ok {
			break
		}
		order = append(order, h.DstPort)
	}
	// One packet per connection per round: the small message goes out second.
	if len(order) < 3 || order[0] != 1 || order[1] != 2 || order[2] != 1 {
		t.Fatalf("RX order by guest port %v, want 1, 2, 1, ...", order)
	}
}

func TestMuxerRSTQueueBounded(t *testing.T) {
	x := newMuxHarness(t, 16)
	defer x.close()
	// 1000 packets for nonexistent connections while the guest posts no RX buffers: the
	// TX path keeps going and the replies are bounded.
	for i := range 1000 {
		x.tx(Hdr{SrcPort: uint32(i), DstPort: 5, Op: OpRW}, []byte("x"))
	}
	if len(x.m.rstQueue) != maxRSTQueue {
		t.Fatalf("RST queue %d, want the cap %d", len(x.m.rstQueue), maxRSTQueue)
	}
	if got := x.st.droppedRST.Load(); got != 1000-maxRSTQueue {
		t.Fatalf("dropped %d, want %d", got, 1000-maxRSTQueue)
	}
	// The queued RSTs interleave with connection traffic.
	c, _ := x.establishGuest(7, 8, 1<<20)
	c.pend |= pendCreditUpdate
	x.m.schedule(c)
	var ops []Op
	for range 3 {
		h, _, _ := x.rx(HdrSize)
		ops = append(ops, h.Op)
	}
	if ops[0] != OpRST && ops[1] != OpRST || ops[0] == ops[1] && ops[1] == ops[2] {
		t.Fatalf("ops %v: the connection's CREDIT_UPDATE was starved by queued RSTs", ops)
	}
}

func TestConnCredit(t *testing.T) {
	c := &conn{state: stateEstablished, peerBufAlloc: 1000, peerFwdCnt: 0xfffffff0, txCnt: 0x248}
	if got := c.peerFree(); got != 400 {
		t.Fatalf("peerFree across the 2^32 wrap: %d, want 400", got)
	}
	c.peerFwdCnt = c.txCnt + 10 // a guest claiming to have consumed more than was sent
	if got := c.peerFree(); got != 0 {
		t.Fatalf("peerFree with fwd_cnt ahead of tx_cnt: %d, want 0", got)
	}
	// Small progress with plenty of advertised room: no CREDIT_UPDATE yet.
	c = &conn{state: stateEstablished, rxCnt: 1000}
	c.noteForwarded(1000)
	if c.pend&pendCreditUpdate != 0 {
		t.Fatal("CREDIT_UPDATE after 1000 bytes with 255 KiB of advertised room")
	}
	// The guest has used almost all the credit it saw: update as soon as we drain.
	c = &conn{state: stateEstablished, rxCnt: bufAlloc - 100}
	c.noteForwarded(100)
	if c.pend&pendCreditUpdate == 0 {
		t.Fatal("no CREDIT_UPDATE although the guest sees less than the threshold")
	}
	// A large unreported amount always triggers an update.
	c = &conn{state: stateEstablished, rxCnt: creditUpdateThreshold}
	c.noteForwarded(creditUpdateThreshold)
	if c.pend&pendCreditUpdate == 0 {
		t.Fatal("no CREDIT_UPDATE after the threshold")
	}
}

func TestMuxerCreditRequestAnswered(t *testing.T) {
	x := newMuxHarness(t, 16)
	defer x.close()
	c, _ := x.establishGuest(9, 10, 4096)
	x.tx(Hdr{SrcPort: 10, DstPort: 9, Op: OpCreditRequest, BufAlloc: 4096}, nil)
	h, _, _ := x.rx(HdrSize)
	if h.Op != OpCreditUpdate || h.BufAlloc != bufAlloc || h.FwdCnt != c.fwdCnt {
		t.Fatalf("reply %v, want CREDIT_UPDATE", &h)
	}
}

// FuzzMuxer runs arbitrary sequences of guest packets, RX buffers, dial results, host
// clients, host socket actions and timeouts through the muxer and checks its invariants
// after every step: bounded buffers, consistent accounting, credit respected.
func FuzzMuxer(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 1, 1, 4, 5, 0, 1, 5})
	f.Add([]byte{3, 0, 1, 4, 1, 4, 0, 0, 5, 1, 4, 0, 5, 0, 1, 2, 6, 1, 4})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 1, 0, 5, 4, 0, 0, 1, 5, 1, 4, 1, 4, 0, 0, 0, 4, 3, 0, 0, 0, 1, 4})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 400 {
			prog = prog[:400]
		}
		x := newMuxHarness(t, 4)
		defer x.close()
		r := &progReader{b: prog}
		for !r.done() {
			x.step(r)
			x.checkInvariants()
		}
	})
}

type progReader struct{ b []byte }

func (r *progReader) done() bool { return len(r.b) == 0 }

func (r *progReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *progReader) u32() uint32 {
	return uint32(r.next()) | uint32(r.next())<<8 | uint32(r.next())<<16 | uint32(r.next())<<24
}

func (x *muxHarness) step(r *progReader) {
	pick := func(vals ...uint32) uint32 { return vals[int(r.next())%len(vals)] }
	switch r.next() % 8 {
	case 0: // a guest packet
		h := Hdr{
			SrcPort: pick(10, 11), DstPort: pick(1, 2, localPortMin, localPortMin+1),
			Op: Op(r.next() % 9), Flags: uint32(r.next() % 4),
			BufAlloc: pick(0, 1, 4096, bufAlloc, 0xffffffff),
		}
		h.FwdCnt = pick(0, 4096, 0xffffffff, r.u32())
		n := int(pick(0, 1, 100, 4096, MaxPayload, MaxPayload+1))
		h.Len = uint32(n)
		have := n
		if r.next()&1 == 1 && n > 0 {
			have-- // lie about the length
		}
		if r.next()%8 == 0 {
			h.Type = 2
		}
		x.tx(h, make([]byte, have))
	case 1: // an RX buffer
		room := int(pick(0, 43, 44, 45, 4096+HdrSize, 70000))
		if !x.m.hasRXWork() {
			return
		}
		buf := &memRX{b: make([]byte, room)}
		var before *conn
		if len(x.m.ready) > 0 {
			before = x.m.ready[0]
		}
		n := x.m.fillRX(buf)
		if n == 0 {
			return
		}
		var h Hdr
		h.Decode(buf.b)
		if h.SrcCID != HostCID || h.DstCID != DefaultGuestCID || int(n) != HdrSize+int(h.Len) ||
			h.Len > MaxPayload || int(n) > room || (h.Op != OpRW && h.Len != 0) {
			x.t.Fatalf("bad RX packet %v (n %d, room %d)", &h, n, room)
		}
		if h.Op == OpRW && before != nil {
			c := before
			if inFlight := c.txCnt - c.peerFwdCnt; inFlight > c.peerBufAlloc {
				x.t.Fatalf("sent beyond the guest's credit: in flight %d, buf_alloc %d", inFlight, c.peerBufAlloc)
			}
		}
	case 2: // a dial finishes
		if len(x.dials) == 0 {
			return
		}
		c := x.dials[0]
		x.dials = x.dials[1:]
		if r.next()&1 == 0 {
			x.m.handleEvent(event{kind: evDialed, c: c, err: errors.New("refused")})
		} else {
			x.m.handleEvent(event{kind: evDialed, c: c, sock: x.pair()})
		}
	case 3: // a host client finishes its CONNECT line
		x.m.handleEvent(event{kind: evHostConnect, sock: x.pair(), port: pick(10, 11)})
	case 4: // the host side of some socket acts
		if len(x.peers) == 0 {
			return
		}
		p := x.peers[int(r.next())%len(x.peers)]
		switch r.next() % 4 {
		case 0:
			p.SetWriteDeadline(time.Now().Add(time.Millisecond))
			p.Write(make([]byte, pick(1, 5000, 300000)))
		case 1:
			p.CloseWrite()
		case 2:
			p.Close()
		case 3:
			p.SetReadDeadline(time.Now().Add(time.Millisecond))
			p.Read(make([]byte, 1<<20))
		}
	case 5: // host goroutines report
		x.drain(200 * time.Microsecond)
	case 6: // time passes
		x.m.expire(time.Now().Add(time.Hour))
	case 7: // raw bytes on the TX queue
		n := int(r.next())
		b := make([]byte, n)
		for i := range b {
			b[i] = r.next()
		}
		if n >= 16 {
			binary.LittleEndian.PutUint64(b[0:], DefaultGuestCID)
			binary.LittleEndian.PutUint64(b[8:], HostCID)
		}
		cut := int(r.next()) % (n + 1)
		x.m.handleTX([][]byte{b[:cut], b[cut:]})
	}
}

func (x *muxHarness) checkInvariants() {
	m := x.m
	fail := func(format string, args ...any) { x.t.Helper(); x.t.Fatalf("invariant: "+format, args...) }
	if len(m.conns) > m.maxConns {
		fail("%d connections, cap %d", len(m.conns), m.maxConns)
	}
	if int64(len(m.conns)) != x.st.conns.Load() {
		fail("conns counter %d, table %d", x.st.conns.Load(), len(m.conns))
	}
	if len(m.rstQueue) > maxRSTQueue {
		fail("RST queue %d", len(m.rstQueue))
	}
	var toHost, toVM int64
	for k, c := range m.conns {
		if c.key != k || c.state == stateClosed {
			fail("table entry %v: key %v state %v", k, c.key, c.state)
		}
		if b := c.buffered(); b < 0 || b > bufAlloc {
			fail("conn %v buffers %d guest→host bytes", k, b)
		}
		if len(c.chunks) > maxChunks || c.pendingBytes < 0 || c.pendingBytes > maxChunks*MaxPayload {
			fail("conn %v: %d chunks, %d pending bytes", k, len(c.chunks), c.pendingBytes)
		}
		sum := 0
		for _, ch := range c.chunks {
			sum += len(ch.data) - ch.off
		}
		if sum != c.pendingBytes {
			fail("conn %v: chunks hold %d, pendingBytes %d", k, sum, c.pendingBytes)
		}
		if c.state != stateEstablished && c.stream != nil {
			fail("conn %v in %v has a stream", k, c.state)
		}
		toHost += int64(c.buffered())
		toVM += int64(c.pendingBytes)
	}
	if toHost != x.st.bufferedToHost.Load() || toVM != x.st.bufferedToVM.Load() {
		fail("buffered counters %d/%d, connections hold %d/%d",
			x.st.bufferedToHost.Load(), x.st.bufferedToVM.Load(), toHost, toVM)
	}
	seen := map[*conn]bool{}
	for _, c := range m.ready {
		if seen[c] || !c.inReady {
			fail("ready queue: duplicate or unmarked %v", fmt.Sprint(c.key))
		}
		seen[c] = true
	}
	for _, c := range m.conns {
		if c.inReady != seen[c] {
			fail("conn %v inReady %v but queued %v", c.key, c.inReady, seen[c])
		}
		if c.wantsRX() && !c.inReady {
			fail("conn %v (%v) has work but is not scheduled", c.key, c.state)
		}
	}
}
