package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations that name an image inside an OCI layout's index.json.
const (
	annotationRefName       = "org.opencontainers.image.ref.name" // image-spec annotations.md
	annotationContainerdRef = "io.containerd.image.name"          // written by docker save / containerd export
)

// resolveLayout resolves an image in an OCI image-layout directory, read in place.
func resolveLayout(ctx context.Context, pr parsedRef, want v1.Platform) (v1.Image, v1.Hash, error) {
	store := &blobStore{root: pr.path, readOnly: true}
	if _, err := os.Stat(path.Join(pr.path, "oci-layout")); err != nil {
		return nil, v1.Hash{}, fmt.Errorf("layout %s: %w", pr.path, err)
	}
	f, err := os.Open(path.Join(pr.path, "index.json"))
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("layout %s: %w", pr.path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes))
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("layout %s: index.json: %w", pr.path, err)
	}
	src := &source{store: store}
	return resolveInIndex(ctx, src, b, pr, want)
}

// resolveInIndex picks the image that pr selects from a layout's top-level index.json.
func resolveInIndex(ctx context.Context, src *source, indexJSON []byte, pr parsedRef, want v1.Platform) (v1.Image, v1.Hash, error) {
	if pr.digest != "" {
		h, err := v1.NewHash(pr.digest)
		if err != nil {
			return nil, v1.Hash{}, fmt.Errorf("digest %q: %w", pr.digest, err)
		}
		return src.resolveManifest(ctx, h, want, 0)
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(indexJSON)))
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("index.json: %w", err)
	}
	d, err := pickTagged(idx, pr.tag, want)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	return src.resolveManifest(ctx, d.Digest, want, 0)
}

// pickTagged selects the index.json entry for tag. The tag matches the ref.name annotation
// ("TAG" or "NAME:TAG") or containerd's full image name. Without a tag, a single entry (or
// the one tagged "latest") is taken; several untagged platform entries are chosen by platform.
func pickTagged(idx *v1.IndexManifest, tag string, want v1.Platform) (v1.Descriptor, error) {
	if len(idx.Manifests) == 0 {
		return v1.Descriptor{}, fmt.Errorf("%w: index.json lists no images", ErrNotFound)
	}
	var tags []string
	for _, d := range idx.Manifests {
		for _, t := range entryTags(d) {
			tags = append(tags, t)
			if tag != "" && (t == tag || strings.HasSuffix(t, ":"+tag)) {
				return d, nil
			}
		}
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	list := strings.Join(tags, ", ")
	if list == "" {
		list = "none"
	}
	if tag != "" {
		return v1.Descriptor{}, fmt.Errorf("%w: tag %q is not in the layout (tags: %s)", ErrNotFound, tag, list)
	}
	if len(idx.Manifests) == 1 {
		return idx.Manifests[0], nil
	}
	for _, d := range idx.Manifests {
		if slices.Contains(entryTags(d), "latest") {
			return d, nil
		}
	}
	if len(tags) == 0 {
		return selectPlatform(idx, want)
	}
	return v1.Descriptor{}, fmt.Errorf("layout holds %d images; name one with :TAG (tags: %s)", len(idx.Manifests), list)
}

func entryTags(d v1.Descriptor) []string {
	var out []string
	for _, k := range []string{annotationRefName, annotationContainerdRef} {
		if v := d.Annotations[k]; v != "" {
			out = append(out, v)
		}
	}
	return out
}

// archiveContents is what an archive's tar headers say it is.
type archiveContents struct {
	ociLayout    bool // has oci-layout and index.json
	dockerSave   bool // has manifest.json
	indexJSON    []byte
	blobs        int
	blobsCreated int
}

// cleanArchiveName normalises a tar entry name ("./blobs/x" -> "blobs/x").
func cleanArchiveName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

// importOCIArchive copies the blobs of an OCI-layout tar into store (each verified) and
// returns the archive's index.json. With sniffOnly it only reads the headers.
func importOCIArchive(file string, store *blobStore, sniffOnly bool) (archiveContents, error) {
	var c archiveContents
	f, err := os.Open(file)
	if err != nil {
		return c, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	hasMarker := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c, fmt.Errorf("archive %s: %w", file, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		n := cleanArchiveName(hdr.Name)
		switch {
		case n == "oci-layout":
			hasMarker = true
		case n == "manifest.json":
			c.dockerSave = true
		case n == "index.json":
			if hdr.Size > maxManifestBytes {
				return c, fmt.Errorf("archive %s: index.json is %d bytes", file, hdr.Size)
			}
			if c.indexJSON, err = io.ReadAll(tr); err != nil {
				return c, fmt.Errorf("archive %s: index.json: %w", file, err)
			}
		case strings.HasPrefix(n, "blobs/sha256/") && !sniffOnly:
			h, err := v1.NewHash("sha256:" + strings.TrimPrefix(n, "blobs/sha256/"))
			if err != nil {
				return c, fmt.Errorf("archive %s: %s: %w", file, n, err)
			}
			c.blobs++
			if store.has(h) {
				continue
			}
			if err := store.put(h, tr, hdr.Size); err != nil {
				return c, fmt.Errorf("archive %s: %w", file, err)
			}
			c.blobsCreated++
		}
	}
	c.ociLayout = hasMarker && c.indexJSON != nil
	return c, nil
}

// resolveOCIArchive imports an OCI-layout tar into the blob cache and resolves from there.
func resolveOCIArchive(ctx context.Context, pr parsedRef, want v1.Platform, cache *blobStore) (v1.Image, v1.Hash, error) {
	c, err := importOCIArchive(pr.path, cache, false)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	if !c.ociLayout {
		return nil, v1.Hash{}, fmt.Errorf("archive %s is not an OCI layout (no oci-layout and index.json)", pr.path)
	}
	return resolveInIndex(ctx, &source{store: cache}, c.indexJSON, pr, want)
}

// resolveDockerArchive reads a `docker save` tarball with go-containerregistry's tarball
// package. Such an archive has no registry manifest, so the returned digest is the config
// digest (Docker's image ID), which identifies the content just as well.
func resolveDockerArchive(pr parsedRef) (v1.Image, v1.Hash, error) {
	var tag *name.Tag
	if pr.tag != "" {
		t, err := name.NewTag(pr.tag)
		if err != nil {
			return nil, v1.Hash{}, fmt.Errorf("docker archive tag %q: %w", pr.tag, err)
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(pr.path, tag)
	if err != nil {
		if tag != nil && strings.Contains(err.Error(), "tag") {
			return nil, v1.Hash{}, fmt.Errorf("%w: docker archive %s: %w", ErrNotFound, pr.path, err)
		}
		return nil, v1.Hash{}, fmt.Errorf("docker archive %s: %w", pr.path, err)
	}
	h, err := img.ConfigName()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("docker archive %s: %w", pr.path, err)
	}
	return img, h, nil
}

// sniffArchive decides what a bare tar path is: an OCI layout inside wins over docker save's
// manifest.json (Docker 25+ writes both).
func sniffArchive(file string) (refKind, error) {
	c, err := importOCIArchive(file, nil, true)
	if err != nil {
		return 0, err
	}
	switch {
	case c.ociLayout:
		return kindOCIArchive, nil
	case c.dockerSave:
		return kindDockerArchive, nil
	}
	return 0, fmt.Errorf("%s is neither an OCI layout archive nor a docker save archive", file)
}
