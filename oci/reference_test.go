package oci

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseRef(t *testing.T) {
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "lay:out")
	if err := os.MkdirAll(layoutDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layoutDir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	os.Mkdir(plain, 0o755)
	archive := filepath.Join(dir, "img.tar")
	os.WriteFile(archive, nil, 0o644)

	tests := []struct {
		ref  string
		want parsedRef
	}{
		{"busybox", parsedRef{kind: kindRegistry, name: "busybox"}},
		{"127.0.0.1:5000/test:basic", parsedRef{kind: kindRegistry, name: "127.0.0.1:5000/test:basic"}},
		{"oci:" + layoutDir, parsedRef{kind: kindLayout, path: layoutDir}},
		{"oci:" + layoutDir + ":basic", parsedRef{kind: kindLayout, path: layoutDir, tag: "basic"}},
		{"oci:" + layoutDir + "@sha256:abc", parsedRef{kind: kindLayout, path: layoutDir, digest: "sha256:abc"}},
		{layoutDir, parsedRef{kind: kindLayout, path: layoutDir}},
		{layoutDir + ":basic", parsedRef{kind: kindLayout, path: layoutDir, tag: "basic"}},
		{"oci-archive:" + archive + ":basic", parsedRef{kind: kindOCIArchive, path: archive, tag: "basic"}},
		{"docker-archive:" + archive + ":test:basic", parsedRef{kind: kindDockerArchive, path: archive, tag: "test:basic"}},
		{archive, parsedRef{kind: kindArchive, path: archive}},
	}
	for _, tc := range tests {
		got, err := parseRef(tc.ref)
		if err != nil {
			t.Errorf("parseRef(%q): %v", tc.ref, err)
			continue
		}
		if got != tc.want {
			t.Errorf("parseRef(%q) = %+v, want %+v", tc.ref, got, tc.want)
		}
	}

	if _, err := parseRef(plain); err == nil {
		t.Errorf("directory without oci-layout accepted")
	}
	if _, err := parseRef(filepath.Join(dir, "missing.tar")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing archive: err = %v, want ErrNotFound", err)
	}
	if _, err := parseRef(""); err == nil {
		t.Errorf("empty reference accepted")
	}
}
