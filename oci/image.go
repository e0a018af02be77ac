package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fetcher gets content missing from a blobStore, e.g. from a registry. Both methods return
// unverified content; the store verifies it against the digest before keeping it.
type fetcher interface {
	// manifest fetches a manifest or index by digest.
	manifest(ctx context.Context, h v1.Hash) ([]byte, error)
	// blob fetches a config or layer blob by digest; size is the descriptor's size.
	blob(ctx context.Context, h v1.Hash, size int64) (io.ReadCloser, error)
}

// source is where an image's manifests and blobs live: a store, plus a fetcher that fills
// it (nil when the store is all there is, as for a layout directory).
type source struct {
	store    *blobStore
	fetch    fetcher
	progress *progress
}

// manifestBytes returns the manifest or index h, fetching and caching it when missing.
func (s *source) manifestBytes(ctx context.Context, h v1.Hash) ([]byte, error) {
	if s.store.has(h) {
		return s.store.bytes(h)
	}
	if s.fetch == nil || s.store.readOnly {
		return nil, fmt.Errorf("%w: manifest %s is not in %s", ErrNotFound, h, s.store.root)
	}
	b, err := s.fetch.manifest(ctx, h)
	if err != nil {
		return nil, classify(err)
	}
	if err := verifyBytes(h, b); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	if err := s.store.putBytes(h, b); err != nil {
		return nil, err
	}
	return b, nil
}

// ensureBlob makes blob h present in the store, fetching it (with progress) when missing.
func (s *source) ensureBlob(ctx context.Context, h v1.Hash, size int64) error {
	if s.store.has(h) {
		return nil
	}
	if s.fetch == nil || s.store.readOnly {
		return fmt.Errorf("%w: blob %s is not in %s", ErrNotFound, h, s.store.root)
	}
	rc, err := s.fetch.blob(ctx, h, size)
	if err != nil {
		return classify(err)
	}
	defer rc.Close()
	r := s.progress.wrap(rc, h, size)
	defer r.Close()
	return s.store.put(h, r, size)
}

// manifestKind is what a manifest blob is, from its mediaType field or, for OCI manifests
// that omit it, from which of "manifests"/"layers" it has.
func manifestKind(b []byte) (types.MediaType, error) {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Layers    json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType, nil
	case probe.Manifests != nil:
		return types.OCIImageIndex, nil
	case probe.Layers != nil:
		return types.OCIManifestSchema1, nil
	}
	return "", fmt.Errorf("manifest has neither layers nor manifests")
}

// maxIndexDepth bounds nested indexes (an index pointing at an index ...).
const maxIndexDepth = 4

// resolveManifest follows desc (an index or an image manifest) down to the image for want.
func (s *source) resolveManifest(ctx context.Context, h v1.Hash, want v1.Platform, depth int) (v1.Image, v1.Hash, error) {
	if depth > maxIndexDepth {
		return nil, v1.Hash{}, fmt.Errorf("index nesting deeper than %d", maxIndexDepth)
	}
	b, err := s.manifestBytes(ctx, h)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	mt, err := manifestKind(b)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	if mt.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return nil, v1.Hash{}, fmt.Errorf("index %s: %w", h, err)
		}
		d, err := selectPlatform(idx, want)
		if err != nil {
			return nil, v1.Hash{}, err
		}
		return s.resolveManifest(ctx, d.Digest, want, depth+1)
	}
	if !mt.IsImage() {
		return nil, v1.Hash{}, fmt.Errorf("manifest %s has unsupported media type %q", h, mt)
	}
	img, err := partial.CompressedToImage(&storeImage{ctx: ctx, src: s, raw: b, mediaType: mt})
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("image %s: %w", h, err)
	}
	return img, h, nil
}

// storeImage is a partial.CompressedImageCore over a source: the manifest is in memory,
// the config and layers are read from the store and fetched into it on first use.
type storeImage struct {
	ctx       context.Context
	src       *source
	raw       []byte
	mediaType types.MediaType
	manifest  *v1.Manifest
}

func (i *storeImage) MediaType() (types.MediaType, error) { return i.mediaType, nil }
func (i *storeImage) RawManifest() ([]byte, error)        { return i.raw, nil }

func (i *storeImage) parsed() (*v1.Manifest, error) {
	if i.manifest == nil {
		m, err := v1.ParseManifest(bytes.NewReader(i.raw))
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		i.manifest = m
	}
	return i.manifest, nil
}

func (i *storeImage) RawConfigFile() ([]byte, error) {
	m, err := i.parsed()
	if err != nil {
		return nil, err
	}
	if m.Config.Size > maxManifestBytes {
		return nil, fmt.Errorf("config %s: %d bytes is too large", m.Config.Digest, m.Config.Size)
	}
	if err := i.src.ensureBlob(i.ctx, m.Config.Digest, m.Config.Size); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return i.src.store.bytes(m.Config.Digest)
}

func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	m, err := i.parsed()
	if err != nil {
		return nil, err
	}
	if h == m.Config.Digest {
		return &storeLayer{img: i, desc: m.Config}, nil
	}
	for _, d := range m.Layers {
		if d.Digest == h {
			return &storeLayer{img: i, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("%w: layer %s is not in the manifest", ErrNotFound, h)
}

// storeLayer is one compressed layer of a storeImage.
type storeLayer struct {
	img  *storeImage
	desc v1.Descriptor
}

func (l *storeLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storeLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	if err := l.img.src.ensureBlob(l.img.ctx, l.desc.Digest, l.desc.Size); err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.desc.Digest, err)
	}
	return l.img.src.store.open(l.desc.Digest)
}
