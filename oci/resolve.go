package oci

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Options control how Resolve finds and fetches an image.
type Options struct {
	Platform string    // OS/ARCH[/VARIANT] picked from an image index; "" = DefaultPlatform (linux/amd64)
	Insecure bool      // allow plain HTTP to the registry (always allowed for loopback registries)
	Token    string    // bearer token; when empty, Docker config / credential helpers (authn.DefaultKeychain)
	CacheDir string    // blob cache root (content-addressed by digest); "" = DefaultCacheDir()
	Progress io.Writer // where to draw pull progress when it is a terminal; nil = none
}

// Image is a resolved single-platform image.
type Image struct {
	v1.Image         // the single-platform image; layers are read (and fetched) lazily
	Ref      string  // the reference as the user gave it
	Digest   v1.Hash // manifest digest of the platform image (config digest for a docker-archive)
	Config   Config  // run-relevant image config

	// LayersSize is the total size of the layers as stored: compressed blob sizes from the
	// manifest, or the archive size for a docker-archive (whose manifest go-containerregistry
	// would have to compute by compressing every layer). 0 when unknown.
	LayersSize int64
}

// Resolve turns ref into a single-platform image and its config. Registry and OCI-archive
// blobs go through the blob cache under opts.CacheDir; layout directories and docker
// archives are read in place. Layers are not read until used (rootfs.Flatten reads them);
// ctx also bounds those later downloads, so keep it alive while the image is in use.
func Resolve(ctx context.Context, ref string, opts Options) (*Image, error) {
	want, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, err
	}
	pr, err := parseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", classify(err))
	}
	if pr.kind == kindArchive {
		if pr.kind, err = sniffArchive(pr.path); err != nil {
			return nil, fmt.Errorf("oci: %s: %w", ref, classify(err))
		}
	}
	var (
		img    v1.Image
		digest v1.Hash
	)
	switch pr.kind {
	case kindLayout:
		img, digest, err = resolveLayout(ctx, pr, want)
	case kindDockerArchive:
		img, digest, err = resolveDockerArchive(pr)
	case kindOCIArchive, kindRegistry:
		cache, cerr := openCache(opts.CacheDir)
		if cerr != nil {
			return nil, cerr
		}
		if pr.kind == kindOCIArchive {
			img, digest, err = resolveOCIArchive(ctx, pr, want, cache)
		} else {
			img, digest, err = resolveRegistry(ctx, pr.name, opts, want, cache)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, classify(err))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("oci: %s: config: %w", ref, classify(err))
	}
	if err := checkConfigPlatform(cf, want); err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, err)
	}
	out := &Image{Image: img, Ref: ref, Digest: digest, Config: configFrom(cf)}
	if pr.kind == kindDockerArchive {
		if st, err := os.Stat(pr.path); err == nil {
			out.LayersSize = st.Size()
		}
	} else if m, err := img.Manifest(); err == nil {
		for _, l := range m.Layers {
			out.LayersSize += l.Size
		}
	}
	slog.Debug("oci: resolved", "ref", ref, "source", pr.kind.String(), "digest", digest.String(), "layers_size", out.LayersSize)
	return out, nil
}
