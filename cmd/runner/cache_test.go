package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmbench/runner/cache"
)

// runner cache du / prune over a cache that runner rootfs filled, including the last-use
// refresh of a cache hit.
func TestCacheDuAndPrune(t *testing.T) {
	root := t.TempDir()
	t.Setenv("RUNNER_CACHE_DIR", root)
	dir := writeTestLayout(t, "basic")
	cli := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := execute(args, &stdout, &stderr); code != 0 {
			t.Fatalf("runner %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
		}
		return stdout.String()
	}
	du := func() (n int, bytes int64) {
		t.Helper()
		var out struct {
			Dir   string      `json:"dir"`
			Areas []areaUsage `json:"areas"`
		}
		if err := json.Unmarshal([]byte(cli("cache", "du", "--json")), &out); err != nil {
			t.Fatal(err)
		}
		if out.Dir != root {
			t.Fatalf("du reports %s, want %s", out.Dir, root)
		}
		for _, a := range out.Areas {
			if a.Area == cache.AreaRootfs {
				return a.Entries, a.Bytes
			}
		}
		t.Fatalf("no rootfs area in %+v", out.Areas)
		return 0, 0
	}
	build := func() {
		cli("rootfs", "--image", "oci:"+dir+":basic", "--init", "none", "-o", filepath.Join(t.TempDir(), "img"))
	}

	build()
	if n, b := du(); n != 1 || b == 0 {
		t.Fatalf("after one build: %d images, %d bytes", n, b)
	}
	if out := cli("cache", "du"); !strings.Contains(out, "rootfs") || !strings.Contains(out, root) {
		t.Errorf("du table:\n%s", out)
	}

	// Age the image, then hit the cache again: the hit counts as a use.
	imgs, _ := filepath.Glob(filepath.Join(root, "rootfs", "*.ext4"))
	if len(imgs) != 1 {
		t.Fatalf("images: %v", imgs)
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(imgs[0], old, old); err != nil {
		t.Fatal(err)
	}
	build()
	if out := cli("cache", "prune", "--older-than", "1h"); !strings.Contains(out, "removed 0 entries") {
		t.Errorf("prune of a just-used image:\n%s", out)
	}
	if out := cli("cache", "prune", "--dry-run"); !strings.Contains(out, "would remove 1 entries") {
		t.Errorf("dry run:\n%s", out)
	}
	if n, _ := du(); n != 1 {
		t.Fatal("dry run removed the image")
	}
	if out := cli("cache", "prune"); !strings.Contains(out, "removed rootfs "+imgs[0]) {
		t.Errorf("prune:\n%s", out)
	}
	if n, _ := du(); n != 0 {
		t.Fatalf("%d images left after prune", n)
	}
	build() // and the next build makes it again
	if n, _ := du(); n != 1 {
		t.Fatalf("rebuild: %d images", n)
	}
}

func TestCachePruneRejectsNegativeAge(t *testing.T) {
	t.Setenv("RUNNER_CACHE_DIR", t.TempDir())
	var stdout, stderr bytes.Buffer
	if code := execute([]string{"cache", "prune", "--older-than", "-1h"}, &stdout, &stderr); code != exitRunnerError {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr.String(), "--older-than") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// A prune while a run holds the cache gives up after --wait with one clear line.
func TestCachePruneBusy(t *testing.T) {
	root := t.TempDir()
	t.Setenv("RUNNER_CACHE_DIR", root)
	l, err := cache.LockShared(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	var stdout, stderr bytes.Buffer
	if code := execute([]string{"cache", "prune", "--wait", "50ms"}, &stdout, &stderr); code != exitRunnerError {
		t.Fatalf("exit %d", code)
	}
	if got := stderr.String(); !strings.Contains(got, "in use") || !strings.Contains(got, "--wait") || strings.Count(got, "\n") != 1 {
		t.Errorf("stderr: %q", got)
	}
}
