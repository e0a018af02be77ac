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

// fuzzRegs are the offsets an op's register byte indexes; larger indexes address the
// window directly (index × 4 + low bits), so unknown and misaligned offsets occur too.
var fuzzRegs = []mmio.Reg{
	mmio.RegStatus, mmio.RegDeviceFeaturesSel, mmio.RegDriverFeatures, mmio.RegDriverFeaturesSel,
	mmio.RegQueueSel, mmio.RegQueueNum, mmio.RegQueueReady, mmio.RegQueueNotify,
	mmio.RegInterruptACK, mmio.RegQueueDescLow, mmio.RegQueueDescHigh, mmio.RegQueueDriverLow,
	mmio.RegQueueDriverHigh, mmio.RegQueueDeviceLow, mmio.RegQueueDeviceHigh, mmio.RegSHMSel,
	mmio.RegMagicValue, mmio.RegDeviceFeatures, mmio.RegQueueNumMax, mmio.RegInterruptStatus,
	mmio.RegConfigGeneration, mmio.ConfigOffset, mmio.ConfigOffset + 4,
}

var fuzzWidths = [8]int{4, 4, 4, 1, 2, 8, 3, 4}

var (
	fuzzMemOnce sync.Once
	fuzzMem     *guestmem.Memory
)

// FuzzRegisterWrites runs random sequences of register accesses, kicks and device-side
// interrupts against a transport. Each op is 7 bytes: kind (0 write, 1 read, 2 Notify,
// 3 device signal or needs-reset), register index, width selector, 32-bit value.
//
// Properties: nothing panics or deadlocks; the device is activated only with acceptable
// features and never twice without a reset; Active implies DRIVER_OK in Status; reads of
// Status never show bits outside the spec's set.
func FuzzRegisterWrites(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0}) // Status = ACKNOWLEDGE
	f.Fuzz(func(t *testing.T, ops []byte) {
		fuzzMemOnce.Do(func() {
			m, err := guestmem.New(1<<20, guestmem.Options{})
			if err != nil {
				panic(err)
			}
			fuzzMem = m
		})
		dev := newRecorder()
		b := newBench(fuzzMem, dev)
		defer b.t.Close()
		for len(ops) >= 7 {
			kind, idx, width := ops[0]%4, int(ops[1]), fuzzWidths[ops[2]%8]
			// Raw offsets: register index × 16 plus a misalignment from the width byte,
			// reaching every part of the 4 KiB window.
			off := uint64(idx)*16 + uint64(ops[2]>>3&3)
			if idx < len(fuzzRegs) {
				off = uint64(fuzzRegs[idx])
			}
			v := binary.LittleEndian.Uint32(ops[3:7])
			ops = ops[7:]
			data := make([]byte, width)
			for i := range data {
				data[i] = byte(v >> (8 * (i % 4)))
			}
			switch kind {
			case 0:
				b.t.Write(off, data)
			case 1:
				b.t.Read(off, data)
			case 2:
				b.t.Notify(int(int32(v)))
			case 3:
				if active, _, _, args, _ := dev.state(); active {
					if v&1 == 0 {
						args.Interrupt.Signal(v >> 1 & 3)
					} else {
						args.Interrupt.NeedsReset(errors.New("fuzz"))
					}
				}
			}
			s := b.status()
			if s&^(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK|
				virtio.StatusDeviceNeedsReset|virtio.StatusFailed) != 0 {
				t.Fatalf("status %#x has bits outside the spec", s)
			}
			if b.t.Active() && s&virtio.StatusDriverOK == 0 {
				t.Fatalf("transport active with status %#x", s)
			}
			if _, _, _, _, violation := dev.state(); violation != nil {
				t.Fatal(violation)
			}
		}
	})
}
