package guest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmbench/runner/protocol"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, mode os.FileMode) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("a/tool", 0o644) // not executable: remembered, skipped
	write("b/tool", 0o755)
	write("a/only-plain", 0o644)
	write("rel/x", 0o755)
	os.MkdirAll(filepath.Join(dir, "c/adir"), 0o755)
	path := filepath.Join(dir, "a") + ":" + filepath.Join(dir, "c") + ":" + filepath.Join(dir, "b") + ":rel"

	tests := []struct {
		name string
		want string
		kind protocol.FailureKind
	}{
		{"tool", filepath.Join(dir, "b/tool"), protocol.FailureNone},
		{"only-plain", "", protocol.FailureCannotInvoke},
		{"adir", "", protocol.FailureNotFound}, // directories are skipped
		{"missing", "", protocol.FailureNotFound},
		{"x", "rel/x", protocol.FailureNone},               // relative PATH entry, resolved against the workdir
		{"./anything", "./anything", protocol.FailureNone}, // a path is used as is
		{"/abs/path", "/abs/path", protocol.FailureNone},
	}
	for _, tt := range tests {
		got, err := lookPath(tt.name, path, dir)
		var f *Failure
		switch {
		case tt.kind == protocol.FailureNone && (err != nil || got != tt.want):
			t.Errorf("lookPath(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		case tt.kind != protocol.FailureNone && (!errors.As(err, &f) || f.Kind != tt.kind):
			t.Errorf("lookPath(%q) = %q, %v; want a %v failure", tt.name, got, err, tt.kind)
		}
	}
}

func TestPrepareFailures(t *testing.T) {
	root := testRoot(t)
	tests := []struct {
		name string
		cfg  protocol.RunConfig
		kind protocol.FailureKind
	}{
		{"unknown user", protocol.RunConfig{Argv: []string{"true"}, WorkDir: "/", User: "nobody"}, protocol.FailureSetup},
		{"unknown group", protocol.RunConfig{Argv: []string{"true"}, WorkDir: "/", User: "app:nogroup"}, protocol.FailureSetup},
		{"relative workdir", protocol.RunConfig{Argv: []string{"true"}, WorkDir: "rel"}, protocol.FailureSetup},
		{"empty argv", protocol.RunConfig{WorkDir: "/"}, protocol.FailureSetup},
		{"not in PATH", protocol.RunConfig{Argv: []string{"no-such-command-xyz"}, WorkDir: "/"}, protocol.FailureNotFound},
		{"PATH from the image", protocol.RunConfig{Argv: []string{"sh"}, WorkDir: "/", Env: []string{"PATH=/nonexistent"}}, protocol.FailureNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Prepare(&tt.cfg, root)
			var f *Failure
			if !errors.As(err, &f) || f.Kind != tt.kind {
				t.Fatalf("got %v, want a %v failure", err, tt.kind)
			}
		})
	}
}

// The working directory is created when missing, as docker run does.
func TestPrepareCreatesWorkdir(t *testing.T) {
	wd := filepath.Join(t.TempDir(), "app", "deep")
	cmd, err := Prepare(&protocol.RunConfig{Argv: []string{"sh"}, WorkDir: wd}, testRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(wd)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
		t.Fatalf("workdir: %v, %v", st, err)
	}
	if cmd.Dir != wd || cmd.Path != "/usr/bin/sh" && cmd.Path != "/bin/sh" {
		t.Fatalf("command %+v", cmd)
	}
}
