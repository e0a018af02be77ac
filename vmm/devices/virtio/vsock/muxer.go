// muxer.go — the connection table and the two directions of packet flow: guest packets
// from the TX queue are dispatched to their connection (or answered with RST), host
// events are applied to theirs, and the RX queue is filled from every connection in turn.
//
// All muxer state is owned by the device loop goroutine; nothing here blocks.
//
// What the guest controls: every TX packet (addresses, ops, lengths, credit fields) and
// how many RX buffers it offers, if any. Replies never wait for RX space on the TX path:
// a reply for a live connection is a pending flag on that connection (bounded by the
// connection count), and an RST for a packet with no connection goes to rstQueue, which
// holds at most maxRSTQueue entries; beyond that, further RSTs are dropped and counted.
//
// RX scheduling: connections with something to send sit once each in a FIFO (ready). Each
// turn takes the head, writes exactly one packet into one RX buffer and, if the connection
// still has more, puts it at the back; turns alternate with the RST queue. A connection
// flooding data therefore gets one buffer per round, and a connection with a small message
// waits at most one round. The Unix side is read only when the guest has credit for the
// bytes (conn.readGrant), so a slow guest reader stalls only its own host writer. Reads
// run ahead of RX buffers by at most maxChunks chunks per connection, which keeps the
// data path busy while the guest refills its RX queue and keeps memory bounded.
//
// Limits: at most maxConns connections in any state (Firecracker's 1023); a guest REQUEST
// or host client beyond that is refused (RST / closed). Memory per connection is bounded in
// conn.go, so the device holds at most maxConns × (bufAlloc + maxChunks × MaxPayload)
// of stream data (1023 × 384 KiB ≈ 384 MiB worst case; idle connections hold none).

package vsock

import (
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

const (
	// DefaultMaxConns is the connection cap when Config.MaxConns is zero.
	DefaultMaxConns = 1023
	// maxRSTQueue bounds RST replies waiting for RX buffers for packets without a
	// connection.
	maxRSTQueue = 256
	// localPortMin/localPortMax: host ports for host-initiated connections are handed out
	// round-robin in [1<<30, 1<<31), as Firecracker does, so they do not collide with the
	// well-known ports guests listen on or connect to.
	localPortMin = 1 << 30
	localPortMax = 1 << 31
	// defaultConnectTimeout bounds how long a host client waits for the guest's RESPONSE
	// after the REQUEST reached the guest.
	defaultConnectTimeout = 10 * time.Second
)

// counters are exported through Device.Stats; written by the loop, read by anyone.
type counters struct {
	conns          atomic.Int64
	bufferedToHost atomic.Int64 // guest→host bytes accepted but not yet written to Unix sockets
	bufferedToVM   atomic.Int64 // host→guest bytes read from Unix sockets but not yet sent
	malformed      atomic.Uint64
	creditViolated atomic.Uint64
	droppedRST     atomic.Uint64
	refused        atomic.Uint64 // connections refused at the cap
	badChains      atomic.Uint64
}

type muxer struct {
	log            *slog.Logger
	guestCID       uint64
	maxConns       int
	connectTimeout time.Duration
	host           *host
	stats          *counters
	// dial starts connecting a peerInit connection to its Unix socket and later delivers
	// evDialed (host.dial; tests substitute their own).
	dial func(c *conn)

	conns      map[connKey]*conn
	localPorts map[uint32]int // host ports handed to host-initiated connections (ref count)
	nextPort   uint32

	ready     []*conn // FIFO of connections with a packet for the guest
	rstQueue  []Hdr   // RSTs for packets without a connection (headers ready to send)
	rstTurn   bool    // alternate between rstQueue and ready
	timed     map[*conn]struct{}
	lastWarns map[string]time.Time
}

func newMuxer(log *slog.Logger, guestCID uint64, maxConns int, connectTimeout time.Duration, h *host, st *counters) *muxer {
	return &muxer{
		log:            log,
		guestCID:       guestCID,
		maxConns:       maxConns,
		connectTimeout: connectTimeout,
		host:           h,
		stats:          st,
		dial:           h.dial,
		conns:          make(map[connKey]*conn),
		localPorts:     make(map[uint32]int),
		nextPort:       localPortMin,
		timed:          make(map[*conn]struct{}),
		lastWarns:      make(map[string]time.Time),
	}
}

// warn logs at most once a second per kind: the guest controls how often these happen.
func (m *muxer) warn(kind, msg string, args ...any) {
	now := time.Now()
	if now.Sub(m.lastWarns[kind]) < time.Second {
		return
	}
	m.lastWarns[kind] = now
	m.log.Warn(msg, args...)
}

// ---- connection table ----

func (m *muxer) add(c *conn) {
	m.conns[c.key] = c
	if c.hostInit {
		m.localPorts[c.key.local]++
	}
	m.stats.conns.Add(1)
}

// allocLocalPort returns the next host port in [localPortMin, localPortMax) that no
// host-initiated connection uses and that names no connection to guest port peer. With
// at most maxConns connections the search ends within maxConns+1 steps.
func (m *muxer) allocLocalPort(peer uint32) uint32 {
	for {
		p := m.nextPort
		m.nextPort++
		if m.nextPort >= localPortMax {
			m.nextPort = localPortMin
		}
		if m.localPorts[p] == 0 && m.conns[connKey{local: p, peer: peer}] == nil {
			return p
		}
	}
}

// remove closes the connection's socket and forgets it. Late events for it are ignored.
func (m *muxer) remove(c *conn) {
	if c.state == stateClosed {
		return
	}
	c.state = stateClosed
	if m.conns[c.key] == c {
		delete(m.conns, c.key)
		m.stats.conns.Add(-1)
	}
	if c.hostInit {
		if m.localPorts[c.key.local]--; m.localPorts[c.key.local] <= 0 {
			delete(m.localPorts, c.key.local)
		}
	}
	m.closeIO(c)
	m.setDeadline(c, time.Time{})
}

// closeIO stops the connection's host I/O and releases its buffers.
func (m *muxer) closeIO(c *conn) {
	if c.stream != nil {
		c.stream.stop()
		c.stream = nil
	} else if c.sock != nil {
		c.sock.Close()
	}
	c.sock = nil
	m.stats.bufferedToHost.Add(-int64(c.buffered()))
	c.fwdCnt = c.rxCnt
	m.stats.bufferedToVM.Add(-int64(c.pendingBytes))
	c.dropChunks()
}

// reset aborts a connection: the guest gets an RST, the Unix side is closed now.
func (m *muxer) reset(c *conn) {
	switch c.state {
	case stateClosed, stateClosing:
		return
	case stateLocalInit:
		if c.pend&pendRequest != 0 {
			// The guest never heard of it.
			m.remove(c)
			return
		}
	}
	c.state = stateClosing
	c.pend = pendRST
	m.closeIO(c)
	m.setDeadline(c, time.Time{})
	m.schedule(c)
}

// resetAll forgets every connection without telling the guest (device reset or close).
func (m *muxer) resetAll() {
	for _, c := range m.conns {
		m.remove(c)
	}
	m.ready = nil
	m.rstQueue = nil
}

func (m *muxer) setDeadline(c *conn, t time.Time) {
	c.deadline = t
	if t.IsZero() {
		delete(m.timed, c)
	} else {
		m.timed[c] = struct{}{}
	}
}

// nextDeadline is the earliest connection deadline (zero: none).
func (m *muxer) nextDeadline() time.Time {
	var next time.Time
	for c := range m.timed {
		if next.IsZero() || c.deadline.Before(next) {
			next = c.deadline
		}
	}
	return next
}

// expire acts on connections whose deadline has passed.
func (m *muxer) expire(now time.Time) {
	for c := range m.timed {
		if now.Before(c.deadline) {
			continue
		}
		m.setDeadline(c, time.Time{})
		m.log.Debug("vsock: connection timed out", "host_port", c.key.local, "guest_port", c.key.peer, "state", c.state)
		m.reset(c)
	}
}

// schedule queues c for the RX queue if it has something to send and is not queued.
// It also lets its reader read when the guest has credit.
func (m *muxer) schedule(c *conn) {
	if g := c.readGrant(); g > 0 {
		c.grant = g
		c.stream.allowRead(g)
	}
	if c.state == stateEstablished && c.finished() {
		m.reset(c)
		return
	}
	if len(c.chunks) > 0 && c.peerFree() == 0 && !c.creditRequested && c.peerShut&ShutdownRcv == 0 {
		// Data waits but the guest has no room: ask it where it stands.
		c.pend |= pendCreditRequest
	}
	if !c.inReady && c.wantsRX() {
		c.inReady = true
		m.ready = append(m.ready, c)
	}
}

// ---- guest → host ----

// handleTX dispatches one TX chain's readable buffers.
func (m *muxer) handleTX(bufs [][]byte) {
	p, err := ParsePacket(bufs, m.guestCID)
	if err != nil {
		m.stats.malformed.Add(1)
		m.warn("malformed", "vsock: malformed packet from the guest", "err", err)
		if pe, ok := err.(*PacketError); ok && pe.Reply {
			key := connKey{local: pe.Hdr.DstPort, peer: pe.Hdr.SrcPort}
			if c := m.conns[key]; c != nil {
				m.reset(c)
			} else {
				m.replyRST(&pe.Hdr)
			}
		}
		return
	}
	h := &p.Hdr
	key := connKey{local: h.DstPort, peer: h.SrcPort}
	c := m.conns[key]
	if c == nil {
		switch h.Op {
		case OpRST:
		case OpRequest:
			m.guestConnect(h)
		default:
			m.replyRST(h)
		}
		return
	}
	m.dispatch(c, &p)
}

// replyRST answers h (which has no connection) with an RST, unless h is one.
func (m *muxer) replyRST(h *Hdr) {
	if h.Op == OpRST {
		return
	}
	if len(m.rstQueue) >= maxRSTQueue {
		m.stats.droppedRST.Add(1)
		m.warn("rstq", "vsock: RST queue full; dropping a reply", "limit", maxRSTQueue)
		return
	}
	m.rstQueue = append(m.rstQueue, Hdr{
		SrcCID: HostCID, DstCID: m.guestCID,
		SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: h.Type, Op: OpRST,
	})
}

// guestConnect handles a REQUEST for a new connection: dial <uds>_<port>.
func (m *muxer) guestConnect(h *Hdr) {
	if len(m.conns) >= m.maxConns {
		m.stats.refused.Add(1)
		m.warn("cap", "vsock: connection limit reached; refusing a guest REQUEST", "limit", m.maxConns)
		m.replyRST(h)
		return
	}
	c := &conn{key: connKey{local: h.DstPort, peer: h.SrcPort}, state: statePeerInit}
	c.updatePeerCredit(h)
	m.add(c)
	m.dial(c)
}

// dispatch applies a valid packet to its connection (the state machine in conn.go).
func (m *muxer) dispatch(c *conn, p *Packet) {
	h := &p.Hdr
	if c.state == stateClosing {
		return // our RST is on its way
	}
	if h.Op == OpRST {
		m.remove(c)
		return
	}
	c.updatePeerCredit(h)
	switch c.state {
	case stateLocalInit:
		if h.Op != OpResponse || c.pend&pendRequest != 0 {
			m.reset(c)
			return
		}
		m.setDeadline(c, time.Time{})
		m.establish(c, []byte("OK "+strconv.FormatUint(uint64(c.key.local), 10)+"\n"))
		return
	case statePeerInit:
		m.reset(c)
		return
	}
	switch h.Op {
	case OpRW:
		m.guestData(c, p)
	case OpCreditUpdate:
	case OpCreditRequest:
		c.pend |= pendCreditUpdate
	case OpShutdown:
		m.guestShutdown(c, h.Flags&ShutdownBoth)
	default: // REQUEST, RESPONSE on an established connection
		m.reset(c)
		return
	}
	m.schedule(c)
}

// establish starts the host I/O of a connection.
func (m *muxer) establish(c *conn, preamble []byte) {
	c.state = stateEstablished
	c.stream = newStream(c, c.sock, preamble)
	c.stream.start(m.host)
	m.schedule(c)
}

// guestData buffers an RW payload for the writer.
func (m *muxer) guestData(c *conn, p *Packet) {
	n := int(p.Hdr.Len)
	if n == 0 {
		return
	}
	if c.peerShut&ShutdownSend != 0 {
		m.warn("rw-after-shutdown", "vsock: guest sent data after SHUTDOWN SEND; resetting", "host_port", c.key.local)
		m.reset(c)
		return
	}
	if n > c.rxFree() {
		m.stats.creditViolated.Add(1)
		m.warn("credit", "vsock: guest exceeded its credit; resetting", "host_port", c.key.local,
			"len", n, "free", c.rxFree())
		m.reset(c)
		return
	}
	c.stream.out.put(p.Payload)
	c.rxCnt += uint32(n)
	m.stats.bufferedToHost.Add(int64(n))
	c.stream.notify()
}

// guestShutdown applies SHUTDOWN flags from the guest.
func (m *muxer) guestShutdown(c *conn, flags uint32) {
	newFlags := flags &^ c.peerShut
	c.peerShut |= flags
	if newFlags&ShutdownSend != 0 {
		c.stream.out.shutWrite()
		c.stream.notify()
	}
	if newFlags&ShutdownRcv != 0 {
		m.stats.bufferedToVM.Add(-int64(c.pendingBytes))
		c.dropChunks()
	}
	if c.peerShut == ShutdownBoth && !c.writeClosed {
		m.setDeadline(c, time.Now().Add(closeTimeout))
	}
}

// ---- host events ----

func (m *muxer) handleEvent(ev event) {
	switch ev.kind {
	case evHostConnect:
		m.hostConnect(ev.sock, ev.port)
		return
	}
	c := ev.c
	if c.state == stateClosed || c.state == stateClosing {
		if ev.sock != nil {
			ev.sock.Close()
		}
		putChunkBuf(ev.buf)
		return
	}
	switch ev.kind {
	case evDialed:
		if ev.err != nil {
			m.log.Debug("vsock: guest connect: dial", "port", c.key.local, "err", ev.err)
			m.reset(c)
			return
		}
		c.sock = ev.sock
		c.pend |= pendResponse
		m.establish(c, nil)
	case evRead:
		c.grant = 0
		if len(ev.data) > 0 && c.peerShut&ShutdownRcv == 0 {
			c.chunks = append(c.chunks, chunk{buf: ev.buf, data: ev.data})
			c.pendingBytes += len(ev.data)
			m.stats.bufferedToVM.Add(int64(len(ev.data)))
		} else {
			putChunkBuf(ev.buf)
		}
		if ev.err != nil {
			if isEOF(ev.err) {
				c.hostEOF = true
			} else {
				c.readFailed = true
				m.log.Debug("vsock: read from host socket", "host_port", c.key.local, "err", ev.err)
				m.reset(c)
				return
			}
		}
		m.schedule(c)
	case evWritten:
		if ev.n > 0 {
			c.noteForwarded(ev.n)
			m.stats.bufferedToHost.Add(-int64(ev.n))
		}
		if ev.err != nil {
			m.log.Debug("vsock: write to host socket", "host_port", c.key.local, "err", ev.err)
			m.reset(c)
			return
		}
		m.schedule(c)
	case evWriteClosed:
		c.writeClosed = true
		if c.deadline.After(time.Time{}) && c.state == stateEstablished {
			m.setDeadline(c, time.Time{})
		}
		m.schedule(c)
	}
}

// hostConnect starts a host-initiated connection to guest port.
func (m *muxer) hostConnect(sock *net.UnixConn, port uint32) {
	if len(m.conns) >= m.maxConns {
		m.stats.refused.Add(1)
		m.warn("cap", "vsock: connection limit reached; closing a host client", "limit", m.maxConns)
		sock.Close()
		return
	}
	c := &conn{
		key:      connKey{local: m.allocLocalPort(port), peer: port},
		state:    stateLocalInit,
		hostInit: true,
		sock:     sock,
		pend:     pendRequest,
	}
	m.add(c)
	m.schedule(c)
}
