package x86

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzLoadKernel feeds arbitrary files to the kernel loader: it must never panic or write
// outside guest RAM, and whatever it accepts must be self-consistent.
func FuzzLoadKernel(f *testing.F) {
	f.Add(bzImage(bytes.Repeat([]byte{0xf4}, 64), 0x1000))
	f.Add([]byte("\x7fELF"))
	m := newMem(f, 24<<20)
	f.Fuzz(func(t *testing.T, img []byte) {
		k, err := LoadKernel(m, bytes.NewReader(img), int64(len(img)))
		if err != nil {
			if !errors.Is(err, ErrBadKernel) {
				t.Fatalf("error does not wrap ErrBadKernel: %v", err)
			}
			return
		}
		if k.Entry < k.Start || k.Entry >= k.End || k.Start < HighMemStart || k.End > m.Size() {
			t.Fatalf("inconsistent kernel %+v", k)
		}
		if k.Format == FormatBzImage && len(k.Setup) > bpE820Table-setupHeaderOff {
			t.Fatalf("setup header of %d bytes", len(k.Setup))
		}
	})
}
