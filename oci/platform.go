package oci

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultPlatform is the platform picked from an image index when Options.Platform is empty.
const DefaultPlatform = "linux/amd64"

// parsePlatform parses OS/ARCH[/VARIANT].
func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		s = DefaultPlatform
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("oci: platform %q: %w", s, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("oci: platform %q: want OS/ARCH[/VARIANT]", s)
	}
	return *p, nil
}

// platformMatches reports whether an index entry's platform satisfies want. The variant must
// match when want names one; amd64 entries without a variant match any amd64 request.
func platformMatches(have *v1.Platform, want v1.Platform) bool {
	if have == nil {
		return false
	}
	if have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	return want.Variant == "" || have.Variant == want.Variant
}

// selectPlatform picks the manifest for want from an index. Attestation manifests
// (platform unknown/unknown) never match. Without a match the error wraps ErrPlatform and
// lists the platforms that exist.
func selectPlatform(idx *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var found []v1.Descriptor
	for _, d := range idx.Manifests {
		if platformMatches(d.Platform, want) {
			found = append(found, d)
		}
	}
	if len(found) > 0 {
		// Prefer the exact variant when several match (e.g. arm/v6 and arm/v7 for "linux/arm").
		for _, d := range found {
			if d.Platform.Variant == want.Variant {
				return d, nil
			}
		}
		return found[0], nil
	}
	var have []string
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			have = append(have, "(none)")
			continue
		}
		have = append(have, d.Platform.String())
	}
	slices.Sort(have)
	have = slices.Compact(have)
	list := strings.Join(have, ", ")
	if list == "" {
		list = "none"
	}
	return v1.Descriptor{}, fmt.Errorf("%w %s; the index has: %s", ErrPlatform, want.String(), list)
}

// checkConfigPlatform rejects a single-platform image whose config names a different
// OS/architecture than requested. Images that leave them empty pass.
func checkConfigPlatform(cf *v1.ConfigFile, want v1.Platform) error {
	if cf.OS == "" || cf.Architecture == "" {
		return nil
	}
	if cf.OS != want.OS || cf.Architecture != want.Architecture {
		return fmt.Errorf("%w %s; the image is %s/%s", ErrPlatform, want.String(), cf.OS, cf.Architecture)
	}
	return nil
}
