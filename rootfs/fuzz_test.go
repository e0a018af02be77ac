package rootfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzFlatten feeds two arbitrary byte strings as consecutive uncompressed layers. Whatever
// they hold, Flatten must not panic and must not touch anything outside its root.
func FuzzFlatten(f *testing.F) {
	needRoot(f)
	for _, s := range seedLayers(f) {
		f.Add(s[0], s[1])
	}
	// Work in memory when /dev/shm is there: creating files on this host's disk costs ~1.7 ms
	// each, which would make fuzzing crawl.
	scratch := ""
	if st, err := os.Stat(shmDir); err == nil && st.IsDir() {
		scratch = shmDir
	}
	f.Fuzz(func(t *testing.T, l1, l2 []byte) {
		base, err := os.MkdirTemp(scratch, "fuzzflatten-*")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(base)
		outside := filepath.Join(base, "outside")
		if err := os.Mkdir(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(base, "root")
		err = FlattenReader(context.Background(), readers(l1, l2), root, Limits{MaxBytes: 1 << 20, MaxEntries: 1000})
		if err != nil && !strings.HasPrefix(err.Error(), "rootfs: ") {
			t.Errorf("error without context: %v", err)
		}
		ents, _ := os.ReadDir(base)
		if len(ents) != 2 {
			t.Fatalf("entries next to the root: %v", ents)
		}
		ents, _ = os.ReadDir(outside)
		if len(ents) != 1 {
			t.Fatalf("outside changed: %v", ents)
		}
		if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "secret" {
			t.Fatalf("outside file changed")
		}
	})
}

// seedLayers are the fuzz seeds: ordinary layers, every hostile case and the edge cases.
func seedLayers(tb testing.TB) [][2][]byte {
	empty := newLayer(tb).bytes()
	var out [][2][]byte
	t, ok := tb.(*testing.T)
	if !ok {
		t = &testing.T{}
	}
	for _, hc := range hostileCases() {
		ls := hc.layers(t, "")
		if len(ls) == 1 {
			ls = append(ls, empty)
		}
		out = append(out, [2][]byte{ls[0], ls[1]})
	}
	base := newLayer(tb).dir("etc/", 0o755).file("etc/passwd", "root:x:0:0::/root:/bin/sh\n").
		symlink("bin/sh", "busybox").hardlink("bin/sh2", "etc/passwd").file("d/old", "o").file("d/sub/x", "x").bytes()
	upper := newLayer(tb).file(".wh.etc", "").file("d/new", "n").file("d/.wh..wh..opq", "").hardlink("early", "late").file("late", "l").bytes()
	out = append(out, [2][]byte{base, upper}, [2][]byte{empty, empty}, [2][]byte{[]byte("not a tar"), nil})
	return out
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzFlatten when ROOTFS_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ROOTFS_WRITE_SEEDS") != "1" {
		t.Skip("set ROOTFS_WRITE_SEEDS=1 to regenerate the committed fuzz seeds")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzFlatten")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seedLayers(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", s[0], s[1])
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
