package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vmbench/runner/testimages"
)

func writeTestLayout(t *testing.T, names ...string) string {
	t.Helper()
	imgs := map[string]v1.Image{}
	for _, n := range names {
		img, err := testimages.Build(n)
		if err != nil {
			t.Fatal(err)
		}
		imgs[n] = img
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := testimages.WriteLayout(dir, imgs); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInspectPrintsDigestAndConfig(t *testing.T) {
	t.Setenv("RUNNER_CACHE_DIR", t.TempDir())
	dir := writeTestLayout(t, "workdir", "env")
	var stdout, stderr bytes.Buffer
	if code := execute([]string{"inspect", "--image", "oci:" + dir + ":workdir"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out inspectOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	img, _ := testimages.Build("workdir")
	want, _ := img.Digest()
	if out.Digest != want.String() {
		t.Errorf("digest = %s, want %s", out.Digest, want)
	}
	if out.Config.WorkingDir != "/app" || strings.Join(out.Argv, " ") != "pwd" || len(out.Layers) != 2 || out.Platform != "linux/amd64" {
		t.Errorf("unexpected output: %+v", out)
	}

	stdout.Reset()
	stderr.Reset()
	if code := execute([]string{"inspect", "--image", "oci:" + dir + ":missing"}, &stdout, &stderr); code != exitRunnerError {
		t.Errorf("missing tag: exit %d, want %d", code, exitRunnerError)
	}
	if !strings.Contains(stderr.String(), "image not found") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("missing tag: want one error line, got %q", stderr.String())
	}
}

func TestRootfsCommand(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skipf("mkfs.ext4 not installed: %v", err)
	}
	t.Setenv("RUNNER_CACHE_DIR", t.TempDir())
	dir := writeTestLayout(t, "basic")
	out := filepath.Join(t.TempDir(), "basic.ext4")
	var stdout, stderr bytes.Buffer
	args := []string{"rootfs", "--image", "oci:" + dir + ":basic", "-o", out, "--disk", "64", "--init", "none"}
	if code := execute(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if o, err := exec.Command("e2fsck", "-fn", out).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, o)
	}
	if o, err := exec.Command("debugfs", "-R", "cat /etc/group", out).Output(); err != nil || !strings.Contains(string(o), "bench:x:1000:") {
		t.Errorf("debugfs cat /etc/group: %v %q", err, o)
	}
	if !strings.Contains(stdout.String(), "ext4, 64.0 MiB") {
		t.Errorf("stdout = %q", stdout.String())
	}
	if code := execute([]string{"rootfs", "--image", "oci:" + dir + ":basic", "-o", out, "--format", "zfs"}, &stdout, &stderr); code != exitRunnerError {
		t.Errorf("bad format: exit %d", code)
	}
}
