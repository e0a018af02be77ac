package kerneltest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/kernel"
)

// cpioList returns `cpio -t -v` of an archive: one "mode links owner group size ... name" line
// per entry, as the real cpio tool reads it back.
func cpioList(t *testing.T, archive string) map[string]string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("cpio", "-t", "-v", "--quiet")
	cmd.Stdin = f
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	entries := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(l)
		name := fields[len(fields)-1]
		if i := slices.Index(fields, "->"); i > 0 {
			name = fields[i-1]
		}
		entries[name] = l
	}
	return entries
}

func TestInitramfs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "motd"), []byte("hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("motd", filepath.Join(src, "etc", "issue")); err != nil {
		t.Fatal(err)
	}
	r := Initramfs{
		Dir:     src,
		Files:   []File{{Path: "/usr/share/data", Data: []byte("data")}, {Path: "bin/cpio-copy", Source: "/bin/busybox"}},
		Init:    "echo hello\n",
		Busybox: true,
		Applets: []string{"sh", "ls"},
	}
	a, b := filepath.Join(dir, "a.cpio"), filepath.Join(dir, "b.cpio")
	if err := r.Write(a); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(b); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("the same inputs gave different archives")
	}
	if !bytes.HasPrefix(ab, []byte("070701")) {
		t.Errorf("not an uncompressed newc archive: starts with %q", ab[:6])
	}

	list := cpioList(t, a)
	for name, want := range map[string]string{
		"dev/console":     "crw------- ",
		"init":            "-rwxr-xr-x ",
		"bin/busybox":     "-rwxr-xr-x ",
		"bin/sh":          "lrwxrwxrwx ",
		"bin/ls":          "lrwxrwxrwx ",
		"bin/cpio-copy":   "-rwxr-xr-x ",
		"etc/motd":        "-rw------- ",
		"etc/issue":       "lrwxrwxrwx ",
		"usr/share/data":  "-rw-r--r-- ",
		"proc":            "drwxr-xr-x ",
		"sys":             "drwxr-xr-x ",
		"tmp":             "drwxr-xr-x ",
		"usr/share":       "drwxr-xr-x ",
		"dev":             "drwxr-xr-x ",
		"bin":             "drwxr-xr-x ",
		"etc":             "drwx",
		"usr":             "drwxr-xr-x ",
		"bin/busybox-not": "",
	} {
		got, ok := list[name]
		if want == "" {
			if ok {
				t.Errorf("%s: unexpected entry", name)
			}
			continue
		}
		if !ok || !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want mode %q", name, got, want)
			continue
		}
		if f := strings.Fields(got); f[2] != "root" || f[3] != "root" {
			t.Errorf("%s: owned by %s:%s, want root:root", name, f[2], f[3])
		}
	}
	if !strings.Contains(list["dev/console"], " 5, ") || !strings.Contains(list["dev/console"], " 1 ") {
		t.Errorf("/dev/console is not 5:1: %q", list["dev/console"])
	}
	if _, ok := list["bin/cat"]; ok {
		t.Error("an applet outside Applets was linked")
	}

	// The /init script got a #! line.
	x := filepath.Join(dir, "x")
	if err := os.Mkdir(x, 0o755); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(a)
	defer f.Close()
	cmd := exec.Command("cpio", "-i", "--quiet", "init")
	cmd.Dir, cmd.Stdin = x, f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v %s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(x, "init")); string(got) != "#!/bin/sh\necho hello\n" {
		t.Errorf("/init = %q", got)
	}
}

func TestInitramfsErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.cpio")
	for name, r := range map[string]Initramfs{
		"missing dir":    {Dir: filepath.Join(dir, "nope")},
		"missing source": {Files: []File{{Path: "x", Source: filepath.Join(dir, "nope")}}},
		"root path":      {Files: []File{{Path: "/", Data: []byte("x")}}},
	} {
		if err := r.Write(out); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a failed build left %s behind", name, out)
		}
	}
	// A path with .. stays inside the archive.
	r := Initramfs{Files: []File{{Path: "../../etc/evil", Data: []byte("x")}}}
	if err := r.Write(out); err != nil {
		t.Fatal(err)
	}
	if _, ok := cpioList(t, out)["etc/evil"]; !ok {
		t.Error("../../etc/evil was not confined to etc/evil")
	}

	old := BusyboxPath
	t.Cleanup(func() { BusyboxPath = old })
	BusyboxPath = "/bin/true" // dynamically linked on Debian
	if err := (Initramfs{Busybox: true}).Write(out + "2"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("a dynamic busybox must be refused: %v", err)
	}
}

func TestQemuArgs(t *testing.T) {
	q := Qemu{
		Kernel:  "/k",
		Initrd:  "/i",
		Cmdline: []string{"console=ttyS0", "quiet"},
		Accel:   KVM,
		Flavour: kernel.KVMPVM,
		CPUs:    2,
		Drives:  []Drive{{Path: "/a.img"}, {Path: "/b.img", ReadOnly: true}},
	}
	args, err := q.args()
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(args, " ")
	for _, want := range []string{
		"-M microvm,acpi=off", "-enable-kvm", "-cpu qemu64,-cx16,+xsaveerptr", "-smp 2", "-m 256M",
		"-no-reboot", "-kernel /k", "-initrd /i", "-append console=ttyS0 quiet",
		"-drive id=drive0,file=/a.img,format=raw,if=none -device virtio-blk-device,drive=drive0",
		"-drive id=drive1,file=/b.img,format=raw,if=none,readonly=on -device virtio-blk-device,drive=drive1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("args lack %q: %s", want, s)
		}
	}
	q.Flavour = kernel.Stock
	if args, _ := q.args(); !strings.Contains(strings.Join(args, " "), "-cpu host") {
		t.Errorf("stock under KVM: %v", args)
	}
	q.Accel = ""
	if args, _ := q.args(); !strings.Contains(strings.Join(args, " "), "-accel tcg") || slices.Contains(args, "-cpu") {
		t.Errorf("default accelerator: %v", args)
	}
	if _, err := (Qemu{}).args(); err == nil {
		t.Error("no kernel accepted")
	}
	if _, err := (Qemu{Kernel: "/k", Accel: "hvf"}).args(); err == nil {
		t.Error("unknown accelerator accepted")
	}
}

// TestQemuDeadline starts a real qemu that never runs the guest (-S: CPUs stopped, exactly
// the state qemu is left in after a KVM internal error) and checks that Run kills it at the
// deadline and says so.
func TestQemuDeadline(t *testing.T) {
	k := FlavourKernel(t, kernel.DetectFlavour()) // qemu loads it before it stops
	res, err := Qemu{Kernel: k, ExtraArgs: []string{"-S"}, Timeout: 2 * time.Second}.Run(context.Background())
	if !errors.Is(err, ErrDeadline) || !res.Killed || res.ExitCode != -1 {
		t.Fatalf("err=%v killed=%v exit=%d stderr=%s", err, res.Killed, res.ExitCode, res.Stderr)
	}
	if res.Elapsed < 2*time.Second || res.Elapsed > time.Minute {
		t.Errorf("killed after %v, deadline 2s", res.Elapsed)
	}

	if _, err := (Qemu{Kernel: k, Binary: "/nonexistent/qemu"}).Run(context.Background()); err == nil {
		t.Error("a missing qemu binary must be an error")
	}
}

func TestResultParsing(t *testing.T) {
	r := QemuResult{Console: "boot\n@@a 1\n@@b\nBEGIN\nx=1\ny=2\nEND\n@@a 2\n"}
	if got := r.Lines("@@a "); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("Lines: %q", got)
	}
	if got, ok := r.Between("BEGIN", "END"); !ok || got != "x=1\ny=2" {
		t.Errorf("Between: %q %v", got, ok)
	}
	if _, ok := r.Between("BEGIN", "NOPE"); ok {
		t.Error("Between without an end")
	}
}
