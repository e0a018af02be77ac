package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/vmbench/runner/oci"
	"github.com/vmbench/runner/testimages"
)

// benchImage writes a ~100 MB (uncompressed) three-layer image to an OCI layout under dir
// and returns the layout path and the compressed layer blob paths, bottom first. Content is
// half pseudo-random (incompressible, like binaries) and half repetitive text, in ~3000
// files from 1 KiB to 8 MiB, with a few hard links and symlinks.
func benchImage(b *testing.B, dir string) (string, []string) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := []byte("benchmark runner virtual machine kernel virtio vsock ext4 layer ")
	var layers []v1.Layer
	for li := range 3 {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		total := 0
		for fi := 0; total < 34<<20; fi++ {
			size := 1 << (10 + rng.IntN(8)) // 1 KiB .. 128 KiB
			if fi%400 == 0 {
				size = 8 << 20
			}
			body := make([]byte, size)
			if fi%2 == 0 {
				for i := range body {
					body[i] = byte(rng.Uint32())
				}
			} else {
				for i := range body {
					body[i] = words[(i+fi)%len(words)]
				}
			}
			name := fmt.Sprintf("l%d/d%02d/f%05d", li, fi%50, fi)
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(size), Mode: 0o644, ModTime: testTime, Uid: fi % 3, Gid: fi % 3}); err != nil {
				b.Fatal(err)
			}
			tw.Write(body)
			if fi%100 == 0 {
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: name + ".hl", Linkname: name, ModTime: testTime})
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name + ".sl", Linkname: filepath.Base(name), ModTime: testTime})
			}
			total += size
		}
		tw.Close()
		l, err := testimages.LayerFromTar(buf.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := testimages.Image(layers, v1.Config{Cmd: []string{"true"}})
	if err != nil {
		b.Fatal(err)
	}
	lp := filepath.Join(dir, "layout")
	p, err := layout.Write(lp, empty.Index)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		b.Fatal(err)
	}
	var blobs []string
	for _, l := range layers {
		d, _ := l.Digest()
		blobs = append(blobs, filepath.Join(lp, "blobs", d.Algorithm, d.Hex))
	}
	return lp, blobs
}

// BenchmarkBuild100MB compares Build (flatten + prepare + mkfs.ext4 -d) of a ~100 MB image
// with what a shell script would do with the same gzip layers (tar -xzf each layer, then
// mkfs.ext4 -d with the same flags and size), in the same run, and times a cached Build.
// The shell runs twice: unpacking where Build unpacks (tmpfs when the image fits, see
// chooseUnpackPlace) for a like-for-like ratio, and on the disk next to the cache, which
// is what a script would naively do.
// Reported: build-ms, shell-ms, build/shell (< 1 means we are faster), shell-disk-ms,
// build/shell-disk, cached-ms (second Build of the same image: no unpack, no mkfs) and
// copy-ms (CopyForRun of the built base: the per-run cost on a cache hit).
func BenchmarkBuild100MB(b *testing.B) {
	needRoot(b)
	for _, tool := range []string{"mkfs.ext4", "tar", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed: %v", tool, err)
		}
	}
	dir := b.TempDir()
	lp, blobs := benchImage(b, dir)
	ctx := context.Background()
	img, err := oci.Resolve(ctx, "oci:"+lp, oci.Options{})
	if err != nil {
		b.Fatal(err)
	}
	place := chooseUnpackPlace(img, dir)
	b.Logf("Build unpacks in %s", place.parent)
	var build, shell, shellDisk, cached, copied time.Duration
	var size int64
	runShell := func(parent string, i int) time.Duration {
		work, err := os.MkdirTemp(parent, "shell-baseline-*")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(work)
		out := filepath.Join(dir, fmt.Sprint("shell-img-", i))
		defer os.Remove(out)
		script := fmt.Sprintf(`set -e; mkdir -p %[1]s/tree
for l in %[2]s; do tar --same-owner --numeric-owner --xattrs --xattrs-include='*' -xzf "$l" -C %[1]s/tree; done
truncate -s %[3]d %[4]s
mkfs.ext4 -F -q -b 4096 -I 256 -m 0 -O ^has_journal -E lazy_itable_init=0,root_owner=0:0 -d %[1]s/tree %[4]s
`, work, strings.Join(blobs, " "), max(size, 512<<20), out)
		start := time.Now()
		if out, err := exec.Command("bash", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("shell baseline: %v: %s", err, out)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := range b.N {
		cache := filepath.Join(dir, fmt.Sprint("cache", i))
		runOurs := func() {
			start := time.Now()
			p, err := Build(ctx, img, BuildOptions{CacheDir: cache})
			if err != nil {
				b.Fatal(err)
			}
			build += time.Since(start)
			st, _ := os.Stat(p)
			size = st.Size()
			start = time.Now()
			if _, err := Build(ctx, img, BuildOptions{CacheDir: cache}); err != nil {
				b.Fatal(err)
			}
			cached += time.Since(start)
			start = time.Now()
			if err := CopyForRun(p, filepath.Join(dir, "run.img")); err != nil {
				b.Fatal(err)
			}
			copied += time.Since(start)
			os.Remove(filepath.Join(dir, "run.img"))
		}
		// Alternate the order so page-cache warmth favours neither side.
		if i%2 == 0 {
			runOurs()
			shell += runShell(place.parent, i)
			shellDisk += runShell(dir, i)
		} else {
			shellDisk += runShell(dir, i)
			shell += runShell(place.parent, i)
			runOurs()
		}
		os.RemoveAll(cache)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(build.Milliseconds())/n, "build-ms")
	b.ReportMetric(float64(shell.Milliseconds())/n, "shell-ms")
	b.ReportMetric(build.Seconds()/shell.Seconds(), "build/shell")
	b.ReportMetric(float64(shellDisk.Milliseconds())/n, "shell-disk-ms")
	b.ReportMetric(build.Seconds()/shellDisk.Seconds(), "build/shell-disk")
	b.ReportMetric(float64(cached.Microseconds())/n/1000, "cached-ms")
	b.ReportMetric(float64(copied.Milliseconds())/n, "copy-ms")
}
