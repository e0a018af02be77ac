package oci

import (
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress draws one byte-count bar per downloaded blob on a terminal. A nil *progress
// draws nothing, so callers never check.
type progress struct {
	w io.Writer
}

// newProgress returns a progress drawing to w when w is a terminal, else nil.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progress{w: w}
}

// minProgressBytes: smaller blobs (configs, tiny layers) arrive before a bar could help.
const minProgressBytes = 256 << 10

// wrap returns r counting into a bar labelled with the blob's short digest.
func (p *progress) wrap(r io.Reader, h v1.Hash, size int64) io.ReadCloser {
	if p == nil || size < minProgressBytes {
		return io.NopCloser(r)
	}
	short := h.Hex
	if len(short) > 12 {
		short = short[:12]
	}
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("pull "+short),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100e6),
		progressbar.OptionOnCompletion(func() { io.WriteString(p.w, "\n") }),
	)
	pr := progressbar.NewReader(r, bar)
	return &pr
}
