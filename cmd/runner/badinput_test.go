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
	// Image errors come before anything backend-specific; the sandbox backend is named so
	// that a host without KVM does not add auto's fallback warning to the output.
	image := func(ref string) []string {
		return []string{"run", "--backend", "sandbox", "--init", initBin, "--image", ref}
	}
	_, kvmErr := os.Stat("/dev/kvm")
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		want     string // in the one line
		needsKVM bool   // the error comes after the KVM device check
	}{
		{"missing image", image("oci:" + t.TempDir() + "/none:basic"), nil, "not found", false},
		{"corrupt layout", image("oci:" + corrupt), nil, "index.json", false},
		{"unreachable registry", image("127.0.0.1:1/bench:latest"), nil, "127.0.0.1:1", false},
		{"unknown registry host", image("registry.invalid/bench:latest"), nil, "registry.invalid", false},
		{"no kernel built", basic, map[string]string{"RUNNER_CACHE_DIR": emptyCache}, "make kernel", true},
		{"missing kernel file", append(basic, "--kernel", "/nonexistent/vmlinux"), nil, "/nonexistent/vmlinux", true},
		{"no /dev/kvm", basic, map[string]string{"RUNNER_KVM_DEVICE": "/nonexistent/kvm"}, "does not exist", false},
		{"/dev/kvm not a KVM device", basic, map[string]string{"RUNNER_KVM_DEVICE": notKVM}, "kvm", false},
		{"zero vcpus", append(basic, "--vcpus", "0"), nil, "--vcpus 0", false},
		{"too little memory", append(basic, "--memory", "1"), nil, "--memory 1", false},
		{"unknown flag", append(basic, "--bogus"), nil, "unknown flag: --bogus", false},
		{"unknown backend", []string{"run", "--backend", "cloud", "--init", initBin, "--image", "x"}, nil, "--backend", false},
		{"bad cpu template", append(basic, "--cpu-template", "fast"), nil, "--cpu-template", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.needsKVM && kvmErr != nil {
				t.Skipf("this error is reported after the KVM device check, and this host has none: %v", kvmErr)
			}
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
