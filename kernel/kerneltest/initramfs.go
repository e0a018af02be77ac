package kerneltest

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// File is one file to put into an initramfs: the contents of Source (a host file), or Data.
type File struct {
	Path   string      // path inside the archive, e.g. "bin/hello" or "/bin/hello"
	Source string      // host file to copy; if empty, Data is written
	Data   []byte      // contents when Source is empty
	Mode   fs.FileMode // permission bits; 0 means 0755 for Source, 0644 for Data
}

// Initramfs describes an uncompressed newc initramfs. The archive always contains the mount
// points /dev, /proc, /sys and /tmp, and /dev/console (character device 5:1), which the kernel
// opens as init's stdin/stdout/stderr.
type Initramfs struct {
	// Dir, when set, is a host directory whose whole tree becomes the archive's root
	// (regular files, directories and symlinks; anything else is an error).
	Dir string
	// Files are added after Dir; a file at the same path replaces Dir's.
	Files []File
	// Init, when set, is written as /init with mode 0755. A script without a "#!" line gets
	// "#!/bin/sh" (which needs Busybox or a shell in Dir).
	Init string
	// Busybox adds the host's static busybox as /bin/busybox, plus a /bin link for every
	// applet in Applets.
	Busybox bool
	// Applets are the busybox applets to link in /bin; nil means all of them (busybox --list).
	// Each link is one more file for the guest kernel to create at boot, which is noticeable
	// under kvm-pvm's emulated kernel; pass a short list (e.g. []string{"sh"}) there.
	Applets []string
}

// BusyboxPath is the static busybox the initramfs builder uses (Debian's busybox-static).
var BusyboxPath = "/bin/busybox"

// fixedMtime is the modification time of every archived file, so that the same inputs give
// the same archive bytes (cpio --reproducible fixes inode and device numbers).
var fixedMtime = time.Unix(0, 0)

// Write builds the archive at out (written to a temporary file and renamed into place).
func (r Initramfs) Write(out string) error {
	stage, err := os.MkdirTemp("", "initramfs-")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := r.stage(stage); err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	if err := writeCpio(stage, out); err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	return nil
}

// stage lays the archive's tree out in dir.
func (r Initramfs) stage(dir string) error {
	if r.Dir != "" {
		if err := copyTree(r.Dir, dir); err != nil {
			return err
		}
	}
	if r.Busybox {
		if err := stageBusybox(dir, r.Applets); err != nil {
			return err
		}
	}
	for _, f := range r.Files {
		if err := stageFile(dir, f); err != nil {
			return err
		}
	}
	if r.Init != "" {
		script := r.Init
		if !strings.HasPrefix(script, "#!") {
			script = "#!/bin/sh\n" + script
		}
		if err := stageFile(dir, File{Path: "init", Data: []byte(script), Mode: 0o755}); err != nil {
			return err
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	console := filepath.Join(dir, "dev", "console")
	_ = os.Remove(console)
	if err := unix.Mknod(console, unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))); err != nil {
		return fmt.Errorf("mknod /dev/console (needs root or CAP_MKNOD): %w", err)
	}
	return nil
}

// archivePath turns an archive path into a clean path relative to the root, refusing escapes.
func archivePath(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" {
		return "", fmt.Errorf("file path %q: names the root", p)
	}
	return c[1:], nil
}

func stageFile(dir string, f File) error {
	rel, err := archivePath(f.Path)
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	mode := f.Mode.Perm()
	if f.Source != "" {
		if mode == 0 {
			mode = 0o755
		}
		return copyFile(f.Source, dst, mode)
	}
	if mode == 0 {
		mode = 0o644
	}
	if err := os.WriteFile(dst, f.Data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode) // WriteFile's mode is filtered by the umask
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// copyTree copies src's regular files, directories and symlinks into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_ = os.Remove(target)
			return os.Symlink(link, target)
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, info.Mode().Type())
		}
	})
}

// stageBusybox installs a static busybox and its applet links.
func stageBusybox(dir string, applets []string) error {
	if err := checkStatic(BusyboxPath); err != nil {
		return err
	}
	if err := stageFile(dir, File{Path: "bin/busybox", Source: BusyboxPath, Mode: 0o755}); err != nil {
		return err
	}
	if applets == nil {
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			return fmt.Errorf("%s --list: %w", BusyboxPath, err)
		}
		applets = strings.Fields(string(out))
	}
	for _, a := range applets {
		if a == "busybox" || a == "" || strings.ContainsAny(a, "/") {
			continue
		}
		link := filepath.Join(dir, "bin", a)
		_ = os.Remove(link)
		if err := os.Symlink("busybox", link); err != nil {
			return err
		}
	}
	return nil
}

// checkStatic fails unless path is an ELF executable without a program interpreter: the
// initramfs has no dynamic loader or libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w (install busybox-static: scripts/install-deps.sh base)", path, err)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the initramfs needs a static busybox (busybox-static)", path)
		}
	}
	return nil
}

// writeCpio archives stage's tree as an uncompressed newc cpio at out, with the real cpio
// tool: all files owned by root (-R 0:0), fixed times, sorted names, --reproducible.
func writeCpio(stage, out string) error {
	var names []string
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == stage {
			return nil
		}
		rel, err := filepath.Rel(stage, p)
		if err != nil {
			return err
		}
		names = append(names, rel)
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{
			unix.NsecToTimespec(fixedMtime.UnixNano()), unix.NsecToTimespec(fixedMtime.UnixNano()),
		}, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	tmp, err := os.CreateTemp(filepath.Dir(out), ".initramfs-*.cpio")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename this is a no-op
	var stderr bytes.Buffer
	cmd := exec.Command("cpio", "-o", "-H", "newc", "-R", "0:0", "--reproducible", "--quiet")
	cmd.Dir = stage
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	cmd.Stdout = tmp
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		tmp.Close()
		return fmt.Errorf("cpio: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// WriteBusyboxInitramfs writes an initramfs with busybox (all applets), the tree of dir
// (optional, "" for none) and initScript as /init.
func WriteBusyboxInitramfs(out, dir, initScript string) error {
	return Initramfs{Dir: dir, Init: initScript, Busybox: true}.Write(out)
}

// BusyboxInitramfs is WriteBusyboxInitramfs into t's temporary directory; it returns the
// archive's path and fails the test on error.
func BusyboxInitramfs(t testing.TB, dir, initScript string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := WriteBusyboxInitramfs(out, dir, initScript); err != nil {
		t.Fatal(err)
	}
	return out
}
