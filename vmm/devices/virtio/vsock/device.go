// device.go — the virtio-vsock device model (virtio 1.2 §5.10): what the transport sees
// (ID 19, three queues, an 8-byte configuration space holding the guest CID) and the
// device loop goroutine that does all queue work.
//
//	queue  index  direction      content
//	rx     0      device→driver  writable buffers the device fills with host→guest packets
//	tx     1      driver→device  readable guest→host packets (header + payload)
//	event  2      device→driver  transport events (TRANSPORT_RESET); buffers are kept, never
//	                             used: we neither migrate nor snapshot
//
// Configuration space: guest_cid, le64 at offset 0, read-only.
//
// Goroutines and ownership:
//
//	loop       one, from New to Close; owns the queues, the muxer and every conn; the only
//	           code that touches guest memory. It sleeps in a select on: kick (Notify),
//	           events (host goroutines), ctl (Activate/Reset), a deadline timer, stop.
//	host       accept/handshake/dial/stream goroutines (unix.go, stream.go); never touch
//	           guest memory; talk to the loop only through events.
//	callers    Notify only does a non-blocking send on kick; Activate and Reset hand a
//	           function to the loop and wait for it (microseconds: the loop never blocks).
//
// The device (and its Unix listener) lives from New to Close, independent of driver
// activation: a host client may connect before the guest driver is up, and its REQUEST
// is delivered once the driver posts RX buffers. Reset forgets every connection and the
// queues; the listener stays, so a re-initialised driver works again.
//
// Queue errors: a malformed chain is returned empty (or skipped when its head is out of
// range) and counted; an available index that runs ahead of the ring, or a failed
// used-ring write, means the driver is broken: the device stops using its queues and
// asks for a reset (virtio.Interrupt.NeedsReset).

package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

// Queue indices.
const (
	QueueRX    = 0
	QueueTX    = 1
	QueueEvent = 2
)

// QueueMaxSize is the largest size the device accepts for each queue.
const QueueMaxSize = 256

// maxEventBatch bounds the host events handled before the queues get a turn.
const maxEventBatch = 256

// maxTXBatch bounds the TX chains handled in one pass, so that a guest that keeps the TX
// queue full cannot keep host events (write progress, new data) waiting.
const maxTXBatch = QueueMaxSize

// Config configures a Device.
type Config struct {
	// GuestCID is the guest's context ID (default DefaultGuestCID, 3). Must be in
	// [3, 0xffffffff).
	GuestCID uint64
	// UDSPath is the host-side listener path: host clients connect here and send
	// "CONNECT <port>\n"; guest connections to port P go to UDSPath + "_" + P.
	UDSPath string
	// Logger receives diagnostics (default slog.Default()).
	Logger *slog.Logger
	// MaxConns caps connections in any state (default DefaultMaxConns, 1023).
	MaxConns int
	// HandshakeTimeout bounds how long a host client may take to send its CONNECT line
	// (default 5 s).
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds how long a host client waits for the guest to accept after
	// the REQUEST reached it (default 10 s).
	ConnectTimeout time.Duration
}

// Stats is a snapshot of the device's counters.
type Stats struct {
	Conns int64 // connections in any state
	// BufferedToHost is guest→host data accepted from the TX queue but not yet written
	// to Unix sockets; BufferedToGuest is host→guest data read from Unix sockets but not
	// yet placed in RX buffers. Both are bounded per connection (see conn.go).
	BufferedToHost  int64
	BufferedToGuest int64
	Malformed       uint64 // invalid TX packets
	CreditViolated  uint64 // RW packets beyond the credit we gave (connection reset)
	DroppedRST      uint64 // RST replies dropped because the RST queue was full
	Refused         uint64 // connections refused at MaxConns
	BadChains       uint64 // malformed descriptor chains
}

// Device is a virtio-vsock device whose host side is Unix sockets (Firecracker's hybrid
// vsock). It implements virtio.Device.
type Device struct {
	cfg   Config
	log   *slog.Logger
	host  *host
	mux   *muxer
	stats counters

	kick chan struct{} // Notify → loop, capacity 1
	ctl  chan func()   // Activate/Reset → loop
	done chan struct{} // closed when the loop has exited

	closeOnce sync.Once

	// Loop-owned.
	active bool
	broken bool
	queues []*virtq.Queue
	irq    virtio.Interrupt
}

var _ virtio.Device = (*Device)(nil)

// New creates the device and starts listening on cfg.UDSPath (a stale socket file there
// is removed first).
func New(cfg Config) (*Device, error) {
	if cfg.GuestCID == 0 {
		cfg.GuestCID = DefaultGuestCID
	}
	if cfg.GuestCID < 3 || cfg.GuestCID >= 0xffffffff {
		return nil, fmt.Errorf("vsock: guest CID %d: must be in [3, 0xffffffff)", cfg.GuestCID)
	}
	if cfg.UDSPath == "" {
		return nil, errors.New("vsock: no Unix socket path")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	ln, err := listen(cfg.UDSPath)
	if err != nil {
		return nil, err
	}
	d := &Device{
		cfg:  cfg,
		log:  cfg.Logger,
		kick: make(chan struct{}, 1),
		ctl:  make(chan func()),
		done: make(chan struct{}),
	}
	d.host = newHost(d.log, cfg.UDSPath, ln, cfg.HandshakeTimeout)
	d.mux = newMuxer(d.log, cfg.GuestCID, cfg.MaxConns, cfg.ConnectTimeout, d.host, &d.stats)
	d.host.startAccept()
	go d.loop()
	return d, nil
}

// ID is virtio.DeviceVsock.
func (d *Device) ID() virtio.DeviceID { return virtio.DeviceVsock }

// Features offers VERSION_1 and EVENT_IDX (no VIRTIO_VSOCK_F_STREAM/SEQPACKET bits:
// stream is implied, seqpacket is not supported).
func (d *Device) Features() uint64 {
	return virtio.FeatureVersion1 | virtio.FeatureRingEventIdx
}

// QueueMaxSizes: rx, tx, event.
func (d *Device) QueueMaxSizes() []uint16 {
	return []uint16{QueueMaxSize, QueueMaxSize, QueueMaxSize}
}

// ReadConfig reads struct virtio_vsock_config {le64 guest_cid}.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [8]byte
	binary.LittleEndian.PutUint64(cfg[:], d.cfg.GuestCID)
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o >= offset && o < uint64(len(cfg)) {
			data[i] = cfg[o]
		}
	}
}

// WriteConfig ignores writes: guest_cid is read-only.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate starts queue processing.
func (d *Device) Activate(args virtio.ActivateArgs) error {
	if len(args.Queues) < 2 || args.Queues[QueueRX] == nil || args.Queues[QueueTX] == nil {
		return errors.New("vsock: activate: the rx and tx queues must be enabled")
	}
	if args.Interrupt == nil {
		return errors.New("vsock: activate: no interrupt")
	}
	if !d.run(func() {
		d.queues = args.Queues
		d.irq = args.Interrupt
		d.active, d.broken = true, false
	}) {
		return errors.New("vsock: activate: device closed")
	}
	d.Notify(QueueTX)
	return nil
}

// Notify tells the loop that the driver made buffers available. It never blocks.
func (d *Device) Notify(q int) {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Reset stops queue processing and forgets every connection (their Unix sockets are
// closed). The listener stays open.
func (d *Device) Reset() {
	d.run(d.resetLocked)
}

func (d *Device) resetLocked() {
	d.active, d.broken = false, false
	d.queues, d.irq = nil, nil
	d.mux.resetAll()
}

// Close stops every goroutine, closes every socket and the listener (removing its file),
// and waits for them.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.host.close()
		<-d.done
		d.host.wg.Wait()
		// Events posted after the loop's last look carry sockets nobody else will close.
		for {
			select {
			case ev := <-d.host.events:
				if ev.sock != nil {
					ev.sock.Close()
				}
				putChunkBuf(ev.buf)
				continue
			default:
			}
			break
		}
	})
	return nil
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	st := &d.stats
	return Stats{
		Conns:           st.conns.Load(),
		BufferedToHost:  st.bufferedToHost.Load(),
		BufferedToGuest: st.bufferedToVM.Load(),
		Malformed:       st.malformed.Load(),
		CreditViolated:  st.creditViolated.Load(),
		DroppedRST:      st.droppedRST.Load(),
		Refused:         st.refused.Load(),
		BadChains:       st.badChains.Load(),
	}
}

// run executes f on the loop and waits; false if the loop has exited.
func (d *Device) run(f func()) bool {
	ran := make(chan struct{})
	select {
	case d.ctl <- func() { f(); close(ran) }:
		<-ran
		return true
	case <-d.done:
		return false
	}
}

func (d *Device) loop() {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time
	for {
		select {
		case <-d.host.stop:
			d.resetLocked()
			return
		case <-d.kick:
		case f := <-d.ctl:
			f()
		case ev := <-d.host.events:
			d.mux.handleEvent(ev)
		drain:
			for range maxEventBatch {
				select {
				case ev = <-d.host.events:
					d.mux.handleEvent(ev)
				default:
					break drain
				}
			}
		case now := <-timer.C:
			armed = time.Time{}
			d.mux.expire(now)
		}
		d.process()
		if next := d.mux.nextDeadline(); !next.Equal(armed) {
			timer.Stop()
			armed = next
			if !next.IsZero() {
				timer.Reset(time.Until(next))
			}
		}
	}
}

// process drains the TX queue, then fills the RX queue, then raises interrupts.
func (d *Device) process() {
	if !d.active || d.broken {
		return
	}
	rx, tx := d.queues[QueueRX], d.queues[QueueTX]
	if err := d.processTX(tx); err != nil {
		d.fail(err)
		return
	}
	if err := d.processRX(rx); err != nil {
		d.fail(err)
		return
	}
	for _, q := range []*virtq.Queue{tx, rx} {
		need, err := q.NeedsInterrupt()
		if err != nil {
			d.fail(err)
			return
		}
		if need {
			if err := d.irq.Signal(virtio.InterruptUsedBuffer); err != nil {
				d.log.Warn("vsock: signal interrupt", "err", err)
			}
		}
	}
}

// fail handles a broken driver: stop using the queues and ask for a reset.
func (d *Device) fail(err error) {
	d.log.Warn("vsock: queue broken; device needs reset", "err", err)
	d.broken = true
	d.irq.NeedsReset(err)
}

// popChain pops the next chain, returning bad chains to the driver. nil, nil: empty.
func (d *Device) popChain(q *virtq.Queue) (*virtq.Chain, error) {
	for {
		c, err := q.Pop()
		var ce *virtq.ChainError
		if errors.As(err, &ce) {
			d.stats.badChains.Add(1)
			d.mux.warn("chain", "vsock: malformed descriptor chain", "err", err)
			if ce.HeadValid {
				if err := q.Push(ce.Head, 0); err != nil {
					return nil, err
				}
			}
			continue
		}
		return c, err
	}
}

func (d *Device) processTX(tx *virtq.Queue) error {
	for range maxTXBatch {
		c, err := d.popChain(tx)
		if err != nil {
			return err
		}
		if c == nil {
			more, err := tx.EnableNotifications()
			if err != nil || !more {
				return err
			}
			continue
		}
		d.mux.handleTX(c.Readable)
		if err := tx.Push(c.Head, 0); err != nil {
			return err
		}
	}
	// More may be waiting: come back after the events and the RX queue had a turn.
	d.Notify(QueueTX)
	return nil
}

func (d *Device) processRX(rx *virtq.Queue) error {
	for d.mux.hasRXWork() {
		c, err := d.popChain(rx)
		if err != nil {
			return err
		}
		if c == nil {
			// Work waits for buffers: ask for a kick when the driver adds some.
			more, err := rx.EnableNotifications()
			if err != nil || !more {
				return err
			}
			continue
		}
		n := d.mux.fillRX(c)
		if err := rx.Push(c.Head, n); err != nil {
			return err
		}
	}
	return nil
}
