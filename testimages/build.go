package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the modification time of every file and the creation time of every image.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// BusyboxPath is the statically linked busybox put into every image (Debian busybox-static).
// RUNNER_BUSYBOX overrides it.
func BusyboxPath() string {
	if p := os.Getenv("RUNNER_BUSYBOX"); p != "" {
		return p
	}
	return "/bin/busybox"
}

// Applets linked to busybox in /bin: everything the scenarios and the tests call, and a
// few common tools.
var applets = []string{
	"base64", "cat", "chmod", "cp", "cut", "date", "dd", "df", "du", "echo", "env", "false",
	"find", "grep", "head", "hostname", "id", "kill", "ln", "ls", "mkdir", "mount", "mv",
	"ping", "printf", "ps", "pwd", "rm", "sed", "seq", "sha256sum", "sleep", "sort", "stat",
	"tail", "test", "touch", "tr", "true", "umount", "uname", "wc", "xargs", "yes",
}

// sbinApplets are linked in /sbin with relative symlinks, as in the busybox image.
var sbinApplets = []string{"halt", "poweroff", "reboot"}

// Base environment of every image (the busybox image's PATH).
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const passwd = `root:x:0:0:root:/root:/bin/sh
bench:x:1000:1000:bench:/home/bench:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const group = `root:x:0:
bench:x:1000:
nogroup:x:65534:
`

// tarWriter writes a layer with fixed times and numeric owners.
type tarWriter struct {
	tw  *tar.Writer
	err error
}

func (w *tarWriter) add(h *tar.Header, body []byte) {
	if w.err != nil {
		return
	}
	h.ModTime = Epoch
	h.Format = tar.FormatPAX
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(len(body))
	}
	if w.err = w.tw.WriteHeader(h); w.err != nil {
		return
	}
	if len(body) > 0 {
		_, w.err = w.tw.Write(body)
	}
}

func (w *tarWriter) dir(name string, mode int64, uid int) {
	w.add(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid}, nil)
}

func (w *tarWriter) file(name string, mode int64, body []byte) {
	w.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body)
}

func (w *tarWriter) symlink(name, target string) {
	w.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}

func (w *tarWriter) hardlink(name, target string) {
	w.add(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o755}, nil)
}

// baseLayerTar builds the uncompressed base layer.
func baseLayerTar() ([]byte, error) {
	bb, err := os.ReadFile(BusyboxPath())
	if err != nil {
		return nil, fmt.Errorf("testimages: busybox (install busybox-static): %w", err)
	}
	var buf bytes.Buffer
	w := &tarWriter{tw: tar.NewWriter(&buf)}
	for _, d := range []struct {
		name string
		mode int64
		uid  int
	}{
		{"bin", 0o755, 0}, {"dev", 0o755, 0}, {"etc", 0o755, 0}, {"home", 0o755, 0},
		{"home/bench", 0o755, 1000}, {"proc", 0o555, 0}, {"root", 0o700, 0}, {"sbin", 0o755, 0},
		{"sys", 0o555, 0}, {"tmp", 0o1777, 0}, {"usr", 0o755, 0}, {"usr/bin", 0o755, 0},
		{"var", 0o755, 0},
	} {
		w.dir(d.name, d.mode, d.uid)
	}
	w.file("bin/busybox", 0o755, bb)
	w.hardlink("bin/sh", "bin/busybox")
	for _, a := range applets {
		w.symlink("bin/"+a, "busybox")
	}
	for _, a := range sbinApplets {
		w.symlink("sbin/"+a, "../bin/busybox")
	}
	w.symlink("usr/bin/env", "/bin/busybox")
	w.file("etc/passwd", 0o644, []byte(passwd))
	w.file("etc/group", 0o644, []byte(group))
	w.file("etc/hostname", 0o644, []byte("bench\n"))
	if w.err != nil {
		return nil, fmt.Errorf("testimages: base layer: %w", w.err)
	}
	if err := w.tw.Close(); err != nil {
		return nil, fmt.Errorf("testimages: base layer: %w", err)
	}
	return buf.Bytes(), nil
}

// appLayerTar is the workdir scenario's "COPY . /app".
func appLayerTar() ([]byte, error) {
	var buf bytes.Buffer
	w := &tarWriter{tw: tar.NewWriter(&buf)}
	w.dir("app", 0o755, 0)
	w.file("app/hello.txt", 0o644, []byte("hello from /app\n"))
	if w.err != nil {
		return nil, w.err
	}
	if err := w.tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// LayerFromTar turns an uncompressed tar into a gzip-compressed OCI layer (compressed once).
func LayerFromTar(b []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

var (
	baseOnce  sync.Once
	baseLayer v1.Layer
	baseErr   error
)

func base() (v1.Layer, error) {
	baseOnce.Do(func() {
		var b []byte
		if b, baseErr = baseLayerTar(); baseErr == nil {
			baseLayer, baseErr = LayerFromTar(b)
		}
	})
	return baseLayer, baseErr
}

// Build returns the named scenario image (linux/amd64, OCI media types).
func Build(name string) (v1.Image, error) {
	s, ok := scenarios[name]
	if !ok {
		return nil, fmt.Errorf("testimages: unknown image %q (have %v)", name, Names())
	}
	bl, err := base()
	if err != nil {
		return nil, err
	}
	layers := []v1.Layer{bl}
	if s.appFile {
		b, err := appLayerTar()
		if err != nil {
			return nil, fmt.Errorf("testimages: %s: %w", name, err)
		}
		l, err := LayerFromTar(b)
		if err != nil {
			return nil, fmt.Errorf("testimages: %s: %w", name, err)
		}
		layers = append(layers, l)
	}
	env := append([]string{basePath}, s.env...)
	img, err := Image(layers, v1.Config{Cmd: s.cmd, Env: env, WorkingDir: s.workdir})
	if err != nil {
		return nil, fmt.Errorf("testimages: %s: %w", name, err)
	}
	return img, nil
}

// Image assembles a linux/amd64 OCI image from layers and a config, with fixed timestamps.
func Image(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}
