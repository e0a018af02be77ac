package rootfs

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"testing"
	"time"
)

// layerTar builds an uncompressed layer from headers; a header's body is its Linkname for
// regular files when body is not given through file().
type layerTar struct {
	t   testing.TB
	buf bytes.Buffer
	tw  *tar.Writer
}

var testTime = time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)

func newLayer(t testing.TB) *layerTar {
	l := &layerTar{t: t}
	l.tw = tar.NewWriter(&l.buf)
	return l
}

func (l *layerTar) add(h *tar.Header, body []byte) *layerTar {
	l.t.Helper()
	if h.ModTime.IsZero() {
		h.ModTime = testTime
	}
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(len(body))
	}
	if h.Format == tar.FormatUnknown {
		h.Format = tar.FormatPAX
	}
	if err := l.tw.WriteHeader(h); err != nil {
		l.t.Fatal(err)
	}
	if len(body) > 0 {
		if _, err := l.tw.Write(body); err != nil {
			l.t.Fatal(err)
		}
	}
	return l
}

func (l *layerTar) dir(name string, mode int64) *layerTar {
	return l.add(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}, nil)
}

func (l *layerTar) file(name, body string) *layerTar {
	return l.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, []byte(body))
}

func (l *layerTar) symlink(name, target string) *layerTar {
	return l.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}

func (l *layerTar) hardlink(name, target string) *layerTar {
	return l.add(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}, nil)
}

func (l *layerTar) bytes() []byte {
	l.t.Helper()
	if err := l.tw.Close(); err != nil {
		l.t.Fatal(err)
	}
	return l.buf.Bytes()
}

func readers(layers ...[]byte) []io.Reader {
	out := make([]io.Reader, len(layers))
	for i, b := range layers {
		out[i] = bytes.NewReader(b)
	}
	return out
}

// needRoot skips tests that set ownership or make device nodes when not running as root
// (CI and the development machines run as root, so these tests run there).
func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: Flatten sets file ownership and makes device nodes")
	}
}
