package rootfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestReadahead(t *testing.T) {
	data := make([]byte, 5*readaheadSize+123)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	r := newReadahead(io.NopCloser(bytes.NewReader(data)))
	if err := iotest.TestReader(r, data); err != nil {
		t.Fatal(err)
	}
	r.Close()

	// Errors other than EOF come through after the data before them.
	boom := errors.New("boom")
	r = newReadahead(io.NopCloser(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom))))
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) || !bytes.Equal(got, data[:1000]) {
		t.Errorf("got %d bytes, err %v", len(got), err)
	}
	r.Close()

	// Closing early stops the reader goroutine.
	r = newReadahead(io.NopCloser(bytes.NewReader(data)))
	buf := make([]byte, 10)
	r.Read(buf)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
