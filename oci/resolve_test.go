package oci

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vmbench/runner/testimages"
)

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  error
)

// layoutFixture writes basic, env and workdir to an OCI layout once per test binary.
func layoutFixture(t *testing.T) string {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "oci-test-layout-*")
		if err != nil {
			fixtureErr = err
			return
		}
		imgs := map[string]v1.Image{}
		for _, n := range []string{"basic", "env", "workdir"} {
			img, err := testimages.Build(n)
			if err != nil {
				fixtureErr = err
				return
			}
			imgs[n] = img
		}
		fixtureDir = filepath.Join(dir, "layout")
		fixtureErr = testimages.WriteLayout(fixtureDir, imgs)
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(filepath.Dir(fixtureDir))
	}
	os.Exit(code)
}

func mustDigest(t *testing.T, name string) v1.Hash {
	t.Helper()
	img, err := testimages.Build(name)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// layerFiles lists the entries of every layer of img, reading them through Uncompressed.
func layerFiles(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
		}
		rc.Close()
	}
	return names
}

func checkBasic(t *testing.T, img *Image) {
	t.Helper()
	if want := []string{"echo", "hello from vm"}; !slices.Equal(img.Config.Argv(), want) {
		t.Errorf("argv = %q, want %q", img.Config.Argv(), want)
	}
	files := layerFiles(t, img.Image)
	if !slices.Contains(files, "bin/busybox") || !slices.Contains(files, "etc/passwd") {
		t.Errorf("layer lacks bin/busybox or etc/passwd: %v", files)
	}
}

func TestResolveLayout(t *testing.T) {
	dir := layoutFixture(t)
	ctx := context.Background()
	opts := Options{CacheDir: t.TempDir()}

	img, err := Resolve(ctx, "oci:"+dir+":basic", opts)
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != mustDigest(t, "basic") {
		t.Errorf("digest = %s, want %s", img.Digest, mustDigest(t, "basic"))
	}
	checkBasic(t, img)
	if m, _ := img.Manifest(); img.LayersSize != m.Layers[0].Size {
		t.Errorf("LayersSize = %d, want %d", img.LayersSize, m.Layers[0].Size)
	}

	wd, err := Resolve(ctx, dir+":workdir", opts)
	if err != nil {
		t.Fatal(err)
	}
	if wd.Config.WorkingDir != "/app" || !slices.Equal(wd.Config.Argv(), []string{"pwd"}) {
		t.Errorf("workdir config = %+v", wd.Config)
	}
	if files := layerFiles(t, wd.Image); !slices.Contains(files, "app/hello.txt") {
		t.Errorf("workdir image lacks app/hello.txt: %v", files)
	}

	env, err := Resolve(ctx, "oci:"+dir+"@"+mustDigest(t, "env").String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env.Config.Env, "MY_VAR=test_value") {
		t.Errorf("env = %q", env.Config.Env)
	}

	_, err = Resolve(ctx, "oci:"+dir+":nope", opts)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "basic, env, workdir") {
		t.Errorf("missing tag: err = %v, want ErrNotFound listing the tags", err)
	}
	_, err = Resolve(ctx, dir, opts)
	if err == nil || !strings.Contains(err.Error(), "basic, env, workdir") {
		t.Errorf("untagged multi-image layout: err = %v, want the tag list", err)
	}
	if _, err := Resolve(ctx, "oci:"+filepath.Join(dir, "missing"), opts); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing layout dir: err = %v, want ErrNotFound", err)
	}
}

// tarDir writes dir's tree as a tar file (what `tar -cf FILE -C DIR .` makes).
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestResolveOCIArchive(t *testing.T) {
	dir := layoutFixture(t)
	file := filepath.Join(t.TempDir(), "images.tar")
	tarDir(t, dir, file)
	cache := t.TempDir()
	ctx := context.Background()
	for _, ref := range []string{"oci-archive:" + file + ":basic", file + ":basic"} {
		img, err := Resolve(ctx, ref, Options{CacheDir: cache})
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if img.Digest != mustDigest(t, "basic") {
			t.Errorf("%s: digest = %s", ref, img.Digest)
		}
		checkBasic(t, img)
	}
	// The archive's blobs went into the cache, verified and content-addressed.
	if !(&blobStore{root: cache}).has(mustDigest(t, "basic")) {
		t.Errorf("manifest not imported into the cache")
	}
}

func TestResolveDockerArchive(t *testing.T) {
	img0, err := testimages.Build("basic")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "basic.tar")
	if err := testimages.WriteDockerArchive(file, "test:basic", img0); err != nil {
		t.Fatal(err)
	}
	cfgDigest, err := img0.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ref := range []string{"docker-archive:" + file, "docker-archive:" + file + ":test:basic", file} {
		img, err := Resolve(ctx, ref, Options{CacheDir: t.TempDir()})
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if img.Digest != cfgDigest {
			t.Errorf("%s: digest = %s, want config digest %s", ref, img.Digest, cfgDigest)
		}
		if st, _ := os.Stat(file); img.LayersSize != st.Size() {
			t.Errorf("%s: LayersSize = %d, want the archive size %d", ref, img.LayersSize, st.Size())
		}
		checkBasic(t, img)
	}
	if _, err := Resolve(ctx, "docker-archive:"+file+":test:other", Options{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tag in docker archive: err = %v, want ErrNotFound", err)
	}
}

func TestNoProgressWithoutTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if newProgress(f) != nil || newProgress(nil) != nil {
		t.Error("progress drawn on a non-terminal")
	}
}
