package kvm

import (
	"encoding/binary"
	"testing"
)

// FuzzRunPage decodes arbitrary kvm_run contents: the exit fields come from shared memory,
// so every decoder must stay inside the mapping whatever they say.
func FuzzRunPage(f *testing.F) {
	seed := make([]byte, 4096)
	binary.LittleEndian.PutUint32(seed[runOffExitReason:], uint32(ExitIO))
	seed[runOffIOSize], seed[runOffIOCount] = 1, 1
	binary.LittleEndian.PutUint64(seed[runOffIODataOffset:], 4096-8)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, page []byte) {
		if len(page) < 4096 {
			page = append(page, make([]byte, 4096-len(page))...)
		}
		r := &Run{page: page}
		if io, err := r.IO(); err == nil {
			if len(io.Data) != int(io.Size)*int(io.Count) {
				t.Fatalf("io data %d bytes for size %d count %d", len(io.Data), io.Size, io.Count)
			}
		}
		if m, err := r.MMIO(); err == nil && (len(m.Data) == 0 || len(m.Data) > 8) {
			t.Fatalf("mmio data %d bytes", len(m.Data))
		}
		if ev := r.SystemEvent(); len(ev.Data) > 16 {
			t.Fatalf("%d system-event words", len(ev.Data))
		}
		if in := r.Internal(); len(in.Data) > 16 || len(in.Insn) > 15 {
			t.Fatalf("internal: %d words, %d instruction bytes", len(in.Data), len(in.Insn))
		}
		r.FailEntry()
		r.Exception()
		r.HardwareExitReason()
		_ = r.ExitReason().String()
		r.SetImmediateExit(true)
		if !r.ImmediateExit() {
			t.Fatal("immediate_exit lost")
		}
	})
}
