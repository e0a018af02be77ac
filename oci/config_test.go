package oci

import (
	"slices"
	"testing"
)

func TestConfigApply(t *testing.T) {
	img := Config{
		Entrypoint: []string{"/entry"},
		Cmd:        []string{"default", "args"},
		Env:        []string{"PATH=/bin", "A=1", "B=2"},
		User:       "1000",
	}
	tests := []struct {
		name    string
		base    Config
		o       Overrides
		argv    []string
		env     []string
		workdir string
		user    string
	}{
		{name: "no overrides", base: img, argv: []string{"/entry", "default", "args"}, env: img.Env, workdir: "/", user: "1000"},
		{name: "cmd replaces cmd", base: img, o: Overrides{Cmd: []string{"x"}, CmdSet: true},
			argv: []string{"/entry", "x"}, env: img.Env, workdir: "/", user: "1000"},
		{name: "entrypoint clears image cmd", base: img, o: Overrides{Entrypoint: []string{"/bin/sh"}, EntrypointSet: true},
			argv: []string{"/bin/sh"}, env: img.Env, workdir: "/", user: "1000"},
		{name: "entrypoint and cmd", base: img,
			o:    Overrides{Entrypoint: []string{"/bin/sh"}, EntrypointSet: true, Cmd: []string{"-c", "true"}, CmdSet: true},
			argv: []string{"/bin/sh", "-c", "true"}, env: img.Env, workdir: "/", user: "1000"},
		{name: "empty entrypoint override", base: img, o: Overrides{EntrypointSet: true, Cmd: []string{"ls"}, CmdSet: true},
			argv: []string{"ls"}, env: img.Env, workdir: "/", user: "1000"},
		{name: "env merge keeps order, appends new, removes bare key", base: img,
			o:    Overrides{Env: []string{"B=3", "C=4", "A", "C=5"}},
			argv: img.Argv(), env: []string{"PATH=/bin", "B=3", "C=5"}, workdir: "/", user: "1000"},
		{name: "workdir and user override", base: img, o: Overrides{WorkingDir: "/app", User: "nobody"},
			argv: img.Argv(), env: img.Env, workdir: "/app", user: "nobody"},
		{name: "image workdir kept", base: Config{Cmd: []string{"pwd"}, WorkingDir: "/srv"},
			argv: []string{"pwd"}, workdir: "/srv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.base.Apply(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Argv(), tc.argv) {
				t.Errorf("argv = %q, want %q", got.Argv(), tc.argv)
			}
			if !slices.Equal(got.Env, tc.env) {
				t.Errorf("env = %q, want %q", got.Env, tc.env)
			}
			if got.WorkingDir != tc.workdir {
				t.Errorf("workdir = %q, want %q", got.WorkingDir, tc.workdir)
			}
			if got.User != tc.user {
				t.Errorf("user = %q, want %q", got.User, tc.user)
			}
		})
	}
	// The receiver is not modified.
	if !slices.Equal(img.Env, []string{"PATH=/bin", "A=1", "B=2"}) || !slices.Equal(img.Cmd, []string{"default", "args"}) {
		t.Errorf("Apply modified its receiver: %+v", img)
	}
}

func TestConfigApplyErrors(t *testing.T) {
	if _, err := (Config{}).Apply(Overrides{Env: []string{"=x"}}); err == nil {
		t.Error("empty env name accepted")
	}
	if _, err := (Config{}).Apply(Overrides{WorkingDir: "rel"}); err == nil {
		t.Error("relative workdir accepted")
	}
}
