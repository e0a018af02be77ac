package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseFlavour(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Flavour
		wantErr bool
	}{
		{"stock", Stock, false},
		{"kvm-pvm", KVMPVM, false},
		{"", "", true},
		{"auto", "", true},
		{"KVM-PVM", "", true},
	} {
		got, err := ParseFlavour(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseFlavour(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestDetectFlavour(t *testing.T) {
	dir := t.TempDir()
	old := pvmModuleDir
	t.Cleanup(func() { pvmModuleDir = old })

	pvmModuleDir = filepath.Join(dir, "kvm_pvm") // absent: hardware KVM
	t.Setenv("RUNNER_KERNEL_FLAVOUR", "")
	if got := DetectFlavour(); got != Stock {
		t.Errorf("without kvm_pvm: %q, want %q", got, Stock)
	}
	if err := os.Mkdir(pvmModuleDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := DetectFlavour(); got != KVMPVM {
		t.Errorf("with kvm_pvm: %q, want %q", got, KVMPVM)
	}
	t.Setenv("RUNNER_KERNEL_FLAVOUR", "stock")
	if got := DetectFlavour(); got != Stock {
		t.Errorf("override stock on a kvm_pvm host: %q", got)
	}
	t.Setenv("RUNNER_KERNEL_FLAVOUR", "bogus")
	if got := DetectFlavour(); got != KVMPVM {
		t.Errorf("invalid override must be ignored: %q", got)
	}
	if !IsKVMPVM() {
		t.Error("IsKVMPVM() = false with the module directory present")
	}
}

func TestCacheDir(t *testing.T) {
	t.Setenv("RUNNER_CACHE_DIR", "/x/cache")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got := CacheDir(); got != "/x/cache" {
		t.Errorf("RUNNER_CACHE_DIR: %q", got)
	}
	t.Setenv("RUNNER_CACHE_DIR", "")
	if got := CacheDir(); got != "/xdg/vmbench" {
		t.Errorf("XDG_CACHE_HOME: %q", got)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := CacheDir(); got != "/home/u/.cache/vmbench" {
		t.Errorf("HOME: %q", got)
	}
	if got := CachedPath(KVMPVM); got != "/home/u/.cache/vmbench/kernel/kvm-pvm/vmlinux" {
		t.Errorf("CachedPath: %q", got)
	}
}

func TestLocate(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("RUNNER_CACHE_DIR", dir)
	t.Setenv("RUNNER_KERNEL", "")
	t.Setenv("RUNNER_KERNEL_FLAVOUR", "stock")

	if _, err := Locate(""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty cache: %v, want ErrNotFound", err)
	}
	cached := CachedPath(Stock)
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cached, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Locate(""); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("empty cached file: %v, want a non-ErrNotFound error", err)
	}
	if err := os.WriteFile(cached, []byte("\x7fELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := Locate("")
	if err != nil || k.Path != cached || k.Flavour != Stock {
		t.Errorf("cache: %+v, %v", k, err)
	}

	explicit := filepath.Join(dir, "my-vmlinux")
	if err := os.WriteFile(explicit, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNNER_KERNEL", cached)
	if k, err := Locate(explicit); err != nil || k.Path != explicit {
		t.Errorf("explicit beats $RUNNER_KERNEL: %+v, %v", k, err)
	}
	t.Setenv("RUNNER_KERNEL", explicit)
	if k, err := Locate(""); err != nil || k.Path != explicit {
		t.Errorf("$RUNNER_KERNEL: %+v, %v", k, err)
	}
	if _, err := Locate(dir); err == nil {
		t.Error("a directory as --kernel must fail")
	}
	if _, err := Locate(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing --kernel: %v", err)
	}
}

func TestCmdline(t *testing.T) {
	// Words Linux parses without registering them as parameters (or that name code we do
	// not build): they would be handed to init. The boot smoke test checks this for real.
	leaky := []string{"nokaslr", "noxsave", "nomodule", "pci=off", "transparent_hugepage=never"}
	for _, f := range []Flavour{Stock, KVMPVM} {
		words := Cmdline(f)
		if words[0] != "console=ttyS0" {
			t.Errorf("%s: first word %q, want console=ttyS0", f, words[0])
		}
		seen := map[string]bool{}
		reboot := 0
		for _, w := range words {
			key, _, _ := strings.Cut(w, "=")
			if seen[key] {
				t.Errorf("%s: %q given twice", f, key)
			}
			seen[key] = true
			if key == "reboot" {
				reboot++
			}
			if slices.Contains(leaky, w) {
				t.Errorf("%s: %q would reach init's argv/env", f, w)
			}
			if strings.ContainsAny(w, " \t\n\"") {
				t.Errorf("%s: word %q needs quoting", f, w)
			}
		}
		if reboot != 1 {
			t.Errorf("%s: want exactly one reboot= word", f)
		}
	}
	if !slices.Contains(Cmdline(KVMPVM), "no_int3_selftest") || slices.Contains(Cmdline(Stock), "no_int3_selftest") {
		t.Error("no_int3_selftest belongs to the kvm-pvm flavour only (only its kernel knows it)")
	}
	// Callers may append to the result without changing the defaults.
	a := Cmdline(Stock)
	_ = append(a[:1], "clobber")
	if Cmdline(Stock)[1] == "clobber" {
		t.Error("Cmdline returns shared storage")
	}
	if got := Join([]string{"a", "b=c"}); got != "a b=c" {
		t.Errorf("Join: %q", got)
	}
}
