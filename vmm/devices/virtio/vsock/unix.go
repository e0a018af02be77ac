// unix.go — the host side of hybrid vsock, exposed exactly like Firecracker's
// (docs/vsock.md): Unix sockets stand in for host vsock sockets.
//
//	direction      host side                                           guest side
//	host → guest   connect to <uds>, send "CONNECT <port>\n",           a listener on vsock port <port>
//	               read "OK <host port>\n", then the stream
//	guest → host   a listener on the Unix socket <uds>_<port>          connect(CID 2, <port>)
//
// Goroutines (all tracked by host.wg, all stopped by host.close):
//
//	accept     one; accepts on <uds> and starts a handshake per client (at most
//	           maxHandshakes at once; further clients wait in the listen backlog)
//	handshake  reads the CONNECT line byte by byte (never past the newline: bytes after
//	           it belong to the stream) with a deadline; garbage, a line longer than
//	           maxConnectLine, EOF before the newline or the deadline close the client
//	           (cloud-hypervisor #6798 crashed on such input); a good line becomes an
//	           evHostConnect event
//	dial       one per guest REQUEST, bounded by the connection cap; dials <uds>_<port>
//	           with dialTimeout and reports evDialed
//
// The host side is trusted more than the guest but still bounded: a Unix client cannot
// make the device allocate anything before its CONNECT line is complete and the
// connection cap (muxer) admits it.

package vsock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// maxConnectLine bounds the "CONNECT <port>\n" line ("CONNECT 4294967295\n" is 19).
	maxConnectLine = 32
	// maxHandshakes bounds host clients that have connected but not finished their line.
	maxHandshakes = 64
	// defaultHandshakeTimeout bounds how long a host client may take to send its line.
	defaultHandshakeTimeout = 5 * time.Second
	// dialTimeout bounds connecting to <uds>_<port> for a guest REQUEST.
	dialTimeout = 2 * time.Second
	// eventQueueLen is the capacity of the goroutines → loop event channel.
	eventQueueLen = 1024
)

type eventKind uint8

const (
	evHostConnect eventKind = iota // a host client finished its CONNECT line: sock, port
	evDialed                       // dial for a guest REQUEST finished: c, sock or err
	evRead                         // the reader read data and/or hit err (io.EOF: end)
	evWritten                      // the writer wrote n bytes and/or hit err
	evWriteClosed                  // the writer shut the write side after draining
)

// event is what the host goroutines send to the device loop.
type event struct {
	kind eventKind
	c    *conn
	sock *net.UnixConn
	port uint32
	buf  *[]byte // pooled buffer behind data (evRead)
	data []byte
	n    int
	err  error
}

// host owns the Unix-socket side: the listener and every goroutine that touches a socket.
type host struct {
	log              *slog.Logger
	udsPath          string
	handshakeTimeout time.Duration
	ln               *net.UnixListener

	events chan event
	stop   chan struct{}
	ctx    context.Context // cancelled by close: aborts dials
	cancel context.CancelFunc
	wg     sync.WaitGroup

	hsSlots chan struct{} // counting semaphore for handshakes
	hsMu    sync.Mutex
	hsConns map[*net.UnixConn]struct{} // guarded by hsMu: clients in their handshake
}

// listen removes a stale socket file at path and listens on it.
func listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("vsock: listen %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("vsock: remove stale socket %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vsock: listen %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

func newHost(log *slog.Logger, path string, ln *net.UnixListener, handshakeTimeout time.Duration) *host {
	ctx, cancel := context.WithCancel(context.Background())
	return &host{
		log:              log,
		udsPath:          path,
		handshakeTimeout: handshakeTimeout,
		ln:               ln,
		events:           make(chan event, eventQueueLen),
		stop:             make(chan struct{}),
		ctx:              ctx,
		cancel:           cancel,
		hsSlots:          make(chan struct{}, maxHandshakes),
		hsConns:          make(map[*net.UnixConn]struct{}),
	}
}

// post hands an event to the loop; it returns false once the host is stopping.
func (h *host) post(ev event) bool {
	select {
	case h.events <- ev:
		return true
	case <-h.stop:
		return false
	}
}

func (h *host) startAccept() {
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.acceptLoop() }()
}

func (h *host) acceptLoop() {
	var backoff time.Duration
	for {
		// Take a handshake slot before accepting: beyond maxHandshakes, clients wait in
		// the kernel's listen backlog instead of costing us a goroutine each.
		select {
		case h.hsSlots <- struct{}{}:
		case <-h.stop:
			return
		}
		sock, err := h.ln.AcceptUnix()
		if err != nil {
			<-h.hsSlots
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			h.log.Warn("vsock: accept", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-h.stop:
				return
			}
		}
		backoff = 0
		h.hsMu.Lock()
		select {
		case <-h.stop:
			h.hsMu.Unlock()
			sock.Close()
			return
		default:
		}
		h.hsConns[sock] = struct{}{}
		h.hsMu.Unlock()
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.handshake(sock)
		}()
	}
}

// handshake reads "CONNECT <port>\n" from a new host client.
func (h *host) handshake(sock *net.UnixConn) {
	defer func() { <-h.hsSlots }()
	port, err := readConnect(sock, h.handshakeTimeout)
	h.hsMu.Lock()
	delete(h.hsConns, sock)
	h.hsMu.Unlock()
	if err != nil {
		h.log.Debug("vsock: host client handshake", "err", err)
		sock.Close()
		return
	}
	if !h.post(event{kind: evHostConnect, sock: sock, port: port}) {
		sock.Close()
	}
}

// readConnect reads and parses the CONNECT line within timeout.
func readConnect(sock *net.UnixConn, timeout time.Duration) (uint32, error) {
	if err := sock.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	var line [maxConnectLine]byte
	n := 0
	for {
		if n == len(line) {
			return 0, fmt.Errorf("connect line longer than %d bytes", maxConnectLine)
		}
		k, err := sock.Read(line[n : n+1])
		if k == 1 {
			if line[n] == '\n' {
				break
			}
			n++
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read connect line: %w", err)
		}
	}
	if err := sock.SetReadDeadline(time.Time{}); err != nil {
		return 0, err
	}
	return parseConnect(string(line[:n]))
}

// parseConnect parses "CONNECT <port>" (the newline already stripped).
func parseConnect(s string) (uint32, error) {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] != "CONNECT" {
		return 0, fmt.Errorf("connect line %q: want \"CONNECT <port>\"", s)
	}
	p, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("connect line %q: port: %w", s, err)
	}
	return uint32(p), nil
}

// dial connects to <uds>_<port> for a guest REQUEST and reports the result.
func (h *host) dial(c *conn) {
	path := h.udsPath + "_" + strconv.FormatUint(uint64(c.key.local), 10)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		d := net.Dialer{Timeout: dialTimeout}
		nc, err := d.DialContext(h.ctx, "unix", path)
		var sock *net.UnixConn
		if err == nil {
			sock = nc.(*net.UnixConn)
		}
		if !h.post(event{kind: evDialed, c: c, sock: sock, err: err}) && sock != nil {
			sock.Close()
		}
	}()
}

// close stops accepting, aborts handshakes and dials, and stops every poster. The caller
// must still close the streams' sockets (the loop does, on its way out) and then wait
// for h.wg.
func (h *host) close() {
	h.hsMu.Lock()
	close(h.stop)
	for s := range h.hsConns {
		s.Close()
	}
	h.hsMu.Unlock()
	h.cancel()
	if h.ln != nil {
		h.ln.Close()
	}
}
