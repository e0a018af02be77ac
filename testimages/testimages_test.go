package testimages_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vmbench/runner/oci"
	"github.com/vmbench/runner/rootfs"
	"github.com/vmbench/runner/testimages"
	"github.com/vmbench/runner/testimages/testregistry"
)

// The spec's scenario images must all exist.
func TestNamesCoverSpec(t *testing.T) {
	spec := []string{"basic", "env", "workdir", "output", "exit", "timeout", "large", "write", "stderr",
		"cpu", "seccomp", "caps", "network", "cpu-nopipe", "large-vm"}
	for _, n := range spec {
		if !slices.Contains(testimages.Names(), n) {
			t.Errorf("missing image %q", n)
		}
	}
	if _, err := testimages.Build("nope"); err == nil {
		t.Error("unknown image built")
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	for _, n := range []string{"basic", "workdir"} {
		a, err := testimages.Build(n)
		if err != nil {
			t.Fatal(err)
		}
		b, err := testimages.Build(n)
		if err != nil {
			t.Fatal(err)
		}
		da, _ := a.Digest()
		db, _ := b.Digest()
		if da != db {
			t.Errorf("%s: digests differ: %s %s", n, da, db)
		}
		cf, _ := a.ConfigFile()
		if !cf.Created.Time.Equal(testimages.Epoch) || cf.OS != "linux" || cf.Architecture != "amd64" {
			t.Errorf("%s: config %+v", n, cf)
		}
	}
}

// The images run their commands: flatten it and run Cmd in a chroot with the image's Env
// and WorkingDir (we are root, busybox is static). Checks links, passwd and configs work.
func TestImagesRunInChroot(t *testing.T) {
	if syscall.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	cases := map[string]struct {
		stdout, stderr string
		exit           int
	}{
		"basic":   {stdout: "hello from vm\n"},
		"env":     {stdout: "test_value\n"},
		"workdir": {stdout: "/app\n"},
		"exit":    {exit: 42},
		"write":   {stdout: "test\n"},
		"stderr":  {stdout: "stdout\n", stderr: "stderr\n"},
		"output":  {}, // checked below: /tmp/output.json
	}
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	imgs, err := testimages.BuildAll()
	if err != nil {
		t.Fatal(err)
	}
	if err := testimages.WriteLayout(layout, imgs); err != nil {
		t.Fatal(err)
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			img, err := oci.Resolve(context.Background(), "oci:"+layout+":"+name, oci.Options{CacheDir: filepath.Join(dir, "cache")})
			if err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(t.TempDir(), "root")
			if err := rootfs.Flatten(context.Background(), img.Image, root, rootfs.Limits{}); err != nil {
				t.Fatal(err)
			}
			cfg, err := img.Config.Apply(oci.Overrides{})
			if err != nil {
				t.Fatal(err)
			}
			argv := cfg.Argv()
			// Resolve argv[0] on the image's PATH like a shell would.
			if !strings.Contains(argv[0], "/") {
				argv[0] = "/bin/" + argv[0]
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = cfg.Env
			cmd.Dir = cfg.WorkingDir
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
			var so, se bytes.Buffer
			cmd.Stdout, cmd.Stderr = &so, &se
			err = cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("run %q: %v (stderr %q)", argv, err, se.String())
			}
			if code != want.exit {
				t.Errorf("exit = %d, want %d (stderr %q)", code, want.exit, se.String())
			}
			if name == "output" {
				b, err := os.ReadFile(filepath.Join(root, "tmp/output.json"))
				if err != nil || string(b) != "{\"result\": 42}\n" {
					t.Errorf("/tmp/output.json = %q, %v", b, err)
				}
			}
			if so.String() != want.stdout || se.String() != want.stderr {
				t.Errorf("stdout %q stderr %q, want %q %q", so.String(), se.String(), want.stdout, want.stderr)
			}
		})
	}
}

func TestPushAndPull(t *testing.T) {
	reg, err := testregistry.Start(context.Background(), testregistry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	img, err := testimages.Build("env")
	if err != nil {
		t.Fatal(err)
	}
	d, err := testimages.Push(reg.Host+"/test:env", img, testimages.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := oci.Resolve(context.Background(), reg.Host+"/test:env", oci.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != d || !slices.Contains(got.Config.Env, "MY_VAR=test_value") {
		t.Errorf("pulled %s %q, pushed %s", got.Digest, got.Config.Env, d)
	}
}
