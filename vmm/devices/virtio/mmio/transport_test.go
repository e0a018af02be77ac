package mmio_test

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/mmio"
	"github.com/vmbench/runner/vmm/guestmem"
)

func newMem(t testing.TB) *guestmem.Memory {
	t.Helper()
	mem, err := guestmem.New(1<<20, guestmem.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return mem
}

const (
	v1       = virtio.FeatureVersion1
	eventIdx = virtio.FeatureRingEventIdx
)

func TestCmdlineArg(t *testing.T) {
	if got, want := mmio.CmdlineArg(0xc0001000, 5), "virtio_mmio.device=4K@0xc0001000:5"; got != want {
		t.Fatalf("CmdlineArg = %q, want %q", got, want)
	}
	if mmio.Size != 0x1000 || mmio.QueueNotifyOffset != 0x50 || mmio.RegQueueNotify != mmio.QueueNotifyOffset {
		t.Fatal("window constants changed")
	}
}

func TestIdentity(t *testing.T) {
	b := newBench(newMem(t), newRecorder())
	for _, tc := range []struct {
		reg  mmio.Reg
		want uint32
	}{
		{mmio.RegMagicValue, 0x74726976},
		{mmio.RegVersion, 2},
		{mmio.RegDeviceID, uint32(virtio.DeviceBlock)},
		{mmio.RegVendorID, mmio.VendorID},
		{mmio.RegStatus, 0},
		{mmio.RegInterruptStatus, 0},
		{mmio.RegConfigGeneration, 0},
		{mmio.RegSHMLenLow, 0xffffffff}, // no shared memory region
		{mmio.RegSHMLenHigh, 0xffffffff},
	} {
		if got := b.read(tc.reg); got != tc.want {
			t.Errorf("%v = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
	if b.t.NumQueues() != 2 {
		t.Errorf("NumQueues = %d", b.t.NumQueues())
	}
	if mmio.RegQueueNotify.String() != "QueueNotify" || mmio.Reg(0x104).String() != "Config+0x4" || mmio.Reg(0x48).String() != "Reg(0x48)" {
		t.Error("Reg.String")
	}
}

func TestFeatureWindows(t *testing.T) {
	b := newBench(newMem(t), newRecorder())
	offered := b.dev.features &^ virtio.FeatureRingPacked // the transport hides the packed ring
	b.write(mmio.RegDeviceFeaturesSel, 0)
	lo := b.read(mmio.RegDeviceFeatures)
	b.write(mmio.RegDeviceFeaturesSel, 1)
	hi := b.read(mmio.RegDeviceFeatures)
	b.write(mmio.RegDeviceFeaturesSel, 2)
	beyond := b.read(mmio.RegDeviceFeatures)
	if got := uint64(hi)<<32 | uint64(lo); got != offered || beyond != 0 {
		t.Fatalf("offered %#x (word 2: %#x), want %#x", got, beyond, offered)
	}
}

func TestStatusMachine(t *testing.T) {
	const (
		ack = virtio.StatusAcknowledge
		drv = virtio.StatusDriver
		fok = virtio.StatusFeaturesOK
		dok = virtio.StatusDriverOK
	)
	for _, tc := range []struct {
		name   string
		writes []virtio.Status
		want   virtio.Status
	}{
		{"legal sequence", []virtio.Status{ack, ack | drv}, ack | drv},
		{"DRIVER before ACKNOWLEDGE", []virtio.Status{drv}, 0},
		{"two bits at once", []virtio.Status{ack | drv}, 0},
		{"FEATURES_OK before DRIVER", []virtio.Status{ack, ack | fok}, ack},
		{"DRIVER_OK before FEATURES_OK", []virtio.Status{ack, ack | drv, ack | drv | dok}, ack | drv},
		{"clearing a bit", []virtio.Status{ack, ack | drv, ack}, ack | drv},
		{"rewriting the same value", []virtio.Status{ack, ack, ack}, ack},
		{"FAILED", []virtio.Status{ack, ack | drv, virtio.StatusFailed}, ack | drv | virtio.StatusFailed},
		{"nothing after FAILED", []virtio.Status{ack, virtio.StatusFailed, ack | drv | virtio.StatusFailed, ack | drv}, ack | virtio.StatusFailed},
		{"driver cannot set NEEDS_RESET", []virtio.Status{ack, ack | virtio.StatusDeviceNeedsReset}, ack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(newMem(t), newRecorder())
			for _, s := range tc.writes {
				b.write(mmio.RegStatus, uint32(s))
			}
			if got := b.status(); got != tc.want {
				t.Fatalf("status %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestFeaturesOK(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		word2    uint32 // written to DriverFeatures with DriverFeaturesSel = 2
		ok       bool
	}{
		{"VERSION_1 only", v1, 0, true},
		{"all offered", v1 | eventIdx | virtio.FeatureRingIndirectDesc | 1<<3, 0, true},
		{"without VERSION_1", eventIdx, 0, false},
		{"not offered", v1 | 1<<4, 0, false},
		{"packed ring hidden by the transport", v1 | virtio.FeatureRingPacked, 0, false},
		{"bit beyond 63", v1, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(newMem(t), newRecorder())
			b.write(mmio.RegStatus, uint32(virtio.StatusAcknowledge))
			b.write(mmio.RegStatus, uint32(virtio.StatusAcknowledge|virtio.StatusDriver))
			b.write(mmio.RegDriverFeaturesSel, 2)
			b.write(mmio.RegDriverFeatures, tc.word2)
			b.write(mmio.RegDriverFeaturesSel, 0)
			b.write(mmio.RegDriverFeatures, uint32(tc.features))
			b.write(mmio.RegDriverFeaturesSel, 1)
			b.write(mmio.RegDriverFeatures, uint32(tc.features>>32))
			b.write(mmio.RegStatus, uint32(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK))
			if got := b.status()&virtio.StatusFeaturesOK != 0; got != tc.ok {
				t.Fatalf("FEATURES_OK set = %v, want %v", got, tc.ok)
			}
		})
	}
	// DriverFeatures is writable only during negotiation.
	b := newBench(newMem(t), newRecorder())
	b.negotiate(v1)
	ignored := b.t.Ignored()
	b.write(mmio.RegDriverFeatures, uint32(eventIdx))
	if b.t.Ignored() != ignored+1 {
		t.Fatal("DriverFeatures write after FEATURES_OK not rejected")
	}
	b.queue(0, 16, 0x1000, 0x2000, 0x3000)
	b.write(mmio.RegStatus, uint32(driverOK))
	if _, _, _, args, _ := b.dev.state(); args.Features != v1 {
		t.Fatalf("activated with features %#x, want %#x", args.Features, v1)
	}
}

func TestActivate(t *testing.T) {
	b := newBench(newMem(t), newRecorder())
	b.negotiate(v1 | eventIdx)
	b.queue(0, 256, 0x10000, 0x20000, 0x30000)
	b.write(mmio.RegQueueSel, 0)
	if b.read(mmio.RegQueueReady) != 1 || b.read(mmio.RegQueueNumMax) != 256 {
		t.Fatal("queue 0 not ready")
	}
	b.write(mmio.RegQueueSel, 1)
	if b.read(mmio.RegQueueNumMax) != 64 || b.read(mmio.RegQueueReady) != 0 {
		t.Fatal("queue 1 registers")
	}
	b.write(mmio.RegQueueSel, 7)
	if b.read(mmio.RegQueueNumMax) != 0 {
		t.Fatal("QueueNumMax of a missing queue is not 0")
	}
	b.write(mmio.RegQueueNum, 4) // ignored: no such queue
	b.t.Notify(0)                // before DRIVER_OK: dropped
	b.write(mmio.RegStatus, uint32(driverOK))
	active, activates, _, args, violation := b.dev.state()
	if violation != nil {
		t.Fatal(violation)
	}
	if !active || activates != 1 || !b.t.Active() {
		t.Fatalf("device not activated: status %#x", b.status())
	}
	cfg := args.Queues[0].Config()
	if cfg.Size != 256 || cfg.DescTable != 0x10000 || cfg.AvailRing != 0x20000 || cfg.UsedRing != 0x30000 ||
		!cfg.EventIdx || cfg.Indirect || args.Queues[1] != nil || args.Mem != b.mem {
		t.Fatalf("activation args %+v, queue 0 %+v", args, cfg)
	}
	if b.dev.notifies[0].Load() != 0 {
		t.Fatal("a notification before DRIVER_OK reached the device")
	}
	// Queue registers are frozen after DRIVER_OK.
	ignored := b.t.Ignored()
	b.write(mmio.RegQueueSel, 0)
	b.write(mmio.RegQueueNum, 8)
	b.write(mmio.RegQueueReady, 0)
	if b.t.Ignored() != ignored+2 || b.read(mmio.RegQueueReady) != 1 {
		t.Fatal("queue registers writable after DRIVER_OK")
	}
	// Notifications, through the register and the ioeventfd path.
	b.write(mmio.RegQueueNotify, 0)
	b.t.Notify(1)
	b.t.Notify(2)  // no such queue
	b.t.Notify(-1) // no such queue
	b.write(mmio.RegQueueNotify, 9)
	if b.dev.notifies[0].Load() != 1 || b.dev.notifies[1].Load() != 1 || b.dev.notifies[2].Load() != 0 {
		t.Fatal("notifications not delivered exactly")
	}
	// Interrupts.
	intr := args.Interrupt
	if err := intr.Signal(virtio.InterruptUsedBuffer); err != nil {
		t.Fatal(err)
	}
	if b.irq.n.Load() != 1 || b.read(mmio.RegInterruptStatus) != virtio.InterruptUsedBuffer {
		t.Fatal("Signal did not set InterruptStatus and trigger the line")
	}
	b.write(mmio.RegInterruptACK, virtio.InterruptUsedBuffer)
	if b.read(mmio.RegInterruptStatus) != 0 {
		t.Fatal("InterruptACK did not clear the bit")
	}
	intr.NeedsReset(errors.New("test"))
	intr.NeedsReset(errors.New("again")) // once is enough
	if b.status() != driverOK|virtio.StatusDeviceNeedsReset || b.read(mmio.RegInterruptStatus) != virtio.InterruptConfigChange || b.irq.n.Load() != 2 {
		t.Fatalf("NeedsReset: status %#x, interrupt status %#x, %d triggers", b.status(), b.read(mmio.RegInterruptStatus), b.irq.n.Load())
	}
	b.t.Notify(0) // a broken device gets no more kicks
	if b.dev.notifies[0].Load() != 1 {
		t.Fatal("notification delivered to a device that needs reset")
	}
	// Reset clears everything, and the device can be brought up again.
	b.write(mmio.RegStatus, 0)
	active, _, resets, _, _ := b.dev.state()
	if active || resets == 0 || b.status() != 0 || b.read(mmio.RegInterruptStatus) != 0 || b.t.Active() {
		t.Fatalf("after reset: active %v status %#x", active, b.status())
	}
	b.write(mmio.RegQueueSel, 0)
	if b.read(mmio.RegQueueReady) != 0 {
		t.Fatal("QueueReady survived the reset")
	}
	ignored = b.t.Ignored()
	b.write(mmio.RegQueueReady, 0) // Linux's vm_del_vq after a reset: a harmless no-op
	if b.t.Ignored() != ignored {
		t.Fatal("QueueReady = 0 on a queue that is not ready counted as a bad access")
	}
	b.negotiate(v1)
	b.queue(1, 64, 0x40000, 0x41000, 0x42000)
	b.write(mmio.RegStatus, uint32(driverOK))
	if _, activates, _, args, violation := b.dev.state(); activates != 2 || violation != nil || args.Queues[0] != nil || args.Queues[1] == nil {
		t.Fatalf("second activation: %d activations, violation %v", activates, violation)
	}
}

func TestActivateRejectsBadQueues(t *testing.T) {
	for _, tc := range []struct {
		name              string
		size              uint32
		desc, avail, used uint64
	}{
		{"size above maximum", 512, 0x10000, 0x20000, 0x30000},
		{"size not a power of two", 100, 0x10000, 0x20000, 0x30000},
		{"size zero", 0, 0x10000, 0x20000, 0x30000},
		{"size above 16 bits", 1 << 16, 0x10000, 0x20000, 0x30000},
		{"descriptor table misaligned", 16, 0x10008, 0x20000, 0x30000},
		{"used ring beyond RAM", 16, 0x10000, 0x20000, 1 << 20},
		{"avail ring above 4 GiB", 16, 0x10000, 1 << 40, 0x30000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(newMem(t), newRecorder())
			b.negotiate(v1)
			b.queue(0, tc.size, tc.desc, tc.avail, tc.used)
			b.write(mmio.RegStatus, uint32(driverOK))
			if b.status()&virtio.StatusDeviceNeedsReset == 0 || b.t.Active() {
				t.Fatalf("bad queue accepted: status %#x", b.status())
			}
			if _, activates, _, _, _ := b.dev.state(); activates != 0 {
				t.Fatal("device activated with a bad queue")
			}
			if b.read(mmio.RegInterruptStatus)&virtio.InterruptConfigChange == 0 || b.irq.n.Load() != 1 {
				t.Fatal("no configuration-change interrupt")
			}
		})
	}
	// The device refusing activation is treated the same way.
	dev := newRecorder()
	dev.activateErr = errors.New("no")
	b := newBench(newMem(t), dev)
	b.negotiate(v1)
	b.queue(0, 16, 0x10000, 0x20000, 0x30000)
	b.write(mmio.RegStatus, uint32(driverOK))
	if b.status()&virtio.StatusDeviceNeedsReset == 0 || b.t.Active() {
		t.Fatal("failed Activate did not set DEVICE_NEEDS_RESET")
	}
}

func TestQueueRegistersGuarded(t *testing.T) {
	b := newBench(newMem(t), newRecorder())
	// Before FEATURES_OK the queue registers are not writable.
	b.write(mmio.RegQueueSel, 0)
	b.write(mmio.RegQueueReady, 1)
	if b.read(mmio.RegQueueReady) != 0 {
		t.Fatal("QueueReady writable before FEATURES_OK")
	}
	b.negotiate(v1)
	b.queue(0, 16, 0x10000, 0x20000, 0x30000)
	// While ready, the geometry is frozen.
	b.write(mmio.RegQueueDescLow, 0x50000)
	b.write(mmio.RegQueueReady, 0)
	b.write(mmio.RegQueueDescLow, 0x60000) // allowed again once not ready
	b.write(mmio.RegQueueReady, 1)
	b.write(mmio.RegStatus, uint32(driverOK))
	if _, _, _, args, _ := b.dev.state(); args.Queues[0] == nil || args.Queues[0].Config().DescTable != 0x60000 {
		t.Fatalf("queue geometry %+v", args.Queues[0])
	}
}

func TestBadAccesses(t *testing.T) {
	b := newBench(newMem(t), newRecorder())
	ignored := b.t.Ignored()
	for _, tc := range []struct {
		off   uint64
		width int
	}{
		{0x000, 1}, {0x000, 2}, {0x000, 8}, {0x002, 4}, {0x070, 2},
		{0x048, 4},             // unknown register
		{0x050, 4},             // QueueNotify is write-only
		{0x0c0, 4},             // QueueReset: VIRTIO_F_RING_RESET not offered
		{0x100, 3}, {0xffe, 4}, // config space: odd width, beyond the window
	} {
		data := []byte{1, 2, 3, 4, 5, 6, 7, 8}[:tc.width]
		b.t.Read(tc.off, data)
		for _, x := range data {
			if x != 0 {
				t.Fatalf("ignored read at %#x width %d returned %x", tc.off, tc.width, data)
			}
		}
	}
	reads := b.t.Ignored() - ignored
	for _, tc := range []struct {
		off   uint64
		width int
	}{
		{0x070, 1}, {0x070, 2}, {0x070, 8}, {0x071, 4}, // Status, wrong width / alignment
		{0x000, 4}, {0x034, 4}, {0x060, 4}, {0x0fc, 4}, // read-only registers
		{0x048, 4}, {0x0c0, 4}, // unknown
		{0x0ff, 2},
	} {
		b.t.Write(tc.off, []byte{1, 0, 0, 0, 0, 0, 0, 0}[:tc.width])
	}
	if reads != 10 || b.t.Ignored()-ignored != 21 {
		t.Fatalf("ignored %d reads and %d accesses in all, want 10 and 21", reads, b.t.Ignored()-ignored)
	}
	if b.status() != 0 {
		t.Fatal("a rejected write changed the status")
	}
}

func TestConfigSpace(t *testing.T) {
	b := newBench(newMem(t), newRecorder())
	b.t.Write(mmio.ConfigOffset+2, []byte{0xaa, 0xbb})
	b.t.Write(mmio.ConfigOffset+8, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	var w4 [4]byte
	b.t.Read(mmio.ConfigOffset, w4[:])
	var w8 [8]byte
	b.t.Read(mmio.ConfigOffset+8, w8[:])
	if binary.LittleEndian.Uint32(w4[:]) != 0xbbaa0000 || binary.LittleEndian.Uint64(w8[:]) != 0x0807060504030201 {
		t.Fatalf("config reads %x %x", w4, w8)
	}
	var w1 [1]byte
	b.t.Read(mmio.Size-1, w1[:]) // last byte of the window: the device pads with zero
	if w1[0] != 0 {
		t.Fatal("config beyond the device's struct not zero")
	}
}

func TestClose(t *testing.T) {
	dev := newRecorder()
	b := newBench(newMem(t), dev)
	b.negotiate(v1)
	b.queue(0, 16, 0x10000, 0x20000, 0x30000)
	b.write(mmio.RegStatus, uint32(driverOK))
	if err := b.t.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.t.Close(); err != nil {
		t.Fatal(err)
	}
	if dev.closes != 1 || b.t.Active() {
		t.Fatalf("device closed %d times", dev.closes)
	}
	resets := dev.resets
	b.write(mmio.RegStatus, 0)
	b.t.Notify(0)
	if dev.resets != resets || dev.notifies[0].Load() != 0 {
		t.Fatal("closed transport still drives the device")
	}
}

func TestNilIRQ(t *testing.T) {
	dev := newRecorder()
	tr := mmio.New(dev, newMem(t), nil, nil)
	b := &bench{t: tr, dev: dev, irq: &countingIRQ{}}
	b.negotiate(v1)
	b.queue(0, 16, 0x10000, 0x20000, 0x30000)
	b.write(mmio.RegStatus, uint32(driverOK))
	if err := dev.args.Interrupt.Signal(virtio.InterruptUsedBuffer); err != nil {
		t.Fatal(err)
	}
	if b.read(mmio.RegInterruptStatus) != 1 || tr.Interrupts() != 1 {
		t.Fatal("Signal without an IRQ line not recorded")
	}
}

// TestConcurrentAccess hammers the registers from several "vCPUs" while a "device
// goroutine" signals; run with -race.
func TestConcurrentAccess(t *testing.T) {
	b := newBench(newMem(t), newRecorder())
	b.negotiate(v1 | eventIdx)
	b.queue(0, 16, 0x10000, 0x20000, 0x30000)
	b.write(mmio.RegStatus, uint32(driverOK))
	_, _, _, args, _ := b.dev.state()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				switch g {
				case 0:
					args.Interrupt.Signal(virtio.InterruptUsedBuffer)
				case 1:
					b.read(mmio.RegInterruptStatus)
					b.write(mmio.RegInterruptACK, 1)
				case 2:
					b.t.Notify(0)
					b.write(mmio.RegQueueNotify, 0)
				case 3:
					b.read(mmio.RegStatus)
					b.write(mmio.RegDeviceFeaturesSel, uint32(i&1))
					b.read(mmio.RegDeviceFeatures)
				}
			}
		}()
	}
	wg.Wait()
	if b.irq.n.Load() != 2000 || b.dev.notifies[0].Load() != 4000 {
		t.Fatalf("%d triggers, %d notifications", b.irq.n.Load(), b.dev.notifies[0].Load())
	}
}
