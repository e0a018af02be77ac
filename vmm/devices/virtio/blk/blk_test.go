package blk_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/blk"
	"github.com/vmbench/runner/vmm/devices/virtio/mmio"
	"github.com/vmbench/runner/vmm/devices/virtio/virtiotest"
)

const wait = 5 * time.Second

// quiet drops the warnings a hostile-driver test provokes on purpose.
var quiet = slog.New(slog.DiscardHandler)

// image writes a disk image of size bytes filled with a deterministic pattern.
func image(t testing.TB, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func start(t testing.TB, cfg blk.Config, opts virtiotest.Options) (*blk.Device, *virtiotest.Device) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	dev, err := blk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := virtiotest.Start(dev, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return dev, d
}

func hdr(typ blk.RequestType, sector uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, uint32(typ))
	binary.LittleEndian.PutUint64(b[8:], sector)
	return b
}

func segment(sector uint64, n, flags uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, sector)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint32(b[12:], flags)
	return b
}

// do submits one chain and waits for its completion.
func do(t testing.TB, q *virtiotest.DriverQueue, readable [][]byte, writable []int) virtiotest.Used {
	t.Helper()
	head, err := q.Submit(readable, writable)
	if err != nil {
		t.Fatal(err)
	}
	u, err := q.WaitUsed(wait)
	if err != nil {
		t.Fatal(err)
	}
	if u.Head != head {
		t.Fatalf("completed head %d, submitted %d", u.Head, head)
	}
	return u
}

// status is the status byte: the last writable byte. The device must also have
// reported it in the used length.
func status(t testing.TB, u virtiotest.Used) blk.Status {
	t.Helper()
	if len(u.Writable) == 0 || u.Len == 0 {
		t.Fatalf("request completed with used length %d: no status written", u.Len)
	}
	return blk.Status(u.Writable[len(u.Writable)-1])
}

func TestConfigSpace(t *testing.T) {
	path, _ := image(t, 1<<20+100) // not a multiple of 512: the tail is invisible
	_, d := start(t, blk.Config{Path: path, Serial: "run-1"}, virtiotest.Options{})
	cfg := d.ReadConfig(0, 60)
	le := binary.LittleEndian
	if got := le.Uint64(cfg[0:]); got != 1<<20/512 {
		t.Errorf("capacity = %d sectors, want %d", got, 1<<20/512)
	}
	if got := le.Uint32(cfg[12:]); got != blk.SegMax {
		t.Errorf("seg_max = %d", got)
	}
	if got := le.Uint32(cfg[20:]); got != 512 {
		t.Errorf("blk_size = %d", got)
	}
	if le.Uint32(cfg[40:]) == 0 || cfg[56] != 1 {
		t.Errorf("discard/write-zeroes limits missing: %x", cfg[36:60])
	}
	want := virtio.FeatureVersion1 | virtio.FeatureRingEventIdx | virtio.FeatureRingIndirectDesc |
		blk.FeatureFlush | blk.FeatureSegMax | blk.FeatureBlkSize | blk.FeatureDiscard | blk.FeatureWriteZeroes
	if d.Features != want {
		t.Errorf("negotiated %#x, want %#x", d.Features, want)
	}
	if beyond := d.ReadConfig(60, 16); !bytes.Equal(beyond, make([]byte, 16)) {
		t.Errorf("configuration beyond the struct reads %x, want zeros", beyond)
	}
}

func TestReadWriteFlush(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     virtiotest.Options
		indirect bool
	}{
		{"event-idx", virtiotest.Options{}, false},
		{"no-event-idx", virtiotest.Options{ExcludeFeatures: virtio.FeatureRingEventIdx}, false},
		{"indirect", virtiotest.Options{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, disk := image(t, 1<<20)
			dev, d := start(t, blk.Config{Path: path}, tc.opts)
			q := d.Queues[0]
			submit := func(readable [][]byte, writable []int) virtiotest.Used {
				if !tc.indirect {
					return do(t, q, readable, writable)
				}
				if _, err := q.AddIndirect(readable, writable); err != nil {
					t.Fatal(err)
				}
				q.Kick()
				u, err := q.WaitUsed(wait)
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			// Read 3 sectors at 7 into three data buffers of odd sizes.
			u := submit([][]byte{hdr(blk.TypeIn, 7)}, []int{100, 1000, 436, 1})
			if u.Len != 1537 || status(t, u) != blk.StatusOK {
				t.Fatalf("IN: used len %d status %d", u.Len, status(t, u))
			}
			if !bytes.Equal(u.Data[:1536], disk[7*512:10*512]) {
				t.Fatal("IN returned the wrong bytes")
			}
			// Write 2 sectors at the last sector pair, header and data in one descriptor.
			payload := bytes.Repeat([]byte("0123456789abcdef"), 64)
			last := uint64(len(disk)/512 - 2)
			u = submit([][]byte{append(hdr(blk.TypeOut, last), payload...)}, []int{1})
			if u.Len != 1 || status(t, u) != blk.StatusOK {
				t.Fatalf("OUT: used len %d status %v", u.Len, u.Data)
			}
			u = submit([][]byte{hdr(blk.TypeFlush, 0)}, []int{1})
			if status(t, u) != blk.StatusOK {
				t.Fatalf("FLUSH status %d", status(t, u))
			}
			onDisk, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onDisk[last*512:], payload) || !bytes.Equal(onDisk[:last*512], disk[:last*512]) {
				t.Fatal("OUT did not land exactly in the target sectors")
			}
			// Read it back through the device, data and status in one descriptor.
			u = submit([][]byte{hdr(blk.TypeIn, last)}, []int{1025})
			if !bytes.Equal(u.Data[:1024], payload) || status(t, u) != blk.StatusOK {
				t.Fatal("IN after OUT returned the wrong bytes")
			}
			st := dev.Stats()
			if st.Requests != 4 || st.Failed != 0 || st.BytesRead != 2560 || st.BytesWritten != 1024 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestGetID(t *testing.T) {
	path, _ := image(t, 4096)
	for _, serial := range []string{"run-0123", "exactly-twenty-bytes"} {
		func() {
			dev, err := blk.New(blk.Config{Path: path, Serial: serial})
			if err != nil {
				t.Fatal(err)
			}
			d, err := virtiotest.Start(dev, virtiotest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			u := do(t, d.Queues[0], [][]byte{hdr(blk.TypeGetID, 0)}, []int{20, 1})
			want := append([]byte(serial), make([]byte, 20-len(serial))...)
			if !bytes.Equal(u.Data[:20], want) || status(t, u) != blk.StatusOK || u.Len != 21 {
				t.Fatalf("GET_ID = %q (len %d)", u.Data, u.Len)
			}
		}()
	}
	if _, err := blk.New(blk.Config{Path: path, Serial: "twenty-one-bytes-long"}); err == nil {
		t.Fatal("a 21-byte serial was accepted")
	}
}

func TestBadRequests(t *testing.T) {
	path, disk := image(t, 64<<10)
	const sectors = 64 << 10 / 512
	dev, d := start(t, blk.Config{Path: path}, virtiotest.Options{})
	q := d.Queues[0]
	for _, tc := range []struct {
		name     string
		readable [][]byte
		writable []int
		want     blk.Status
	}{
		{"read past the end", [][]byte{hdr(blk.TypeIn, sectors-1)}, []int{1024, 1}, blk.StatusIOErr},
		{"read at the end", [][]byte{hdr(blk.TypeIn, sectors)}, []int{512, 1}, blk.StatusIOErr},
		{"sector overflows", [][]byte{hdr(blk.TypeIn, 1<<63)}, []int{512, 1}, blk.StatusIOErr},
		{"sector wraps", [][]byte{hdr(blk.TypeIn, ^uint64(0))}, []int{512, 1}, blk.StatusIOErr},
		{"write past the end", [][]byte{hdr(blk.TypeOut, sectors-1), make([]byte, 1024)}, []int{1}, blk.StatusIOErr},
		{"read not a multiple of 512", [][]byte{hdr(blk.TypeIn, 0)}, []int{100, 1}, blk.StatusIOErr},
		{"write not a multiple of 512", [][]byte{hdr(blk.TypeOut, 0), make([]byte, 513)}, []int{1}, blk.StatusIOErr},
		{"short header", [][]byte{hdr(blk.TypeIn, 0)[:15]}, []int{512, 1}, blk.StatusIOErr},
		{"IN with readable data", [][]byte{hdr(blk.TypeIn, 0), make([]byte, 512)}, []int{512, 1}, blk.StatusIOErr},
		{"OUT with writable data", [][]byte{hdr(blk.TypeOut, 0), make([]byte, 512)}, []int{512, 1}, blk.StatusIOErr},
		{"GET_ID without buffer", [][]byte{hdr(blk.TypeGetID, 0)}, []int{1}, blk.StatusIOErr},
		{"unknown type", [][]byte{hdr(99, 0)}, []int{1}, blk.StatusUnsupp},
		{"GET_LIFETIME", [][]byte{hdr(blk.TypeGetLifetime, 0)}, []int{16, 1}, blk.StatusUnsupp},
		{"discard with unmap flag", [][]byte{hdr(blk.TypeDiscard, 0), segment(0, 8, 1)}, []int{1}, blk.StatusUnsupp},
		{"write zeroes unknown flag", [][]byte{hdr(blk.TypeWriteZeroes, 0), segment(0, 8, 2)}, []int{1}, blk.StatusUnsupp},
		{"discard past the end", [][]byte{hdr(blk.TypeDiscard, 0), segment(sectors-4, 8, 0)}, []int{1}, blk.StatusIOErr},
		{"discard partial segment", [][]byte{hdr(blk.TypeDiscard, 0), segment(0, 8, 0)[:12]}, []int{1}, blk.StatusIOErr},
		{"discard too many segments", [][]byte{hdr(blk.TypeDiscard, 0), bytes.Repeat(segment(0, 1, 0), 33)}, []int{1}, blk.StatusIOErr},
		{"discard too long", [][]byte{hdr(blk.TypeDiscard, 0), segment(0, blk.MaxDiscardSectors+1, 0)}, []int{1}, blk.StatusIOErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := do(t, q, tc.readable, tc.writable)
			if got := status(t, u); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
		})
	}
	// No writable byte at all: nothing to report into, the chain comes back with length 0.
	if u := do(t, q, [][]byte{hdr(blk.TypeIn, 0)}, nil); u.Len != 0 {
		t.Fatalf("request without status: used len %d", u.Len)
	}
	if onDisk, _ := os.ReadFile(path); !bytes.Equal(onDisk, disk) {
		t.Fatal("a rejected request changed the image")
	}
	// The device is still healthy.
	u := do(t, q, [][]byte{hdr(blk.TypeIn, 0)}, []int{512, 1})
	if status(t, u) != blk.StatusOK || !bytes.Equal(u.Data[:512], disk[:512]) {
		t.Fatal("valid request after bad ones failed")
	}
	if d.Status()&virtio.StatusDeviceNeedsReset != 0 {
		t.Fatal("bad requests marked the device broken")
	}
	if st := dev.Stats(); st.Failed != 20 {
		t.Fatalf("stats %+v, want 20 failed", st)
	}
}

func TestDiscardAndWriteZeroes(t *testing.T) {
	path, disk := image(t, 256<<10)
	_, d := start(t, blk.Config{Path: path}, virtiotest.Options{})
	q := d.Queues[0]
	for _, tc := range []struct {
		typ   blk.RequestType
		flags uint32
		at    uint64
	}{
		{blk.TypeDiscard, 0, 16},
		{blk.TypeWriteZeroes, 0, 64},
		{blk.TypeWriteZeroes, blk.WriteZeroesFlagUnmap, 128},
	} {
		u := do(t, q, [][]byte{hdr(tc.typ, 0), segment(tc.at, 16, tc.flags), segment(tc.at+32, 8, tc.flags)}, []int{1})
		if status(t, u) != blk.StatusOK {
			t.Fatalf("%v: status %d", tc.typ, status(t, u))
		}
		for i := tc.at * 512; i < (tc.at+16)*512; i++ {
			disk[i] = 0
		}
		for i := (tc.at + 32) * 512; i < (tc.at+40)*512; i++ {
			disk[i] = 0
		}
	}
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, disk) {
		t.Fatal("image after DISCARD/WRITE_ZEROES differs from the expected zeroed ranges")
	}
}

func TestReadOnly(t *testing.T) {
	path, disk := image(t, 64<<10)
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	_, d := start(t, blk.Config{Path: path, ReadOnly: true}, virtiotest.Options{})
	if d.Features&blk.FeatureRO == 0 || d.Features&blk.FeatureDiscard != 0 {
		t.Fatalf("read-only features %#x", d.Features)
	}
	q := d.Queues[0]
	if s := status(t, do(t, q, [][]byte{hdr(blk.TypeOut, 0), make([]byte, 512)}, []int{1})); s != blk.StatusIOErr {
		t.Fatalf("OUT on a read-only disk: status %d", s)
	}
	if s := status(t, do(t, q, [][]byte{hdr(blk.TypeDiscard, 0), segment(0, 8, 0)}, []int{1})); s != blk.StatusUnsupp {
		t.Fatalf("DISCARD on a read-only disk: status %d", s)
	}
	if s := status(t, do(t, q, [][]byte{hdr(blk.TypeFlush, 0)}, []int{1})); s != blk.StatusOK {
		t.Fatalf("FLUSH on a read-only disk: status %d", s)
	}
	u := do(t, q, [][]byte{hdr(blk.TypeIn, 2)}, []int{512, 1})
	if !bytes.Equal(u.Data[:512], disk[1024:1536]) {
		t.Fatal("read-only IN returned the wrong bytes")
	}
	// A second read-only user may share the image.
	other, err := blk.New(blk.Config{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatalf("second read-only open: %v", err)
	}
	other.Close()
}

func TestImageLock(t *testing.T) {
	path, _ := image(t, 4096)
	first, err := blk.New(blk.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blk.New(blk.Config{Path: path}); err == nil {
		t.Fatal("two read-write devices opened one image")
	}
	if _, err := blk.New(blk.Config{Path: path, ReadOnly: true}); err == nil {
		t.Fatal("a read-only device opened an image that is open read-write")
	}
	first.Close()
	second, err := blk.New(blk.Config{Path: path})
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	second.Close()
	if _, err := blk.New(blk.Config{Path: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("missing image accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := blk.New(blk.Config{Path: empty}); err == nil {
		t.Fatal("empty image accepted")
	}
}

// TestManyInFlight keeps the queue full of random reads of random sizes and checks every
// byte; the ring indices wrap around several times.
func TestManyInFlight(t *testing.T) {
	path, disk := image(t, 4<<20)
	_, d := start(t, blk.Config{Path: path}, virtiotest.Options{QueueSizes: []uint16{64}})
	q := d.Queues[0]
	r := rand.New(rand.NewPCG(3, 4))
	want := map[uint16][]uint64{} // per head, FIFO: a head is reused once harvested
	const total = 70000           // > 65536: used.idx and avail.idx wrap
	sent, done := 0, 0
	for done < total {
		for sent < total && q.Outstanding() < 20 {
			sectors := uint64(1 + r.IntN(8))
			sector := r.Uint64N(uint64(len(disk))/512 - sectors)
			head, err := q.Add([][]byte{hdr(blk.TypeIn, sector)}, []int{int(sectors) * 512, 1})
			if err != nil {
				t.Fatal(err)
			}
			want[head] = append(want[head], sector<<8|sectors)
			sent++
		}
		q.Kick()
		u, err := q.WaitUsed(wait)
		if err != nil {
			t.Fatalf("after %d completions: %v", done, err)
		}
		if len(want[u.Head]) == 0 {
			t.Fatalf("completion for head %d that is not in flight", u.Head)
		}
		w := want[u.Head][0]
		want[u.Head] = want[u.Head][1:]
		sector, sectors := w>>8, w&0xff
		if status(t, u) != blk.StatusOK || !bytes.Equal(u.Data[:sectors*512], disk[sector*512:(sector+sectors)*512]) {
			t.Fatalf("read %d sectors at %d: wrong data", sectors, sector)
		}
		done++
	}
}

// TestHostileRing: malformed chains fail one request; a broken ring sets
// DEVICE_NEEDS_RESET; after a reset the device works again.
func TestHostileRing(t *testing.T) {
	path, disk := image(t, 64<<10)
	dev, d := start(t, blk.Config{Path: path}, virtiotest.Options{QueueSizes: []uint16{16}})
	q := d.Queues[0]
	mem := d.Driver.Mem()
	hdrGPA, _ := d.Driver.Alloc(16, 8)
	mem.WriteAt(hdr(blk.TypeIn, 0), int64(hdrGPA))
	dataGPA, _ := d.Driver.Alloc(513, 8)
	// Use high descriptor indices so they never collide with Add's (which start at 0).
	for _, tc := range []struct {
		name  string
		descs [][4]uint64 // addr, len, flags, next
	}{
		{"buffer outside RAM", [][4]uint64{{hdrGPA, 16, 1, 15}, {1 << 40, 513, 2, 0}}},
		{"length overflows", [][4]uint64{{hdrGPA, 16, 1, 15}, {dataGPA, 0xffffffff, 2, 0}}},
		{"loop", [][4]uint64{{hdrGPA, 16, 1, 15}, {dataGPA, 513, 3, 14}}},
		{"next out of range", [][4]uint64{{hdrGPA, 16, 1, 99}, {dataGPA, 513, 2, 0}}},
		{"readable after writable", [][4]uint64{{dataGPA, 513, 3, 15}, {hdrGPA, 16, 0, 0}}},
		{"indirect with next", [][4]uint64{{dataGPA, 32, 5, 15}, {hdrGPA, 16, 0, 0}}},
		{"indirect bad length", [][4]uint64{{dataGPA, 24, 4, 0}, {0, 0, 0, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q.RawDesc(14, tc.descs[0][0], uint32(tc.descs[0][1]), uint16(tc.descs[0][2]), uint16(tc.descs[0][3]))
			q.RawDesc(15, tc.descs[1][0], uint32(tc.descs[1][1]), uint16(tc.descs[1][2]), uint16(tc.descs[1][3]))
			before := dev.Stats().BadChains
			q.PublishRaw(14)
			q.Notify()
			u, err := q.WaitUsed(wait)
			if err != nil {
				t.Fatal(err)
			}
			if u.Head != 14 || u.Len != 0 {
				t.Fatalf("malformed chain returned as %+v, want head 14 len 0", u)
			}
			if dev.Stats().BadChains != before+1 {
				t.Fatal("bad chain not counted")
			}
			// The next well-formed request still works.
			u = do(t, q, [][]byte{hdr(blk.TypeIn, 1)}, []int{512, 1})
			if status(t, u) != blk.StatusOK || !bytes.Equal(u.Data[:512], disk[512:1024]) {
				t.Fatal("device unhealthy after a malformed chain")
			}
		})
	}
	if d.Status()&virtio.StatusDeviceNeedsReset != 0 {
		t.Fatal("malformed chains set DEVICE_NEEDS_RESET")
	}

	// A head index beyond the queue cannot even be returned: the ring is broken.
	irqs := d.IRQ.Count()
	q.PublishRaw(200)
	q.Notify()
	waitFor(t, func() bool { return d.Status()&virtio.StatusDeviceNeedsReset != 0 })
	if d.IRQ.Count() == irqs || d.AckInterrupts()&virtio.InterruptConfigChange == 0 {
		t.Fatal("DEVICE_NEEDS_RESET without a configuration-change interrupt")
	}
	// The device ignores the queue now.
	if _, err := q.Submit([][]byte{hdr(blk.TypeIn, 0)}, []int{512, 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.WaitUsed(50 * time.Millisecond); err == nil {
		t.Fatal("a broken device kept processing its queue")
	}
	d.Close()

	// Avail index running ahead of the ring, on a fresh device.
	dev2, d2 := start(t, blk.Config{Path: path}, virtiotest.Options{QueueSizes: []uint16{16}})
	d2.Queues[0].SetAvailIdx(17)
	d2.Queues[0].Notify()
	waitFor(t, func() bool { return d2.Status()&virtio.StatusDeviceNeedsReset != 0 })
	if dev2.Stats().NeedsResetSet != 1 {
		t.Fatalf("stats %+v", dev2.Stats())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestResetAndLeaks: a driver reset stops the I/O goroutine; the device comes back on new
// rings; a second activation without a reset is refused; after Close, goroutines and file
// descriptors are back at their baseline. The baseline may still count a goroutine an earlier
// test is ending, so the checks are "no more than before", never "exactly as before".
func TestResetAndLeaks(t *testing.T) {
	path, disk := image(t, 64<<10)
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	dev, err := blk.New(blk.Config{Path: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	d, err := virtiotest.Start(dev, virtiotest.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	do(t, d.Queues[0], [][]byte{hdr(blk.TypeIn, 0)}, []int{512, 1})
	if err := dev.Activate(virtio.ActivateArgs{}); err == nil {
		t.Fatal("second Activate without a reset accepted")
	}
	d.SetReg(mmio.RegStatus, 0)
	if d.Transport.Active() || runtime.NumGoroutine() > goroutines {
		t.Fatalf("after reset: active %v, %d goroutines (baseline %d)", d.Transport.Active(), runtime.NumGoroutine(), goroutines)
	}
	// Broken, then reset and reinitialised: works again.
	if err := d.Reinit(virtiotest.Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	d.Queues[0].SetAvailIdx(1000)
	d.Queues[0].Notify()
	waitFor(t, func() bool { return d.Status()&virtio.StatusDeviceNeedsReset != 0 })
	if err := d.Reinit(virtiotest.Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	u := do(t, d.Queues[0], [][]byte{hdr(blk.TypeIn, 3)}, []int{512, 1})
	if status(t, u) != blk.StatusOK || !bytes.Equal(u.Data[:512], disk[3*512:4*512]) {
		t.Fatal("IN after reinitialisation failed")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Activate(virtio.ActivateArgs{}); err == nil {
		t.Fatal("Activate after Close accepted")
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Fatalf("%d goroutines after Close, %d before", n, goroutines)
	}
	if n := openFDs(t); n > fds {
		t.Fatalf("%d open fds after Close, %d before", n, fds)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNotifyNeverBlocks(t *testing.T) {
	path, _ := image(t, 64<<10)
	dev, d := start(t, blk.Config{Path: path}, virtiotest.Options{})
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100000; i++ {
			dev.Notify(0)
			d.Transport.Notify(0)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Notify blocked")
	}
	dev.Notify(5) // unknown queue: ignored
	do(t, d.Queues[0], [][]byte{hdr(blk.TypeFlush, 0)}, []int{1})
}
