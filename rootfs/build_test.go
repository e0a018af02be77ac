package rootfs

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vmbench/runner/oci"
	"github.com/vmbench/runner/testimages"
	"golang.org/x/sys/unix"
)

// countingImage counts how often its layers are asked for (a cache hit must not).
type countingImage struct {
	v1.Image
	layers atomic.Int32
}

func (c *countingImage) Layers() ([]v1.Layer, error) {
	c.layers.Add(1)
	return c.Image.Layers()
}

// fixtureImage is busybox plus a layer with every kind of entry.
func fixtureImage(t *testing.T) (*oci.Image, *countingImage) {
	t.Helper()
	bb, err := testimages.Build("basic")
	if err != nil {
		t.Fatal(err)
	}
	base, err := bb.Layers()
	if err != nil {
		t.Fatal(err)
	}
	extra := newLayer(t).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755}, []byte("suid")).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "home/u/", Mode: 0o750, Uid: 1000, Gid: 1001}, nil).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "home/u/f", Mode: 0o640, Uid: 1000, Gid: 1001,
			PAXRecords: map[string]string{"SCHILY.xattr.user.bench": "yes"}}, []byte("data")).
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620}, nil).
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil).
		hardlink("bin/su-link", "bin/su").
		symlink("bin/abs", "/bin/busybox").
		file(".bencher", "an image file where our directory goes").
		bytes()
	l, err := testimages.LayerFromTar(extra)
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimages.Image(append(base, l), v1.Config{Cmd: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	c := &countingImage{Image: img}
	return &oci.Image{Image: c, Ref: "fixture", Digest: d}, c
}

func fakeInit(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "bencher-init")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho init\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh base installs it): %v", n, err)
		}
	}
}

func debugfs(t *testing.T, image, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, image).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v: %s", req, err, out)
	}
	return string(out)
}

var inodeRe = regexp.MustCompile(`Inode: (\d+)`)

func TestBuildExt4VerifiedWithE2fsprogs(t *testing.T) {
	needRoot(t)
	needTool(t, "mkfs.ext4", "e2fsck", "debugfs")
	img, _ := fixtureImage(t)
	initBin := fakeInit(t)
	path, err := Build(context.Background(), img, BuildOptions{InitPath: initBin, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", path).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	checks := []struct {
		req  string
		want []string
	}{
		{"stat /bin/su", []string{"Mode:  04755", "User:     0   Group:     0", "Links: 2", "2023"}},
		{"stat /home/u", []string{"Type: directory", "Mode:  0750", "User:  1000   Group:  1001"}},
		{"stat /home/u/f", []string{"Mode:  0640", "User:  1000   Group:  1001"}},
		{"ea_get /home/u/f user.bench", []string{"yes"}},
		{"stat /bin/sh", []string{"Type: regular", "Mode:  0755", "Links: 2"}},
		{"stat /bin/echo", []string{"Type: symlink", `Fast link dest: "busybox"`}},
		{"stat /bin/abs", []string{"Type: symlink", `Fast link dest: "/bin/busybox"`}},
		{"stat /run/fifo", []string{"Type: FIFO", "Mode:  0620"}},
		{"stat /dev/null", []string{"Type: character special", "Device major/minor number: 01:03"}},
		{"stat /tmp", []string{"Type: directory", "Mode:  01777"}},
		{"cat /etc/passwd", []string{"bench:x:1000:1000:bench:/home/bench:/bin/sh"}},
		{"stat /.bencher", []string{"Type: directory", "Mode:  0755", "User:     0"}},
		{"stat /.bencher/rw", []string{"Type: directory", "Mode:  0755"}},
		{"stat /.bencher/init", []string{"Type: regular", "Mode:  0755", "User:     0   Group:     0"}},
		{"cat /.bencher/init", []string{"echo init"}},
		{"stat /proc", []string{"Type: directory"}},
		{"stat /run", []string{"Type: directory"}},
	}
	for _, c := range checks {
		out := debugfs(t, path, c.req)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("debugfs %q: missing %q in:\n%s", c.req, w, out)
			}
		}
	}
	// Hard links share an inode: /bin/sh and /bin/busybox, /bin/su and /bin/su-link.
	for _, pair := range [][2]string{{"/bin/sh", "/bin/busybox"}, {"/bin/su", "/bin/su-link"}} {
		a := inodeRe.FindStringSubmatch(debugfs(t, path, "stat "+pair[0]))
		b := inodeRe.FindStringSubmatch(debugfs(t, path, "stat "+pair[1]))
		if a == nil || b == nil || a[1] != b[1] {
			t.Errorf("%s and %s are not one inode: %v %v", pair[0], pair[1], a, b)
		}
	}
	// The busybox binary is bit-identical.
	dumped := filepath.Join(t.TempDir(), "bb")
	debugfs(t, path, "dump /bin/busybox "+dumped)
	if sha256File(t, dumped) != sha256File(t, testimages.BusyboxPath()) {
		t.Errorf("/bin/busybox in the image differs from %s", testimages.BusyboxPath())
	}
	features := debugfs(t, path, "stats")
	if strings.Contains(features, "has_journal") {
		t.Errorf("image has a journal: %s", features)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o444 {
		t.Errorf("cached base mode = %o, want 444", st.Mode().Perm())
	}
}

func TestBuildSquashfsVerifiedWithUnsquashfs(t *testing.T) {
	needRoot(t)
	needTool(t, "mksquashfs", "unsquashfs")
	img, _ := fixtureImage(t)
	path, err := Build(context.Background(), img, BuildOptions{Format: FormatSquashfs, InitPath: fakeInit(t), CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("unsquashfs", "-lln", path).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v\n%s", err, out)
	}
	listing := string(out)
	for _, re := range []string{
		`-rwsr-xr-x 0/0 +4 2023-05-06 07:08 squashfs-root/bin/su\n`,
		`drwxr-x--- 1000/1001 .* squashfs-root/home/u\n`,
		`-rw-r----- 1000/1001 +4 .* squashfs-root/home/u/f\n`,
		`lrwxrwxrwx 0/0 .* squashfs-root/bin/echo -> busybox\n`,
		`prw--w---- 0/0 .* squashfs-root/run/fifo\n`,
		`crw-rw-rw- 0/0 +1, +3 .* squashfs-root/dev/null\n`,
		`drwxrwxrwt 0/0 .* squashfs-root/tmp\n`,
		`-rwxr-xr-x 0/0 .* squashfs-root/.bencher/init\n`,
		`drwxr-xr-x 0/0 .* squashfs-root/.bencher/rw\n`,
	} {
		if !regexp.MustCompile(re).MatchString(listing) {
			t.Errorf("unsquashfs -lln: no line matching %q", re)
		}
	}
	// Hard links survive: extract and compare inodes.
	dest := filepath.Join(t.TempDir(), "x")
	if out, err := exec.Command("unsquashfs", "-no-progress", "-d", dest, path).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs -d: %v\n%s", err, out)
	}
	a, b := lstat(t, filepath.Join(dest, "bin/su")), lstat(t, filepath.Join(dest, "bin/su-link"))
	if a.Ino != b.Ino {
		t.Errorf("bin/su and bin/su-link are not hard links in the squashfs")
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(dest, "home/u/f"), "user.bench", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("xattr lost in squashfs: %q %v", buf[:n], err)
	}
}

func TestBuildCacheSkipsUnpackAndMkfs(t *testing.T) {
	needRoot(t)
	needTool(t, "mkfs.ext4")
	img, counter := fixtureImage(t)
	cache := t.TempDir()
	initBin := fakeInit(t)
	opts := BuildOptions{InitPath: initBin, CacheDir: cache}

	// Concurrent first builds of one key build once.
	var wg sync.WaitGroup
	paths := make([]string, 3)
	errs := make([]error, 3)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = Build(context.Background(), img, opts)
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if paths[i] != paths[0] {
			t.Errorf("concurrent builds returned %q and %q", paths[0], paths[i])
		}
	}
	if n := counter.layers.Load(); n != 1 {
		t.Errorf("layers read %d times for concurrent builds, want 1", n)
	}
	p2, err := Build(context.Background(), img, opts)
	if err != nil {
		t.Fatal(err)
	}
	if p2 != paths[0] || counter.layers.Load() != 1 {
		t.Errorf("second build was not a cache hit (layers read %d times)", counter.layers.Load())
	}
	// Another init binary, format or size is another key.
	other := fakeInit(t)
	os.WriteFile(other, []byte("different init"), 0o600)
	p3, err := Build(context.Background(), img, BuildOptions{InitPath: other, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	p4, err := Build(context.Background(), img, BuildOptions{InitPath: initBin, CacheDir: cache, DiskMiB: 300})
	if err != nil {
		t.Fatal(err)
	}
	if p3 == paths[0] || p4 == paths[0] || p3 == p4 {
		t.Errorf("keys collide: %s %s %s", paths[0], p3, p4)
	}
	if st, _ := os.Stat(p4); st.Size() != 300<<20 {
		t.Errorf("--disk 300: size %d", st.Size())
	}
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover in cache: %s", e.Name())
		}
	}
	noUnpackLeftovers(t)
}

func TestBuildFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	needTool(t, "mkfs.ext4")
	img, _ := fixtureImage(t)
	cache := t.TempDir()
	_, err := Build(context.Background(), img, BuildOptions{CacheDir: cache, DiskMiB: 1})
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("--disk 1: err = %v, want too small", err)
	}
	hostile, err := testimages.LayerFromTar(newLayer(t).file("../escape", "x").bytes())
	if err != nil {
		t.Fatal(err)
	}
	himg, err := testimages.Image([]v1.Layer{hostile}, v1.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := himg.Digest()
	_, err = Build(context.Background(), &oci.Image{Image: himg, Ref: "hostile", Digest: d}, BuildOptions{CacheDir: cache})
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("hostile image: err = %v, want ErrUnsafePath", err)
	}
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("failed build left %s", e.Name())
		}
	}
	noUnpackLeftovers(t)
}

// noUnpackLeftovers checks that this process left no unpack tree in memory.
func noUnpackLeftovers(t *testing.T) {
	t.Helper()
	mine, _ := filepath.Glob(filepath.Join(shmDir, fmt.Sprintf("%s%d-*", unpackPrefix, os.Getpid())))
	if len(mine) > 0 {
		t.Errorf("unpack trees left in %s: %v", shmDir, mine)
	}
}

func sha256File(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

func TestCopyForRun(t *testing.T) {
	needRoot(t)
	needTool(t, "mkfs.ext4", "e2fsck")
	img, _ := fixtureImage(t)
	base, err := Build(context.Background(), img, BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	baseSum := sha256File(t, base)
	dst := filepath.Join(t.TempDir(), "run.ext4")
	if err := CopyForRun(base, dst); err != nil {
		t.Fatal(err)
	}
	if sha256File(t, dst) != baseSum {
		t.Fatal("copy differs from base")
	}
	var st unix.Stat_t
	if err := unix.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= st.Size/2 {
		t.Errorf("copy is not sparse: %d bytes allocated of %d", st.Blocks*512, st.Size)
	}
	if st.Mode&0o777 != 0o644 {
		t.Errorf("copy mode = %o", st.Mode&0o777)
	}
	// Writing the copy (as a run would) leaves the base untouched.
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("scribble"), 1<<20)
	f.Close()
	if sha256File(t, base) != baseSum {
		t.Error("writing the copy changed the base")
	}
	if out, err := exec.Command("e2fsck", "-fn", base).CombinedOutput(); err != nil {
		t.Errorf("base after run: %v\n%s", err, out)
	}
}

// A docker-archive image (uncompressed layers, no registry manifest) builds too.
func TestBuildFromDockerArchive(t *testing.T) {
	needRoot(t)
	needTool(t, "mkfs.ext4", "e2fsck", "debugfs")
	bb, err := testimages.Build("workdir")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "workdir.tar")
	if err := testimages.WriteDockerArchive(file, "test:workdir", bb); err != nil {
		t.Fatal(err)
	}
	img, err := oci.Resolve(context.Background(), "docker-archive:"+file, oci.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	path, err := Build(context.Background(), img, BuildOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", path).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	if out := debugfs(t, path, "cat /app/hello.txt"); !strings.Contains(out, "hello from /app") {
		t.Errorf("/app/hello.txt: %q", out)
	}
}

func TestSweepDeadBuildDirs(t *testing.T) {
	dir := t.TempDir()
	// A pid that cannot exist (above pid_max) stands for a dead builder.
	dead := filepath.Join(dir, buildPrefix+"2147483000-abc")
	alive, err := mkdirTempOwned(dir, buildPrefix)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "keep-me")
	for _, d := range []string{dead, other} {
		if err := os.MkdirAll(filepath.Join(d, "tree"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sweepDead(dir, buildPrefix)
	if exists(dead) {
		t.Error("dead builder's directory kept")
	}
	if !exists(alive) || !exists(other) {
		t.Error("live or unrelated directory removed")
	}
}
