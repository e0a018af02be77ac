package virtiotest_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/virtiotest"
	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

func TestDriverAgainstVirtq(t *testing.T) {
	d := virtiotest.NewDriver(nil)
	defer d.Close()
	for _, indirect := range []bool{false, true} {
		dq := d.AddQueue(8, false)
		cfg := dq.Config()
		cfg.Indirect = indirect
		q, err := virtq.New(d.Mem(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		add := dq.Add
		if indirect {
			add = dq.AddIndirect
		}
		head, err := add([][]byte{[]byte("hello, "), []byte("world")}, []int{3, 9})
		if err != nil {
			t.Fatal(err)
		}
		if !dq.Kick() {
			t.Fatal("Kick: device did not suppress notifications, want a notification")
		}
		c, err := q.Pop()
		if err != nil || c == nil {
			t.Fatalf("Pop = %v, %v", c, err)
		}
		if c.Head != head || c.ReadableLen() != 12 || c.WritableLen() != 12 {
			t.Fatalf("chain head %d readable %d writable %d", c.Head, c.ReadableLen(), c.WritableLen())
		}
		buf := make([]byte, 12)
		if _, err := c.ReadAt(buf, 0); err != nil || string(buf) != "hello, world" {
			t.Fatalf("ReadAt = %q, %v", buf, err)
		}
		if _, err := c.WriteAt([]byte("HELLO, WORLD"), 0); err != nil {
			t.Fatal(err)
		}
		if err := q.Push(c.Head, 10); err != nil {
			t.Fatal(err)
		}
		u, err := dq.WaitUsed(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if u.Head != head || u.Len != 10 || string(u.Data) != "HELLO, WOR" {
			t.Fatalf("used %+v (%q)", u, u.Data)
		}
		if dq.Outstanding() != 0 {
			t.Fatalf("Outstanding = %d after completion", dq.Outstanding())
		}
	}
}

func TestDriverQueueFullAndReuse(t *testing.T) {
	d := virtiotest.NewDriver(nil)
	defer d.Close()
	dq := d.AddQueue(4, false)
	q, err := virtq.New(d.Mem(), dq.Config())
	if err != nil {
		t.Fatal(err)
	}
	before := d.InUse()
	for round := 0; round < 100; round++ { // wraps the 16-bit indices' low bits many times
		for i := 0; i < 2; i++ {
			if _, err := dq.Add([][]byte{{byte(round)}}, []int{1}); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if _, err := dq.Add([][]byte{{1}}, nil); !errors.Is(err, virtiotest.ErrQueueFull) {
			t.Fatalf("third 2-descriptor chain in a 4-entry ring: err = %v, want ErrQueueFull", err)
		}
		for {
			c, err := q.Pop()
			if err != nil {
				t.Fatal(err)
			}
			if c == nil {
				break
			}
			c.WriteAt(c.Readable[0][:1], 0)
			q.Push(c.Head, 1)
		}
		got := dq.Used()
		if len(got) != 2 || got[0].Data[0] != byte(round) {
			t.Fatalf("round %d: used %+v", round, got)
		}
	}
	if after := d.InUse(); after != before {
		t.Fatalf("guest RAM in use %d after all completions, want %d (leak)", after, before)
	}
	if _, err := dq.WaitUsed(5 * time.Millisecond); !errors.Is(err, virtiotest.ErrTimeout) {
		t.Fatalf("WaitUsed on an idle queue: %v, want ErrTimeout", err)
	}
}

// echoDevice copies each chain's readable bytes into its writable buffers on a goroutine.
type echoDevice struct {
	mu      sync.Mutex
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	resets  int
	started int
}

func (e *echoDevice) ID() virtio.DeviceID { return virtio.DeviceID(99) }
func (e *echoDevice) Features() uint64 {
	return virtio.FeatureVersion1 | virtio.FeatureRingEventIdx | virtio.FeatureRingIndirectDesc
}
func (e *echoDevice) QueueMaxSizes() []uint16         { return []uint16{16} }
func (e *echoDevice) ReadConfig(off uint64, b []byte) { clear(b) }
func (e *echoDevice) WriteConfig(uint64, []byte)      {}
func (e *echoDevice) Notify(int) {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}
func (e *echoDevice) Activate(a virtio.ActivateArgs) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started++
	e.kick, e.stop, e.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	q, irq, stop, kick, done := a.Queues[0], a.Interrupt, e.stop, e.kick, e.done
	go func() {
		defer close(done)
		for {
			for {
				c, err := q.Pop()
				if err != nil || c == nil {
					break
				}
				b := make([]byte, c.ReadableLen())
				c.ReadAt(b, 0)
				n, _ := c.WriteAt(b, 0)
				q.Push(c.Head, uint32(n))
			}
			if need, _ := q.NeedsInterrupt(); need {
				irq.Signal(virtio.InterruptUsedBuffer)
			}
			if more, _ := q.EnableNotifications(); more {
				continue
			}
			select {
			case <-kick:
			case <-stop:
				return
			}
		}
	}()
	return nil
}
func (e *echoDevice) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resets++
	if e.stop != nil {
		close(e.stop)
		<-e.done
		e.stop = nil
	}
}
func (e *echoDevice) Close() error { e.Reset(); return nil }

func TestStartEcho(t *testing.T) {
	for _, exclude := range []uint64{0, virtio.FeatureRingEventIdx} {
		dev := &echoDevice{}
		d, err := virtiotest.Start(dev, virtiotest.Options{ExcludeFeatures: exclude})
		if err != nil {
			t.Fatal(err)
		}
		if d.Features&exclude != 0 || d.Features&virtio.FeatureVersion1 == 0 {
			t.Fatalf("negotiated %#x excluding %#x", d.Features, exclude)
		}
		q := d.Queues[0]
		for i := 0; i < 200; i++ {
			msg := bytes.Repeat([]byte{byte(i)}, i%37+1)
			if i%2 == 1 {
				if _, err := q.AddIndirect([][]byte{msg}, []int{len(msg)}); err != nil {
					t.Fatal(err)
				}
				q.Kick()
			} else if _, err := q.SubmitWait([][]byte{msg}, []int{len(msg)}, time.Second); err != nil {
				t.Fatal(err)
			}
			u, err := q.WaitUsed(5 * time.Second)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !bytes.Equal(u.Data, msg) {
				t.Fatalf("message %d: echoed %x, want %x", i, u.Data, msg)
			}
		}
		if d.IRQ.Count() == 0 {
			t.Fatal("no interrupts raised")
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if dev.started != 1 || dev.resets < 2 { // reset at start of init and at Close
			t.Fatalf("device started %d times, reset %d times", dev.started, dev.resets)
		}
	}
}
