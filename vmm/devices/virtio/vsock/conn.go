// conn.go — one vsock stream connection between a guest socket and a host Unix socket:
// its state machine, both directions of credit-based flow control, and the choice of the
// next packet it wants to send to the guest.
//
// Every field of a conn is owned by the device loop goroutine (device.go); the host-side
// I/O goroutines (stream.go) reach it only through events.
//
// # Primer (virtio 1.2 §5.10.6)
//
// A connection is named by (host port, guest port). The initiator sends REQUEST, the
// acceptor answers RESPONSE (or RST to refuse). Data flows in RW packets. Each side
// advertises, in every header, buf_alloc (its receive buffer for this connection) and
// fwd_cnt (bytes it has consumed from that buffer so far, wrapping at 2^32). A sender may
// have at most buf_alloc - (tx_cnt - fwd_cnt) bytes in flight; CREDIT_UPDATE announces a new
// fwd_cnt, CREDIT_REQUEST asks for one. SHUTDOWN carries RCV/SEND flags: "I will receive /
// send no more". RST tears the connection down at once.
//
// # States
//
//	state        meaning
//	localInit    a host client sent "CONNECT <port>"; REQUEST queued or sent to the guest
//	peerInit     the guest sent REQUEST; the VMM is dialling <uds>_<port>
//	established  data flows; half-close is tracked by flags (peerShut, shutSent, writeClosed)
//	closing      an RST for the guest is queued; removed as soon as it is sent
//	closed       removed from the table; late events from its goroutines are ignored
//
// # Transitions
//
//	state        input                                 action                                   next
//	localInit    RESPONSE from guest                   write "OK <host port>\n", start I/O      established
//	localInit    RST from guest                        close the Unix client                    closed
//	localInit    any other packet, timeout             RST, close the Unix client               closing
//	peerInit     dial succeeded                        RESPONSE, start I/O                      established
//	peerInit     dial failed                           RST                                      closing
//	peerInit     RST from guest                        (close the socket when the dial returns) closed
//	peerInit     any other packet                      RST                                      closing
//	established  RW within credit                      buffer, writer flushes, fwd_cnt grows    established
//	established  RW beyond credit, RW after SHUTDOWN   RST (the guest broke the protocol)       closing
//	established  CREDIT_UPDATE                         (credit taken from every header)         established
//	established  CREDIT_REQUEST                        CREDIT_UPDATE                            established
//	established  SHUTDOWN SEND                         flush, then CloseWrite on the Unix side  established
//	established  SHUTDOWN RCV                          stop reading the Unix side, drop its data established
//	established  Unix EOF                              SHUTDOWN SEND after the data before it   established
//	established  both directions closed                RST                                      closing
//	established  peer closed both, flush > closeTimeout RST                                     closing
//	established  Unix read/write error                 RST                                      closing
//	established  REQUEST, RESPONSE                     RST                                      closing
//	established  RST from guest                        close the Unix socket                    closed
//	closing      RST delivered to the guest            close the Unix socket                    closed
//	closing      any packet                            ignored (the RST is on its way)          closing
//
// # Limits
//
// Guest→host bytes are buffered in a ring of bufAlloc (256 KiB) per connection, allocated
// on the first RW; a guest that sends beyond the credit it was given is reset, so this
// never grows. Host→guest, the Unix socket is read only when the guest has credit, at most
// MaxPayload per read and at most maxChunks chunks ahead, so at most 128 KiB per
// connection waits for RX buffers. Pending control packets are flags on the connection,
// bounded by the number of connections.

package vsock

import (
	"net"
	"time"
)

// bufAlloc is the receive buffer the device advertises per connection (guest→host).
const bufAlloc = 256 << 10

// creditUpdateThreshold: a CREDIT_UPDATE is sent once this many consumed bytes are
// unreported, or when the guest's view of our free space has fallen below it.
const creditUpdateThreshold = 64 << 10

// maxChunks is how many chunks read from the Unix socket may wait for RX buffers per
// connection (double buffering: one being sent while the next is read).
const maxChunks = 2

// closeTimeout bounds how long a connection the guest closed in both directions may wait
// for its buffered data to reach a slow Unix peer before it is reset (Linux waits the same
// VSOCK_CLOSE_TIMEOUT, 8 s, for our RST before resetting by itself).
const closeTimeout = 8 * time.Second

type connState uint8

const (
	stateLocalInit connState = iota
	statePeerInit
	stateEstablished
	stateClosing
	stateClosed
)

func (s connState) String() string {
	return [...]string{"localInit", "peerInit", "established", "closing", "closed"}[s]
}

// pending control packets, one bit each.
type pendSet uint8

const (
	pendRequest pendSet = 1 << iota
	pendResponse
	pendRST
	pendCreditUpdate
	pendCreditRequest
)

// connKey names a connection: the host-side port and the guest-side port.
type connKey struct {
	local, peer uint32
}

// chunk is data read from the Unix socket, waiting to be sent to the guest.
type chunk struct {
	buf  *[]byte // pooled backing array, returned when the chunk is sent
	data []byte
	off  int
}

type conn struct {
	key   connKey
	state connState
	// hostInit: the host client started the connection (it gets "OK <port>\n").
	hostInit bool

	// sock is the Unix socket: the accepted client (localInit) or the dialled
	// <uds>_<port> (established after peerInit). stream runs its I/O once established.
	sock   *net.UnixConn
	stream *stream

	// guest→host: the device is the receiver.
	rxCnt       uint32 // bytes accepted from the guest
	fwdCnt      uint32 // bytes written to the Unix socket
	lastFwdSent uint32 // fwd_cnt in the last header sent to the guest
	writeClosed bool   // the Unix write side was shut after a SHUTDOWN SEND and a flush

	// host→guest: the device is the sender.
	txCnt        uint32 // bytes sent to the guest
	peerBufAlloc uint32
	peerFwdCnt   uint32
	chunks       []chunk
	pendingBytes int  // bytes in chunks not yet sent
	grant        int  // bytes the reader goroutine may be reading now (0: idle)
	hostEOF      bool // the reader saw EOF (after every chunk before it)
	readFailed   bool

	peerShut uint32 // SHUTDOWN flags received from the guest
	shutSent bool   // SHUTDOWN SEND sent to the guest

	pend            pendSet
	creditRequested bool // a CREDIT_REQUEST went out and no credit came back yet

	inReady  bool      // queued in muxer.ready
	deadline time.Time // zero: none
}

// peerFree is how many more bytes the guest can take on this connection:
// peer_buf_alloc - (tx_cnt - peer_fwd_cnt), clamped at zero (a hostile guest may report
// a fwd_cnt ahead of what we sent).
func (c *conn) peerFree() int {
	inFlight := c.txCnt - c.peerFwdCnt
	if inFlight > c.peerBufAlloc {
		return 0
	}
	return int(c.peerBufAlloc - inFlight)
}

// buffered is how many guest→host bytes wait in the ring.
func (c *conn) buffered() int { return int(c.rxCnt - c.fwdCnt) }

// rxFree is the space left in our receive buffer.
func (c *conn) rxFree() int { return bufAlloc - c.buffered() }

// updatePeerCredit takes buf_alloc and fwd_cnt from a guest header.
func (c *conn) updatePeerCredit(h *Hdr) {
	c.peerBufAlloc = h.BufAlloc
	c.peerFwdCnt = h.FwdCnt
	if c.peerFree() > 0 {
		c.creditRequested = false
	}
}

// noteForwarded records n bytes written to the Unix socket and decides whether the guest
// needs a CREDIT_UPDATE.
func (c *conn) noteForwarded(n int) {
	c.fwdCnt += uint32(n)
	unreported := c.fwdCnt - c.lastFwdSent
	guestView := bufAlloc - int(c.rxCnt-c.lastFwdSent)
	if unreported > 0 && (unreported >= creditUpdateThreshold || guestView < creditUpdateThreshold) {
		c.pend |= pendCreditUpdate
	}
}

// canSendData: data waits and the guest has room for it.
func (c *conn) canSendData() bool {
	return c.state == stateEstablished && len(c.chunks) > 0 && c.peerShut&ShutdownRcv == 0 && c.peerFree() > 0
}

// wantsShutdown: the Unix side reached EOF and everything read before it was sent.
func (c *conn) wantsShutdown() bool {
	return c.state == stateEstablished && c.hostEOF && !c.shutSent && len(c.chunks) == 0 && c.grant == 0
}

// wantsRX reports whether the connection has a packet for the guest.
func (c *conn) wantsRX() bool {
	switch c.state {
	case stateClosed:
		return false
	case stateClosing:
		return c.pend&pendRST != 0
	case stateLocalInit:
		return c.pend&pendRequest != 0
	case statePeerInit:
		return false
	}
	return c.pend != 0 || c.canSendData() || c.wantsShutdown()
}

// readGrant is how many bytes the reader goroutine may read from the Unix socket now
// (0: none). The guest must have credit for them beyond what already waits in chunks.
func (c *conn) readGrant() int {
	if c.state != stateEstablished || c.stream == nil || c.grant != 0 || c.hostEOF || c.readFailed ||
		c.peerShut&ShutdownRcv != 0 || len(c.chunks) >= maxChunks {
		return 0
	}
	free := c.peerFree() - c.pendingBytes
	if free <= 0 {
		return 0
	}
	return min(free, MaxPayload)
}

// finished reports whether nothing can flow any more in either direction, so the
// connection should be reset: the guest will not send (SHUTDOWN SEND, flushed and
// passed on as CloseWrite) and will not receive (SHUTDOWN RCV) or has been told we will
// not send (our SHUTDOWN SEND).
func (c *conn) finished() bool {
	return c.state == stateEstablished && c.writeClosed && (c.peerShut&ShutdownRcv != 0 || c.shutSent)
}

// dropChunks releases data read from the Unix socket that will never be sent.
func (c *conn) dropChunks() {
	for _, ch := range c.chunks {
		putChunkBuf(ch.buf)
	}
	c.chunks = nil
	c.pendingBytes = 0
}
