package vsock

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/virtiotest"
)

// startRaw brings the device up through mmio with no guest stack: the test posts every
// buffer itself.
func startRaw(t *testing.T) (*Device, *virtiotest.Device) {
	t.Helper()
	vs, err := New(Config{UDSPath: filepath.Join(t.TempDir(), "v.sock"), Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := virtiotest.Start(vs, virtiotest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return vs, dev
}

func strayRW() []byte {
	return append(encodeHdr(Hdr{SrcCID: 3, DstCID: 2, SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpRW, Len: 3}), "abc"...)
}

func TestRXBufferLayouts(t *testing.T) {
	_, dev := startRaw(t)
	rxq, txq := dev.Queues[QueueRX], dev.Queues[QueueTX]
	txq.SetDiscardUsed(true)
	// A buffer too small for a header is given back empty; the reply goes into the next
	// one, whatever its layout.
	for _, lens := range [][]int{{10}, {20, 24}, {1, 1, 42, 100}, {HdrSize}} {
		if _, err := rxq.Add(nil, lens); err != nil {
			t.Fatal(err)
		}
	}
	rxq.Kick()
	for range 3 {
		if _, err := txq.Submit([][]byte{strayRW()}, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		n  uint32
		op Op
	}{{0, 0}, {HdrSize, OpRST}, {HdrSize, OpRST}, {HdrSize, OpRST}}
	for i, w := range want {
		u, err := rxq.WaitUsed(waitTimeout)
		if err != nil {
			t.Fatalf("used %d: %v", i, err)
		}
		if u.Len != w.n {
			t.Fatalf("used %d: len %d, want %d", i, u.Len, w.n)
		}
		if w.n > 0 {
			var h Hdr
			h.Decode(u.Data)
			if h.Op != w.op || h.SrcPort != 2 || h.DstPort != 1 || h.SrcCID != HostCID || h.DstCID != DefaultGuestCID {
				t.Fatalf("used %d: %v", i, &h)
			}
		}
	}
	if s := dev.Status(); s&virtio.StatusDeviceNeedsReset != 0 {
		t.Fatalf("status %#x", uint32(s))
	}
}

func TestTXChainOddities(t *testing.T) {
	vs, dev := startRaw(t)
	rxq, txq := dev.Queues[QueueRX], dev.Queues[QueueTX]
	// A TX chain with no readable bytes, and one with a writable buffer after the packet:
	// the first is dropped (malformed), the second handled normally.
	if _, err := txq.Submit(nil, []int{64}); err != nil {
		t.Fatal(err)
	}
	if _, err := txq.Submit([][]byte{strayRW()}, []int{64}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		u, err := txq.WaitUsed(waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if u.Len != 0 {
			t.Fatalf("TX chain returned with len %d", u.Len)
		}
	}
	if _, err := rxq.Submit(nil, []int{HdrSize + 4096}); err != nil {
		t.Fatal(err)
	}
	u, err := rxq.WaitUsed(waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var h Hdr
	h.Decode(u.Data)
	if h.Op != OpRST {
		t.Fatalf("reply %v", &h)
	}
	if got := vs.Stats().Malformed; got != 1 {
		t.Fatalf("malformed %d, want 1", got)
	}
}

func TestBrokenRingNeedsReset(t *testing.T) {
	_, dev := startRaw(t)
	txq := dev.Queues[QueueTX]
	// avail.idx jumps 1000 entries ahead of a 256-entry ring.
	txq.SetAvailIdx(1000)
	txq.Notify()
	deadline := time.Now().Add(waitTimeout)
	for dev.Status()&virtio.StatusDeviceNeedsReset == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("status %#x: no DEVICE_NEEDS_RESET", uint32(dev.Status()))
		}
		time.Sleep(time.Millisecond)
	}
	// A bad head index on a good ring is only counted.
	vs2, dev2 := startRaw(t)
	dev2.Queues[QueueRX].PublishRaw(999)
	dev2.Queues[QueueTX].Submit([][]byte{strayRW()}, nil)
	if _, err := dev2.Queues[QueueRX].Submit(nil, []int{HdrSize}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(waitTimeout)
	for vs2.Stats().BadChains == 0 {
		if time.Now().After(deadline) {
			t.Fatal("bad head not counted")
		}
		time.Sleep(time.Millisecond)
	}
	if s := dev2.Status(); s&virtio.StatusDeviceNeedsReset != 0 {
		t.Fatalf("status %#x after one bad chain", uint32(s))
	}
}
