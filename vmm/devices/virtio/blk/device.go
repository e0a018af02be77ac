package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

// Feature bits of virtio-blk (§5.2.3).
const (
	FeatureSizeMax     uint64 = 1 << 1  // VIRTIO_BLK_F_SIZE_MAX
	FeatureSegMax      uint64 = 1 << 2  // VIRTIO_BLK_F_SEG_MAX
	FeatureRO          uint64 = 1 << 5  // VIRTIO_BLK_F_RO
	FeatureBlkSize     uint64 = 1 << 6  // VIRTIO_BLK_F_BLK_SIZE
	FeatureFlush       uint64 = 1 << 9  // VIRTIO_BLK_F_FLUSH
	FeatureDiscard     uint64 = 1 << 13 // VIRTIO_BLK_F_DISCARD
	FeatureWriteZeroes uint64 = 1 << 14 // VIRTIO_BLK_F_WRITE_ZEROES
)

// QueueSize is the maximum size of the device's single request queue.
const QueueSize = 256

// Limits the device advertises in its configuration space.
const (
	// SegMax is seg_max: data buffers per request. A request also carries the header and
	// status descriptors, and a whole chain must fit in QueueSize descriptors (also with an
	// indirect table, which virtq bounds by the queue size).
	SegMax = QueueSize - 2
	// BlockSize is blk_size, the logical block size the guest uses.
	BlockSize = SectorSize
	// MaxDiscardSectors bounds one DISCARD/WRITE_ZEROES segment (1 GiB).
	MaxDiscardSectors = 1 << 21
	// MaxDiscardSegments bounds the segments of one DISCARD/WRITE_ZEROES request.
	MaxDiscardSegments = 32
	// discardAlignment is discard_sector_alignment in sectors (4 KiB).
	discardAlignment = 8
)

// Config describes the disk.
type Config struct {
	// Path is the disk image. Its size, rounded down to 512 bytes, is the capacity.
	Path string
	// ReadOnly opens the image read-only and offers VIRTIO_BLK_F_RO (e.g. squashfs).
	ReadOnly bool
	// Serial is the device ID returned by GET_ID (the run id), at most 20 bytes.
	Serial string
	// Logger receives warnings about guest misbehaviour (nil: slog.Default()).
	Logger *slog.Logger
}

// Stats counts what the device did.
type Stats struct {
	Requests      uint64 // completed requests, including failed ones
	Failed        uint64 // requests completed with IOERR or UNSUPP
	BadChains     uint64 // malformed descriptor chains returned unprocessed
	BytesRead     uint64
	BytesWritten  uint64
	Interrupts    uint64
	NeedsResetSet uint64 // times the device gave up on its queue
}

type stats struct {
	requests, failed, badChains, bytesRead, bytesWritten, interrupts, needsReset atomic.Uint64
}

// Device is a virtio-blk device over one image file.
type Device struct {
	log      *slog.Logger
	back     backend
	capacity uint64 // sectors
	features uint64
	config   []byte // struct virtio_blk_config, rendered once

	mu     sync.Mutex // serialises Activate, Reset and Close
	closed bool       // +checklocks:mu
	worker atomic.Pointer[worker]
	st     stats
}

// New opens the image and returns the device.
func New(cfg Config) (*Device, error) {
	if len(cfg.Serial) > IDBytes {
		return nil, fmt.Errorf("blk: serial %q longer than %d bytes", cfg.Serial, IDBytes)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	flag, lock := os.O_RDWR, unix.LOCK_EX
	if cfg.ReadOnly {
		flag, lock = os.O_RDONLY, unix.LOCK_SH
	}
	f, err := os.OpenFile(cfg.Path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("blk: open image: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), lock|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("blk: lock image %s (in use by another VM?): %w", cfg.Path, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blk: size of image %s: %w", cfg.Path, err)
	}
	if size < SectorSize {
		f.Close()
		return nil, fmt.Errorf("blk: image %s is %d bytes, smaller than one sector", cfg.Path, size)
	}
	if size%SectorSize != 0 {
		log.Warn("blk: image size is not a multiple of 512; the tail is not visible to the guest",
			"path", cfg.Path, "size", size)
	}
	d := &Device{
		log:      log.With("device", "blk", "path", cfg.Path),
		back:     backend{f: f, fd: int(f.Fd()), readOnly: cfg.ReadOnly},
		capacity: uint64(size) / SectorSize,
	}
	copy(d.back.serial[:], cfg.Serial)
	d.features = virtio.FeatureVersion1 | virtio.FeatureRingEventIdx | virtio.FeatureRingIndirectDesc |
		FeatureSegMax | FeatureBlkSize | FeatureFlush
	if cfg.ReadOnly {
		d.features |= FeatureRO
	} else {
		d.features |= FeatureDiscard | FeatureWriteZeroes
	}
	d.config = d.renderConfig()
	return d, nil
}

// Capacity is the disk size in 512-byte sectors.
func (d *Device) Capacity() uint64 { return d.capacity }

// renderConfig lays out struct virtio_blk_config (§5.2.4).
func (d *Device) renderConfig() []byte {
	c := make([]byte, 60)
	le := binary.LittleEndian
	le.PutUint64(c[0:], d.capacity) // capacity
	le.PutUint32(c[12:], SegMax)    // seg_max
	le.PutUint32(c[20:], BlockSize) // blk_size
	if d.features&FeatureDiscard != 0 {
		le.PutUint32(c[36:], MaxDiscardSectors)  // max_discard_sectors
		le.PutUint32(c[40:], MaxDiscardSegments) // max_discard_seg
		le.PutUint32(c[44:], discardAlignment)   // discard_sector_alignment
	}
	if d.features&FeatureWriteZeroes != 0 {
		le.PutUint32(c[48:], MaxDiscardSectors)  // max_write_zeroes_sectors
		le.PutUint32(c[52:], MaxDiscardSegments) // max_write_zeroes_seg
		c[56] = 1                                // write_zeroes_may_unmap
	}
	return c
}

// ID is virtio.DeviceBlock.
func (d *Device) ID() virtio.DeviceID { return virtio.DeviceBlock }

// Features are the feature bits the device offers.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes: one request queue.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig reads the configuration space; bytes beyond it read as zero.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	clear(data)
	if offset < uint64(len(d.config)) {
		copy(data, d.config[offset:])
	}
}

// WriteConfig ignores writes: without VIRTIO_BLK_F_CONFIG_WCE every field is read-only.
func (d *Device) WriteConfig(uint64, []byte) {}

// Stats returns the device counters.
func (d *Device) Stats() Stats {
	return Stats{
		Requests: d.st.requests.Load(), Failed: d.st.failed.Load(), BadChains: d.st.badChains.Load(),
		BytesRead: d.st.bytesRead.Load(), BytesWritten: d.st.bytesWritten.Load(),
		Interrupts: d.st.interrupts.Load(), NeedsResetSet: d.st.needsReset.Load(),
	}
}

// Activate starts the I/O goroutine on queue 0.
func (d *Device) Activate(args virtio.ActivateArgs) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("blk: activate: device is closed")
	}
	if d.worker.Load() != nil {
		return errors.New("blk: activate: already active")
	}
	if len(args.Queues) != 1 || args.Queues[0] == nil {
		return errors.New("blk: activate: the request queue is not enabled")
	}
	w := &worker{
		dev:  d,
		q:    args.Queues[0],
		irq:  args.Interrupt,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		lim: limits{
			capacity:    d.capacity,
			readOnly:    d.back.readOnly,
			discard:     args.Features&FeatureDiscard != 0,
			writeZeroes: args.Features&FeatureWriteZeroes != 0,
			maxSegments: MaxDiscardSegments,
			maxSectors:  MaxDiscardSectors,
		},
	}
	d.worker.Store(w)
	go w.run()
	return nil
}

// Notify wakes the I/O goroutine; it never blocks.
func (d *Device) Notify(q int) {
	if w := d.worker.Load(); w != nil && q == 0 {
		select {
		case w.kick <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// Reset stops the I/O goroutine and waits for it: afterwards the device touches neither
// guest memory nor the interrupt.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopWorker()
}

// +checklocks:d.mu
func (d *Device) stopWorker() {
	if w := d.worker.Swap(nil); w != nil {
		close(w.stop)
		<-w.done
	}
}

// Close stops the device and closes the image.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.stopWorker()
	if err := d.back.f.Close(); err != nil {
		return fmt.Errorf("blk: close image: %w", err)
	}
	return nil
}

// worker is one activation's I/O goroutine and the state it owns.
type worker struct {
	dev  *Device
	q    *virtq.Queue
	irq  virtio.Interrupt
	lim  limits
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// interruptBatch is how many requests the worker completes before it considers an
// interrupt in the middle of a batch.
const interruptBatch = 32

func (w *worker) run() {
	defer close(w.done)
	for {
		if err := w.q.DisableNotifications(); err != nil {
			w.broken(err)
			return
		}
		for n := 1; ; n++ {
			select {
			case <-w.stop:
				return
			default:
			}
			more, err := w.processOne()
			if err != nil {
				w.broken(err)
				return
			}
			if !more {
				break
			}
			if n%interruptBatch == 0 {
				// A long batch: let the driver start on what is done.
				if err := w.interrupt(); err != nil {
					w.broken(err)
					return
				}
			}
		}
		if err := w.interrupt(); err != nil {
			w.broken(err)
			return
		}
		more, err := w.q.EnableNotifications()
		if err != nil {
			w.broken(err)
			return
		}
		if more {
			continue
		}
		select {
		case <-w.kick:
		case <-w.stop:
			return
		}
	}
}

// interrupt signals used buffers if the driver wants to hear about them now.
func (w *worker) interrupt() error {
	need, err := w.q.NeedsInterrupt()
	if err != nil || !need {
		return err
	}
	w.dev.st.interrupts.Add(1)
	if err := w.irq.Signal(virtio.InterruptUsedBuffer); err != nil {
		// The line is the VMM's (an irqfd); a failure is a host problem, not the guest's.
		w.dev.log.Error("blk: raise interrupt", "err", err)
	}
	return nil
}

// broken gives up on the queue until the driver resets the device, then waits for that.
func (w *worker) broken(err error) {
	w.dev.st.needsReset.Add(1)
	w.irq.NeedsReset(fmt.Errorf("blk: queue: %w", err))
	<-w.stop
}

// processOne pops and completes one chain. It reports whether there was one; an error
// means the ring itself is unusable.
func (w *worker) processOne() (bool, error) {
	c, err := w.q.Pop()
	var ce *virtq.ChainError
	switch {
	case errors.As(err, &ce) && ce.HeadValid:
		w.dev.st.badChains.Add(1)
		w.warn("malformed descriptor chain", "err", err)
		return true, w.q.Push(ce.Head, 0)
	case err != nil:
		return false, err
	case c == nil:
		return false, nil
	}
	written := w.handle(c)
	return true, w.q.Push(c.Head, written)
}

// handle parses and executes one request and returns the used length (data bytes written
// plus the status byte).
func (w *worker) handle(c *virtq.Chain) uint32 {
	st := &w.dev.st
	st.requests.Add(1)
	r, err := parseRequest(c, w.lim)
	if err == errNoStatus {
		st.failed.Add(1)
		w.warn("request without a status byte", "head", c.Head)
		return 0
	}
	var re *requestError
	if errors.As(err, &re) {
		st.failed.Add(1)
		if re.status == StatusIOErr {
			w.warn("bad request", "err", err)
		}
		r.status[0] = byte(re.status)
		return 1
	}
	status, n, err := w.dev.back.execute(&r)
	if err != nil {
		w.dev.log.Error("blk: I/O", "err", err) // a host-side failure
	}
	if status != StatusOK {
		st.failed.Add(1)
	}
	switch r.typ {
	case TypeIn:
		st.bytesRead.Add(uint64(n))
	case TypeOut:
		if status == StatusOK {
			st.bytesWritten.Add(r.dataLen)
		}
	}
	r.status[0] = byte(status)
	return n + 1
}

// warn logs guest misbehaviour at a limited rate (first 16, then one in 1024).
func (w *worker) warn(msg string, args ...any) {
	if n := w.dev.st.failed.Load() + w.dev.st.badChains.Load(); n <= 16 || n%1024 == 0 {
		w.dev.log.Warn("blk: "+msg, args...)
	}
}
