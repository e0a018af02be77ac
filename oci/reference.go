package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// refKind says where an image reference points.
type refKind int

const (
	kindRegistry      refKind = iota // HOST/REPO[:TAG][@DIGEST]
	kindLayout                       // oci:DIR, or a directory holding oci-layout
	kindOCIArchive                   // oci-archive:FILE
	kindDockerArchive                // docker-archive:FILE
	kindArchive                      // a bare tar path: sniffed as OCI or docker archive
)

func (k refKind) String() string {
	switch k {
	case kindRegistry:
		return "registry"
	case kindLayout:
		return "oci"
	case kindOCIArchive:
		return "oci-archive"
	case kindDockerArchive:
		return "docker-archive"
	case kindArchive:
		return "archive"
	}
	return fmt.Sprintf("refKind(%d)", int(k))
}

// parsedRef is an image reference split into where it points and which image it selects.
type parsedRef struct {
	kind   refKind
	path   string // local file or directory (all kinds but kindRegistry)
	tag    string // selects an image inside a layout or archive
	digest string // "sha256:..." selecting an image inside a layout
	name   string // the registry reference (kindRegistry)
}

// parseRef classifies ref. Local paths are recognised by a transport prefix, by looking like
// a path (leading "/", "./", "../" or a ".tar" suffix) or by existing on disk.
func parseRef(ref string) (parsedRef, error) {
	if ref == "" {
		return parsedRef{}, fmt.Errorf("empty image reference")
	}
	for prefix, kind := range map[string]refKind{
		"oci:":            kindLayout,
		"oci-archive:":    kindOCIArchive,
		"docker-archive:": kindDockerArchive,
	} {
		if rest, ok := strings.CutPrefix(ref, prefix); ok {
			if rest == "" {
				return parsedRef{}, fmt.Errorf("%q: missing path after %q", ref, prefix)
			}
			p, tag, digest := splitPathSelector(rest)
			return parsedRef{kind: kind, path: p, tag: tag, digest: digest}, nil
		}
	}
	looksLocal := strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") ||
		strings.HasSuffix(ref, ".tar") || ref == "." || ref == ".."
	st, err := os.Stat(ref)
	switch {
	case err == nil && st.IsDir():
		if _, err := os.Stat(filepath.Join(ref, "oci-layout")); err != nil {
			return parsedRef{}, fmt.Errorf("directory %s is not an OCI image layout (no oci-layout file)", ref)
		}
		return parsedRef{kind: kindLayout, path: ref}, nil
	case err == nil:
		return parsedRef{kind: kindArchive, path: ref}, nil
	case looksLocal:
		p, tag, digest := splitPathSelector(ref)
		if p != ref {
			if st, err := os.Stat(p); err == nil {
				if st.IsDir() {
					return parsedRef{kind: kindLayout, path: p, tag: tag, digest: digest}, nil
				}
				return parsedRef{kind: kindArchive, path: p, tag: tag, digest: digest}, nil
			}
		}
		return parsedRef{}, fmt.Errorf("%w: %s: no such file or directory", ErrNotFound, ref)
	}
	return parsedRef{kind: kindRegistry, name: ref}, nil
}

// splitPathSelector splits PATH[:TAG] or PATH[@sha256:HEX]. The path is the shortest prefix
// before a ':' that exists on disk (so "FILE:repo:tag" and paths containing ':' both work);
// when none exists, the last ':' splits.
func splitPathSelector(s string) (p, tag, digest string) {
	if _, err := os.Stat(s); err == nil {
		return s, "", ""
	}
	if i := strings.LastIndex(s, "@"); i > 0 && strings.HasPrefix(s[i+1:], "sha256:") {
		return s[:i], "", s[i+1:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' || i == 0 {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return s[:i], s[i+1:], ""
		}
	}
	if i := strings.LastIndex(s, ":"); i > 0 && !strings.Contains(s[i+1:], "/") && i+1 < len(s) {
		return s[:i], s[i+1:], ""
	}
	return s, "", ""
}
