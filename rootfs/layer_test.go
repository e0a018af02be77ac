package rootfs

import (
	"bytes"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// uncompressedLayer is a layer stored as a plain tar (media type ...tar, no compression).
func uncompressedLayer(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l := static.NewLayer(b, types.OCIUncompressedLayer)
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, b) {
		t.Fatal("static layer changed its content")
	}
	return l
}
