package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func flatten(t *testing.T, layers ...[]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if err := FlattenReader(context.Background(), readers(layers...), dir, Limits{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFlattenEntryTypesAndMetadata(t *testing.T) {
	needRoot(t)
	l := newLayer(t).
		dir("bin/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755, Uid: 0, Gid: 0}, []byte("suid")).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "home/u/", Mode: 0o750, Uid: 1000, Gid: 1001}, nil).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "home/u/f", Mode: 0o640, Uid: 1000, Gid: 1001,
			PAXRecords: map[string]string{"SCHILY.xattr.user.bench": "yes"}}, []byte("data")).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}, nil).
		hardlink("bin/early", "bin/late"). // link before its target
		file("bin/late", "late body").
		hardlink("bin/su2", "bin/su").
		symlink("bin/sh", "busybox").
		symlink("etc", "/private/etc").
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620}, nil).
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil).
		add(&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/vda", Mode: 0o660, Devmajor: 254, Devminor: 0, Gid: 6}, nil).
		bytes()
	root := flatten(t, l)

	su := lstat(t, filepath.Join(root, "bin/su"))
	if su.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/su mode = %o, want 4755", su.Mode&0o7777)
	}
	if su.Mtim.Sec != testTime.Unix() {
		t.Errorf("bin/su mtime = %d, want %d", su.Mtim.Sec, testTime.Unix())
	}
	if su.Nlink != 2 {
		t.Errorf("bin/su nlink = %d, want 2 (bin/su2)", su.Nlink)
	}
	if st := lstat(t, filepath.Join(root, "bin/su2")); st.Ino != su.Ino {
		t.Errorf("bin/su2 is not a hard link of bin/su")
	}
	early, late := lstat(t, filepath.Join(root, "bin/early")), lstat(t, filepath.Join(root, "bin/late"))
	if early.Ino != late.Ino || readFile(t, filepath.Join(root, "bin/early")) != "late body" {
		t.Errorf("link before target: bin/early not linked to bin/late")
	}
	u := lstat(t, filepath.Join(root, "home/u"))
	if u.Uid != 1000 || u.Gid != 1001 || u.Mode&0o7777 != 0o750 {
		t.Errorf("home/u = %d:%d %o", u.Uid, u.Gid, u.Mode&0o7777)
	}
	if u.Mtim.Sec != testTime.Unix() {
		t.Errorf("home/u mtime %d changed by its children, want %d", u.Mtim.Sec, testTime.Unix())
	}
	f := lstat(t, filepath.Join(root, "home/u/f"))
	if f.Uid != 1000 || f.Gid != 1001 || f.Mode&0o7777 != 0o640 {
		t.Errorf("home/u/f = %d:%d %o", f.Uid, f.Gid, f.Mode&0o7777)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(root, "home/u/f"), "user.bench", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("xattr user.bench = %q, %v", buf[:n], err)
	}
	if st := lstat(t, filepath.Join(root, "tmp")); st.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode = %o", st.Mode&0o7777)
	}
	if target, _ := os.Readlink(filepath.Join(root, "bin/sh")); target != "busybox" {
		t.Errorf("bin/sh -> %q", target)
	}
	if target, _ := os.Readlink(filepath.Join(root, "etc")); target != "/private/etc" {
		t.Errorf("etc -> %q", target)
	}
	if st := lstat(t, filepath.Join(root, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o620 {
		t.Errorf("run/fifo mode = %o", st.Mode)
	}
	if st := lstat(t, filepath.Join(root, "dev/null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null = %o %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if st := lstat(t, filepath.Join(root, "dev/vda")); st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != 254 || st.Gid != 6 {
		t.Errorf("dev/vda = %o %d gid %d", st.Mode, unix.Major(st.Rdev), st.Gid)
	}
}

func TestFlattenWhiteouts(t *testing.T) {
	needRoot(t)
	l1 := newLayer(t).
		file("a/x", "x").file("a/y", "y").file("b/inner", "i").file("c", "c").
		file("d/old", "old").file("d/sub/x", "x").file("keep", "k").
		bytes()
	l2 := newLayer(t).
		file("a/.wh.x", "").
		file(".wh.b", "").
		file(".wh.missing", ""). // whiteout of something absent: fine
		file("c", "new c").
		file("d/new", "new"). // before the opaque marker: must survive it
		file("d/.wh..wh..opq", "").
		file("d/sub/y", "y").
		bytes()
	root := flatten(t, l1, l2)
	for p, want := range map[string]bool{
		"a/x": false, "a/y": true, "b": false, "c": true, "keep": true,
		"d/old": false, "d/sub/x": false, "d/new": true, "d/sub/y": true,
		"a/.wh.x": false, ".wh.b": false, "d/.wh..wh..opq": false,
	} {
		if exists(filepath.Join(root, p)) != want {
			t.Errorf("%s exists = %v, want %v", p, !want, want)
		}
	}
	if got := readFile(t, filepath.Join(root, "c")); got != "new c" {
		t.Errorf("c = %q", got)
	}
}

func TestFlattenReplacements(t *testing.T) {
	needRoot(t)
	l1 := newLayer(t).
		file("f2d", "file").
		dir("d2f/", 0o755).file("d2f/child", "c").
		symlink("link", "/target").
		file("target", "original").
		dir("merge/", 0o700).file("merge/lower", "l").
		bytes()
	l2 := newLayer(t).
		dir("f2d/", 0o755).
		file("d2f", "now a file").
		file("link", "replaces the symlink"). // not written through to /target
		dir("merge/", 0o755).file("merge/upper", "u").
		bytes()
	root := flatten(t, l1, l2)
	if st := lstat(t, filepath.Join(root, "f2d")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("f2d is not a directory")
	}
	if readFile(t, filepath.Join(root, "d2f")) != "now a file" {
		t.Errorf("d2f not replaced by a file")
	}
	if st := lstat(t, filepath.Join(root, "link")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("link is still a symlink")
	}
	if readFile(t, filepath.Join(root, "target")) != "original" {
		t.Errorf("writing link wrote through the old symlink")
	}
	if !exists(filepath.Join(root, "merge/lower")) || !exists(filepath.Join(root, "merge/upper")) {
		t.Errorf("directories did not merge")
	}
	if st := lstat(t, filepath.Join(root, "merge")); st.Mode&0o777 != 0o755 {
		t.Errorf("merge mode = %o, want the upper layer's 755", st.Mode&0o777)
	}
}

func TestFlattenAbsoluteNamesAndInRootSymlinks(t *testing.T) {
	needRoot(t)
	l := newLayer(t).
		file("/etc/abs", "absolute name").
		dir("real/", 0o755).
		symlink("abslink", "/real"). // absolute target: resolved at the image root
		symlink("rellink", "real/../real").
		file("abslink/via-abs", "1").
		file("rellink/via-rel", "2").
		symlink("usr/lib/x", "../../real"). // climbs to the root exactly: allowed
		file("usr/lib/x/via-climb", "3").
		bytes()
	root := flatten(t, l)
	for _, p := range []string{"etc/abs", "real/via-abs", "real/via-rel", "real/via-climb"} {
		if !exists(filepath.Join(root, p)) {
			t.Errorf("%s missing", p)
		}
	}
}

func TestFlattenRootEntryAndDotSlash(t *testing.T) {
	needRoot(t)
	l := newLayer(t).dir("./", 0o700).file("./etc/hosts", "h").bytes()
	root := flatten(t, l)
	if !exists(filepath.Join(root, "etc/hosts")) {
		t.Errorf("./etc/hosts not extracted")
	}
}

func TestFlattenRejectsBadEntries(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		layer func(*layerTar) *layerTar
		want  error
	}{
		{"hard link to directory", func(l *layerTar) *layerTar { return l.dir("d/", 0o755).hardlink("hl", "d") }, ErrInvalidEntry},
		{"hard link to nothing", func(l *layerTar) *layerTar { return l.hardlink("hl", "nowhere") }, ErrInvalidEntry},
		{"whiteout of dot", func(l *layerTar) *layerTar { return l.file(".wh..", "") }, ErrInvalidEntry},
		{"symlink loop", func(l *layerTar) *layerTar { return l.symlink("a", "b").symlink("b", "a").file("a/x", "") }, unix.ELOOP},
		{"parent is a file", func(l *layerTar) *layerTar { return l.file("f", "").file("f/x", "") }, unix.ENOTDIR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "root")
			err := FlattenReader(context.Background(), readers(tc.layer(newLayer(t)).bytes()), dir, Limits{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "layer 0") || !strings.Contains(err.Error(), "entry ") {
				t.Errorf("error does not name layer and entry: %v", err)
			}
		})
	}
}

func TestFlattenNeedsEmptyDir(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
	if err := Flatten(context.Background(), nil, dir, Limits{}); err == nil {
		t.Error("Flatten into a non-empty directory (or nil image) accepted")
	}
}
