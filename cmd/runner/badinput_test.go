package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmbench/runner/runner/runnertest"
)

// Every kind of bad input ends the same way: one line on stderr naming the problem, exit
// status 125, and nothing left in the work directory.
func TestBadInputIsOneLineAndExit125(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("building root filesystems needs root")
	}
	layout := writeTestLayout(t, "basic")
	initBin := runnertest.InitBinary(t)
	corrupt := t.TempDir()
	os.WriteFile(filepath.Join(corrupt, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	os.WriteFile(filepath.Join(corrupt, "index.json"), []byte(`{"schemaVersion":2,"manifests":[{`), 0o644)
	notKVM := filepath.Join(t.TempDir(), "kvm")
	os.WriteFile(notKVM, nil, 0o600)
	emptyCache := t.TempDir()

	basic := []string{"run", "--backend", "kvm", "--init", initBin, "--image", "oci:" + layout + ":basic"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string // in the one line
	}{
		{"missing image", []string{"run", "--init", initBin, "--image", "oci:" + t.TempDir() + "/none:basic"}, nil, "not found"},
		{"corrupt layout", []string{"run", "--init", initBin, "--image", "oci:" + corrupt}, nil, "index.json"},
		{"unreachable registry", []string{"run", "--init", initBin, "--image", "127.0.0.1:1/bench:latest"}, nil, "127.0.0.1:1"},
		{"unknown registry host", []string{"run", "--init", initBin, "--image", "registry.invalid/bench:latest"}, nil, "registry.invalid"},
		{"no kernel built", basic, map[string]string{"RUNNER_CACHE_DIR": emptyCache}, "make kernel"},
		{"missing kernel file", append(basic, "--kernel", "/nonexistent/vmlinux"), nil, "/nonexistent/vmlinux"},
		{"no /dev/kvm", basic, map[string]string{"RUNNER_KVM_DEVICE": "/nonexistent/kvm"}, "does not exist"},
		{"/dev/kvm not a KVM device", basic, map[string]string{"RUNNER_KVM_DEVICE": notKVM}, "kvm"},
		{"zero vcpus", append(basic, "--vcpus", "0"), nil, "--vcpus 0"},
		{"too little memory", append(basic, "--memory", "1"), nil, "--memory 1"},
		{"unknown flag", append(basic, "--bogus"), nil, "unknown flag: --bogus"},
		{"unknown backend", []string{"run", "--backend", "cloud", "--init", initBin, "--image", "x"}, nil, "--backend"},
		{"bad cpu template", append(basic, "--cpu-template", "fast"), nil, "--cpu-template"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			t.Setenv("RUNNER_WORK_DIR", work)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := execute(c.args, &stdout, &stderr)
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if code != exitRunnerError || len(lines) != 1 || !strings.HasPrefix(lines[0], "runner: ") ||
				!strings.Contains(lines[0], c.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 125 and one line containing %q", code, stderr.String(), c.want)
			}
			t.Log(lines[0])
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Errorf("work directory holds %d entries after the failure", len(entries))
			}
		})
	}
}
