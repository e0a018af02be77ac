package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fixture lays out a cache like the real writers do and ages each entry.
type fixture struct {
	root string
	t    *testing.T
}

func newFixture(t *testing.T) *fixture {
	return &fixture{root: t.TempDir(), t: t}
}

// file writes root/rel with n bytes, last used age ago.
func (f *fixture) file(rel string, n int, age time.Duration) string {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, n), 0o444); err != nil {
		f.t.Fatal(err)
	}
	at := time.Now().Add(-age)
	if err := os.Chtimes(p, at, at); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) link(rel, target string) {
	f.t.Helper()
	if err := os.Symlink(target, filepath.Join(f.root, rel)); err != nil {
		f.t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

const day = 24 * time.Hour

func TestScanAndPruneByAge(t *testing.T) {
	f := newFixture(t)
	oldBlob := f.file("oci/blobs/sha256/"+hex64('a'), 4096, 10*day)
	newBlob := f.file("oci/blobs/sha256/"+hex64('b'), 4096, time.Hour)
	oldImg := f.file("rootfs/aaaa-1111.ext4", 8192, 10*day)
	oldLock := f.file("rootfs/aaaa-1111.ext4.lock", 0, 10*day)
	newImg := f.file("rootfs/bbbb-2222.squashfs", 8192, time.Minute)
	building := f.file("rootfs/.build-1-x/image", 8192, 10*day) // the builder's, not an entry
	curK := f.file("kernel/kvm-pvm/1111111111111111/vmlinux", 1<<16, 20*day)
	oldK := f.file("kernel/kvm-pvm/2222222222222222/vmlinux", 1<<16, 30*day)
	f.link("kernel/kvm-pvm/vmlinux", "1111111111111111/vmlinux")
	tree := f.file("kernel/build/kvm-pvm-3333333333333333/Makefile", 100, 10*day)

	entries, err := Scan(f.root)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	for _, p := range []string{oldBlob, newBlob, oldImg, newImg} {
		e, ok := byPath[p]
		if !ok {
			t.Fatalf("Scan misses %s; got %v", p, entries)
		}
		if e.Bytes < 4096 {
			t.Errorf("%s: Bytes = %d, want the allocated size", p, e.Bytes)
		}
	}
	if e := byPath[filepath.Dir(curK)]; !e.Current || e.Area != AreaKernel {
		t.Errorf("current kernel build: %+v", e)
	}
	if e := byPath[filepath.Dir(oldK)]; e.Current {
		t.Errorf("old kernel build marked current: %+v", e)
	}
	if e := byPath[filepath.Dir(tree)]; !e.Tree {
		t.Errorf("leftover tree: %+v", e)
	}
	if _, ok := byPath[building]; ok || len(entries) != 7 {
		t.Errorf("Scan = %d entries (want 7, no build directories): %v", len(entries), entries)
	}

	// Dry run: reports, removes nothing.
	removed, err := Prune(context.Background(), f.root, PruneOptions{OlderThan: 7 * day, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(removed); !slices.Equal(got, sorted(oldBlob, oldImg)) || !exists(oldBlob) || !exists(oldImg) {
		t.Fatalf("dry run removed %v", got)
	}

	// Without --kernels no kernel goes; old blobs and images go with their lock files.
	removed, err = Prune(context.Background(), f.root, PruneOptions{OlderThan: 7 * day})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(removed); !slices.Equal(got, sorted(oldBlob, oldImg)) {
		t.Fatalf("removed %v", got)
	}
	for _, p := range []string{oldBlob, oldImg, oldLock} {
		if exists(p) {
			t.Errorf("%s still there", p)
		}
	}
	for _, p := range []string{newBlob, newImg, building, curK, oldK, tree} {
		if !exists(p) {
			t.Errorf("%s removed", p)
		}
	}

	// With kernels: the old build and the tree go, the current build stays whatever its age.
	removed, err = Prune(context.Background(), f.root, PruneOptions{OlderThan: 7 * day, Kernels: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(removed); !slices.Equal(got, sorted(filepath.Dir(oldK), filepath.Dir(tree))) {
		t.Fatalf("removed %v", got)
	}
	if !exists(curK) || exists(oldK) || exists(filepath.Dir(tree)) {
		t.Error("kernel prune removed the wrong builds")
	}

	// OlderThan 0 removes every blob and image, however fresh.
	if _, err := Prune(context.Background(), f.root, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if exists(newBlob) || exists(newImg) || !exists(curK) {
		t.Error("prune of everything: wrong result")
	}
}

// An image whose builder holds its lock, and a kernel tree whose build holds the flavour's
// lock, are in use: prune leaves them.
func TestPruneSkipsEntriesInUse(t *testing.T) {
	f := newFixture(t)
	img := f.file("rootfs/aaaa-1111.ext4", 100, day)
	f.file("rootfs/aaaa-1111.ext4.lock", 0, day)
	tree := f.file("kernel/build/stock-4444444444444444/Makefile", 100, day)
	f.file("kernel/stock/.lock", 0, day)
	release := holdFlock(t, img+".lock")
	releaseK := holdFlock(t, filepath.Join(f.root, "kernel/stock/.lock"))

	removed, err := Prune(context.Background(), f.root, PruneOptions{Kernels: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 0 || !exists(img) || !exists(tree) {
		t.Fatalf("removed %v while in use", paths(removed))
	}
	release()
	releaseK()
	removed, err = Prune(context.Background(), f.root, PruneOptions{Kernels: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || exists(img) || exists(filepath.Dir(tree)) {
		t.Fatalf("after release: removed %v", paths(removed))
	}
}

// A run holding the cache shared makes a prune wait, and fail with ErrBusy when the wait
// ends first; once released, the prune goes ahead.
func TestPruneWaitsForRuns(t *testing.T) {
	f := newFixture(t)
	img := f.file("rootfs/aaaa-1111.ext4", 100, day)
	run1, err := LockShared(context.Background(), f.root)
	if err != nil {
		t.Fatal(err)
	}
	run2, err := LockShared(context.Background(), f.root) // runs share the lock
	if err != nil {
		t.Fatal(err)
	}
	_, err = Prune(context.Background(), f.root, PruneOptions{Wait: 100 * time.Millisecond})
	if !errors.Is(err, ErrBusy) || !exists(img) {
		t.Fatalf("prune during runs: err %v, image kept %v", err, exists(img))
	}
	run1.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := Prune(context.Background(), f.root, PruneOptions{Wait: 10 * time.Second})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	run2.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if exists(img) {
		t.Error("image kept after the runs released the cache")
	}
	run2.Unlock() // idempotent
}

func TestTouchMarksUse(t *testing.T) {
	f := newFixture(t)
	p := f.file("rootfs/aaaa-1111.ext4", 10, 10*day)
	Touch(p)
	if removed, err := Prune(context.Background(), f.root, PruneOptions{OlderThan: day}); err != nil || len(removed) != 0 {
		t.Fatalf("a touched image was pruned: %v %v", removed, err)
	}
}

func TestDirRule(t *testing.T) {
	t.Setenv("RUNNER_CACHE_DIR", "/x/cache")
	if Dir() != "/x/cache" {
		t.Errorf("Dir = %s", Dir())
	}
	t.Setenv("RUNNER_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/x/xdg")
	if Dir() != "/x/xdg/vmbench" {
		t.Errorf("Dir = %s", Dir())
	}
}

func holdFlock(t *testing.T, p string) (release func()) {
	t.Helper()
	fd, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(fd.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { fd.Close() }
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func paths(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	slices.Sort(out)
	return out
}

func sorted(ps ...string) []string { slices.Sort(ps); return ps }
