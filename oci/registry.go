package oci

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registryFetcher fetches manifests and blobs of one repository by digest.
type registryFetcher struct {
	repo name.Repository
	opts []remote.Option
}

func (f *registryFetcher) manifest(ctx context.Context, h v1.Hash) ([]byte, error) {
	d, err := remote.Get(f.repo.Digest(h.String()), append(f.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	return d.Manifest, nil
}

func (f *registryFetcher) blob(ctx context.Context, h v1.Hash, _ int64) (io.ReadCloser, error) {
	l, err := remote.Layer(f.repo.Digest(h.String()), append(f.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

// remoteOptions builds the go-containerregistry options for opts: auth from the token or
// the Docker keychain (config.json, credential helpers), one reused transport per resolve.
func remoteOptions(ctx context.Context, opts Options) ([]remote.Option, error) {
	ro := []remote.Option{remote.WithContext(ctx), remote.WithUserAgent("vmbench-runner")}
	if opts.Token != "" {
		ro = append(ro, remote.WithAuth(authn.FromConfig(authn.AuthConfig{RegistryToken: opts.Token})))
	} else {
		ro = append(ro, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	p, err := remote.NewPuller(ro...)
	if err != nil {
		return nil, err
	}
	return append(ro, remote.Reuse(p)), nil
}

// parseRegistryRef parses a registry reference; plain HTTP is used for loopback hosts
// (go-containerregistry's rule) or everywhere when insecure.
func parseRegistryRef(ref string, insecure bool) (name.Reference, error) {
	var no []name.Option
	if insecure {
		no = append(no, name.Insecure)
	}
	r, err := name.ParseReference(ref, no...)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	return r, nil
}

// resolveRegistry resolves a registry reference through the blob cache. A digest reference
// whose manifests are cached makes no request; a tag costs one HEAD to learn its digest.
// Every manifest and blob is checked against its digest before it is cached, which also
// verifies a digest given in the reference.
func resolveRegistry(ctx context.Context, ref string, opts Options, want v1.Platform, cache *blobStore) (v1.Image, v1.Hash, error) {
	r, err := parseRegistryRef(ref, opts.Insecure)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	ro, err := remoteOptions(ctx, opts)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("registry %s: %w", r.Context().RegistryStr(), err)
	}
	src := &source{
		store:    cache,
		fetch:    &registryFetcher{repo: r.Context(), opts: ro},
		progress: newProgress(opts.Progress),
	}
	var top v1.Hash
	if d, ok := r.(name.Digest); ok {
		if top, err = v1.NewHash(d.DigestStr()); err != nil {
			return nil, v1.Hash{}, fmt.Errorf("reference %q: %w", ref, err)
		}
	} else {
		desc, err := remote.Head(r, ro...)
		if err != nil {
			// Some registries answer HEAD poorly; GET tells the real story.
			full, gerr := remote.Get(r, ro...)
			if gerr != nil {
				return nil, v1.Hash{}, classify(gerr)
			}
			if err := verifyBytes(full.Digest, full.Manifest); err != nil {
				return nil, v1.Hash{}, err
			}
			if err := cache.putBytes(full.Digest, full.Manifest); err != nil {
				return nil, v1.Hash{}, err
			}
			top = full.Digest
		} else {
			top = desc.Digest
		}
	}
	return src.resolveManifest(ctx, top, want, 0)
}
