package protocol

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzReader feeds arbitrary streams to a Reader. It must never panic, never hold a buffer
// much larger than the input, and every message it accepts must survive a re-encode
// unchanged (the decoder accepts nothing the encoder cannot produce).
func FuzzReader(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(encode(f, m))
	}
	var all []byte
	for _, m := range sampleMessages() {
		all = append(all, encode(f, m)...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		for range 1000 {
			m, err := r.Read()
			if err != nil {
				break
			}
			m = normalize(m)
			var b bytes.Buffer
			if err := NewWriter(&b).Write(m); err != nil {
				t.Fatalf("re-encode %v: %v", m.Type(), err)
			}
			again, err := NewReader(&b).Read()
			if err != nil {
				t.Fatalf("decode re-encoded %v: %v", m.Type(), err)
			}
			if !reflect.DeepEqual(normalize(again), m) {
				t.Fatalf("%v changed on re-encode:\n %#v\n %#v", m.Type(), m, again)
			}
		}
		if limit := max(growStep, 2*len(in)); cap(r.buf) > limit {
			t.Fatalf("reader buffer %d bytes for %d bytes of input", cap(r.buf), len(in))
		}
	})
}
