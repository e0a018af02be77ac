package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// hostileCase is a layer stack that must be rejected without touching anything outside.
type hostileCase struct {
	name   string
	layers func(t *testing.T, outside string) [][]byte
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{"dotdot traversal", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).file("../outside/pwned", "x").bytes()}
		}},
		{"dotdot inside name", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).file("a/../../outside/pwned", "x").bytes()}
		}},
		{"absolute dotdot", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).file("/../outside/pwned", "x").bytes()}
		}},
		{"write through escaping relative symlink", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).symlink("esc", "../outside").file("esc/pwned", "x").bytes()}
		}},
		{"write through escaping symlink from an earlier layer", func(t *testing.T, _ string) [][]byte {
			return [][]byte{
				newLayer(t).dir("a/", 0o755).symlink("a/esc", "../../outside").bytes(),
				newLayer(t).file("a/esc/pwned", "x").bytes(),
			}
		}},
		{"symlink chain climbing out", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).dir("d/", 0o755).symlink("d/up", "..").symlink("d/up2", "up/..").file("d/up2/outside/pwned", "x").bytes()}
		}},
		{"hard link to outside by name", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).hardlink("pwned", "../outside/secret").bytes()}
		}},
		{"hard link through escaping symlink", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).symlink("esc", "../outside").hardlink("stolen", "esc/secret").bytes()}
		}},
		{"whiteout of dotdot", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).dir("a/", 0o755).file("a/.wh...", "").bytes()}
		}},
		{"whiteout through escaping symlink", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).symlink("esc", "../outside").file("esc/.wh.secret", "").bytes()}
		}},
		{"opaque whiteout through escaping symlink", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).symlink("esc", "../outside").file("esc/.wh..wh..opq", "").bytes()}
		}},
		{"hard link target with dotdot", func(t *testing.T, _ string) [][]byte {
			return [][]byte{newLayer(t).file("a", "").hardlink("b", "x/../../outside/secret").bytes()}
		}},
	}
}

func TestFlattenRejectsEscapes(t *testing.T) {
	needRoot(t)
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			outside := filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := FlattenReader(context.Background(), readers(tc.layers(t, outside)...), root, Limits{})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("err = %v, want ErrUnsafePath", err)
			}
			if !strings.Contains(err.Error(), "layer ") || !strings.Contains(err.Error(), "entry ") {
				t.Errorf("error does not name the layer and entry: %v", err)
			}
			t.Log(err)
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 || ents[0].Name() != "secret" {
				t.Errorf("outside directory changed: %v", ents)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "secret" {
				t.Errorf("outside file changed: %q", b)
			}
			ents, _ = os.ReadDir(base)
			if len(ents) != 2 {
				t.Errorf("something was created next to the root: %v", ents)
			}
		})
	}
}

// An absolute symlink is resolved at the image root (as in the guest), never on the host.
func TestFlattenAbsoluteSymlinkStaysInside(t *testing.T) {
	needRoot(t)
	marker := "rootfs-test-" + filepath.Base(t.TempDir())
	l := newLayer(t).symlink("hostetc", "/tmp").file("hostetc/"+marker, "inside").bytes()
	root := flatten(t, l)
	if exists(filepath.Join("/tmp", marker)) {
		os.Remove(filepath.Join("/tmp", marker))
		t.Fatal("wrote through an absolute symlink onto the host")
	}
	if readFile(t, filepath.Join(root, "tmp", marker)) != "inside" {
		t.Error("file not created at the image's /tmp")
	}
}

func TestFlattenLimits(t *testing.T) {
	needRoot(t)
	big := newLayer(t).file("big", strings.Repeat("x", 2<<20)).bytes()
	err := FlattenReader(context.Background(), readers(big), filepath.Join(t.TempDir(), "r"), Limits{MaxBytes: 1 << 20})
	if !errors.Is(err, ErrLimit) {
		t.Errorf("byte cap: err = %v, want ErrLimit", err)
	}
	// The cap is over all layers, not per layer.
	half := newLayer(t).file("a", strings.Repeat("x", 600<<10)).bytes()
	half2 := newLayer(t).file("b", strings.Repeat("x", 600<<10)).bytes()
	err = FlattenReader(context.Background(), readers(half, half2), filepath.Join(t.TempDir(), "r"), Limits{MaxBytes: 1 << 20})
	if !errors.Is(err, ErrLimit) {
		t.Errorf("byte cap across layers: err = %v, want ErrLimit", err)
	}
	many := newLayer(t)
	for i := range 200 {
		many.dir(strings.Repeat("d", 1+i%50)+"/", 0o755)
	}
	err = FlattenReader(context.Background(), readers(many.bytes()), filepath.Join(t.TempDir(), "r"), Limits{MaxEntries: 100})
	if !errors.Is(err, ErrLimit) {
		t.Errorf("entry cap: err = %v, want ErrLimit", err)
	}
}

// zeroLayer is a layer holding one file of n zero bytes, streamed (never in memory).
func zeroTar(n int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zeros", Size: n, Mode: 0o644})
			if err == nil {
				_, err = io.CopyN(tw, zeroReader{}, n)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A gzip bomb: 256 MiB of zeros compresses to about 300 KiB; Flatten stops at the cap.
func TestFlattenGzipBomb(t *testing.T) {
	needRoot(t)
	layer, err := tarball.LayerFromOpener(zeroTar(256<<20), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	compressed, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bomb: %d compressed bytes for 256 MiB", len(compressed))
	bomb, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, bomb)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = Flatten(context.Background(), img, filepath.Join(t.TempDir(), "r"), Limits{MaxBytes: 16 << 20})
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("err = %v, want ErrLimit", err)
	}
	t.Logf("rejected after %v: %v", time.Since(start), err)
}

// Layers may be gzip, zstd or uncompressed; Flatten reads all three.
func TestFlattenCompressions(t *testing.T) {
	needRoot(t)
	mk := func(name string, opts ...tarball.LayerOption) v1.Layer {
		b := newLayer(t).file(name, "content of "+name).bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	gz := mk("gzip")
	zs := mk("zstd", tarball.WithCompression(compression.ZStd))
	raw := uncompressedLayer(t, newLayer(t).file("raw", "content of raw").bytes())
	img, err := mutate.AppendLayers(empty.Image, gz, zs, raw)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "r")
	if err := Flatten(context.Background(), img, dir, Limits{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"gzip", "zstd", "raw"} {
		if got := readFile(t, filepath.Join(dir, n)); got != "content of "+n {
			t.Errorf("%s = %q", n, got)
		}
	}
	zb, _ := zs.Compressed()
	head := make([]byte, 4)
	io.ReadFull(zb, head)
	zb.Close()
	if !bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("zstd layer is not zstd: % x", head)
	}
}
