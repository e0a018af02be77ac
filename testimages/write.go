package testimages

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// AnnotationRefName tags an image in an OCI layout's index.json (oci:DIR:TAG selects it).
const AnnotationRefName = "org.opencontainers.image.ref.name"

// BuildAll builds every image in Names().
func BuildAll() (map[string]v1.Image, error) {
	out := make(map[string]v1.Image)
	for _, n := range Names() {
		img, err := Build(n)
		if err != nil {
			return nil, err
		}
		out[n] = img
	}
	return out, nil
}

// WriteLayout writes imgs as one OCI image layout at dir, each tagged with its map key. The
// layout is built next to dir and renamed into place, replacing an existing dir.
func WriteLayout(dir string, imgs map[string]v1.Image) error {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("testimages: layout %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return fmt.Errorf("testimages: layout %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("testimages: layout %s: %w", dir, err)
	}
	tags := make([]string, 0, len(imgs))
	for t := range imgs {
		tags = append(tags, t)
	}
	slices.Sort(tags)
	for _, t := range tags {
		if err := p.AppendImage(imgs[t], layout.WithAnnotations(map[string]string{AnnotationRefName: t})); err != nil {
			return fmt.Errorf("testimages: layout %s: image %s: %w", dir, t, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("testimages: layout %s: %w", dir, err)
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("testimages: layout %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.Rename(old, dir)
		return fmt.Errorf("testimages: layout %s: %w", dir, err)
	}
	os.RemoveAll(old)
	return nil
}

// WriteDockerArchive writes img as a `docker save` tarball tagged tag (e.g. "test:basic").
func WriteDockerArchive(file, tag string, img v1.Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("testimages: tag %q: %w", tag, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("testimages: archive %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if err := tarball.Write(t, img, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("testimages: archive %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("testimages: archive %s: %w", file, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("testimages: archive %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("testimages: archive %s: %w", file, err)
	}
	return nil
}

// PushOptions say how to reach the registry.
type PushOptions struct {
	Insecure bool   // plain HTTP (always used for loopback hosts)
	Username string // basic auth; empty = Docker config / credential helpers
	Password string
}

// Push uploads img to ref (HOST[:PORT]/REPO:TAG) and returns the pushed manifest digest.
func Push(ref string, img v1.Image, opts PushOptions) (v1.Hash, error) {
	var no []name.Option
	if opts.Insecure {
		no = append(no, name.Insecure)
	}
	r, err := name.ParseReference(ref, no...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("testimages: push %s: %w", ref, err)
	}
	auth := remote.WithAuthFromKeychain(authn.DefaultKeychain)
	if opts.Username != "" {
		auth = remote.WithAuth(&authn.Basic{Username: opts.Username, Password: opts.Password})
	}
	if err := remote.Write(r, img, auth); err != nil {
		return v1.Hash{}, fmt.Errorf("testimages: push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("testimages: push %s: %w", ref, err)
	}
	return d, nil
}
