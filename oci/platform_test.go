package oci

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/vmbench/runner/testimages"
)

func TestSelectPlatform(t *testing.T) {
	idx := &v1.IndexManifest{Manifests: []v1.Descriptor{
		{Digest: v1.Hash{Algorithm: "sha256", Hex: "01"}, Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}},
		{Digest: v1.Hash{Algorithm: "sha256", Hex: "02"}, Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{Digest: v1.Hash{Algorithm: "sha256", Hex: "03"}, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}},
		{Digest: v1.Hash{Algorithm: "sha256", Hex: "04"}, Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}},
	}}
	for want, hex := range map[string]string{"linux/amd64": "03", "linux/arm/v7": "02", "linux/arm/v6": "01", "": "03"} {
		p, err := parsePlatform(want)
		if err != nil {
			t.Fatal(err)
		}
		d, err := selectPlatform(idx, p)
		if err != nil || d.Digest.Hex != hex {
			t.Errorf("%q: got %s, %v; want %s", want, d.Digest.Hex, err, hex)
		}
	}
	p, _ := parsePlatform("windows/amd64")
	_, err := selectPlatform(idx, p)
	if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "linux/amd64, linux/arm/v6, linux/arm/v7, unknown/unknown") {
		t.Errorf("err = %v", err)
	}
	if _, err := parsePlatform("amd64"); err == nil {
		t.Error("platform without OS accepted")
	}
}

// A layout whose tagged entry is a multi-platform index resolves per platform too.
func TestResolveLayoutIndex(t *testing.T) {
	amd, err := testimages.Build("basic")
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := amd.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, _ := mutate.ConfigFile(amd, cf)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: "multi"})); err != nil {
		t.Fatal(err)
	}
	armDigest, _ := arm.Digest()
	img, err := Resolve(context.Background(), "oci:"+dir+":multi", Options{Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != armDigest {
		t.Errorf("digest = %s, want %s", img.Digest, armDigest)
	}
	// A single-platform image for another architecture is refused too.
	if _, err := Resolve(context.Background(), "oci:"+dir+"@"+armDigest.String(), Options{}); !errors.Is(err, ErrPlatform) {
		t.Errorf("arm64 image for linux/amd64: err = %v, want ErrPlatform", err)
	}
}

func TestRegistryReferenceDefaults(t *testing.T) {
	r, err := parseRegistryRef("busybox", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Name(); got != "index.docker.io/library/busybox:latest" {
		t.Errorf("busybox = %s", got)
	}
	if s := r.Context().Scheme(); s != "https" {
		t.Errorf("docker.io scheme = %s", s)
	}
	for ref, scheme := range map[string]string{"127.0.0.1:5000/x": "http", "localhost:5000/x": "http", "registry.example.com/x": "https"} {
		r, _ := parseRegistryRef(ref, false)
		if r.Context().Scheme() != scheme {
			t.Errorf("%s: scheme %s, want %s", ref, r.Context().Scheme(), scheme)
		}
	}
	r, _ = parseRegistryRef("registry.example.com/x", true)
	if r.Context().Scheme() != "http" {
		t.Errorf("--insecure-registry: scheme %s", r.Context().Scheme())
	}
	if _, err := parseRegistryRef("UPPER/case", false); err == nil {
		t.Error("invalid reference accepted")
	}
}
