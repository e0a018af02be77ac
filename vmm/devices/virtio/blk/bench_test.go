package blk_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/vmbench/runner/vmm/devices/virtio/blk"
	"github.com/vmbench/runner/vmm/devices/virtio/virtiotest"
	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

// BenchmarkBlkRandRead4K measures 4 KiB random reads through the whole device path: the
// driver publishes chains in guest memory and kicks through the mmio QueueNotify
// register; the device goroutine pops, preads into guest memory, pushes and interrupts;
// the driver waits on the interrupt. The baseline, measured in the same run on the same
// file and offsets, is a plain pread loop. Metrics: IOPS (device), pread-IOPS (baseline)
// and x-pread (their ratio).
func BenchmarkBlkRandRead4K(b *testing.B) {
	const size = 32 << 20
	path, _ := image(b, size)
	for _, qd := range []int{1, 32} {
		b.Run(fmt.Sprintf("qd=%d", qd), func(b *testing.B) {
			r := rand.New(rand.NewPCG(7, 8))
			offsets := make([]uint64, 4096)
			for i := range offsets {
				offsets[i] = r.Uint64N(size/4096) * 8 // in sectors, 4 KiB aligned
			}

			// Baseline: pread of the same pattern into one buffer.
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 4096)
			for _, off := range offsets { // warm the page cache for both
				f.ReadAt(buf, int64(off*512))
			}
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := f.ReadAt(buf, int64(offsets[i%len(offsets)]*512)); err != nil {
					b.Fatal(err)
				}
			}
			base := time.Since(t0)
			f.Close()

			_, d := start(b, blk.Config{Path: path}, virtiotest.Options{QueueSizes: []uint16{128}})
			q := d.Queues[0]
			mem := d.Driver.Mem()
			hdrs := make([]uint64, qd) // header GPA per request slot
			for s := 0; s < qd; s++ {
				h, _ := d.Driver.Alloc(16, 16)
				data, _ := d.Driver.Alloc(4096, 4096)
				st, _ := d.Driver.Alloc(1, 8)
				hdrs[s] = h
				i := uint16(3 * s)
				q.RawDesc(i, h, 16, virtq.DescFNext, i+1)
				q.RawDesc(i+1, data, 4096, virtq.DescFWrite|virtq.DescFNext, i+2)
				q.RawDesc(i+2, st, 1, virtq.DescFWrite, 0)
			}
			submit := func(slot int, n int) {
				var h [16]byte
				binary.LittleEndian.PutUint64(h[8:], offsets[n%len(offsets)]) // type 0 = IN
				mem.WriteAt(h[:], int64(hdrs[slot]))
				q.PublishRaw(uint16(3 * slot))
			}

			b.ResetTimer()
			t0 = time.Now()
			sent := 0
			for ; sent < min(qd, b.N); sent++ {
				submit(sent, sent)
			}
			q.Notify()
			for done := 0; done < b.N; done++ {
				u, err := q.WaitUsed(10 * time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if u.Len != 4097 {
					b.Fatalf("completion of %d bytes, want 4097", u.Len)
				}
				if sent < b.N {
					submit(int(u.Head)/3, sent)
					sent++
					q.Kick()
				}
			}
			dev := time.Since(t0)
			b.StopTimer()

			devIOPS := float64(b.N) / dev.Seconds()
			baseIOPS := float64(b.N) / base.Seconds()
			b.ReportMetric(devIOPS, "IOPS")
			b.ReportMetric(baseIOPS, "pread-IOPS")
			b.ReportMetric(devIOPS/baseIOPS, "x-pread")
		})
	}
}
