package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vmbench/runner/cache"
)

// blobStore is a content-addressed directory laid out like an OCI image layout's blobs:
// ROOT/blobs/sha256/HEX. A blob is written to a temporary file, its sha256 checked against
// the name it will get, and only then renamed into place, so a reader never sees a partial or
// corrupt blob and concurrent writers of the same blob are harmless. A read-only store reads
// an existing OCI layout directory in place.
type blobStore struct {
	root     string
	readOnly bool
}

// openCache returns the writable store at dir, creating it (with an oci-layout marker).
func openCache(dir string) (*blobStore, error) {
	if dir == "" {
		dir = DefaultCacheDir()
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("blob cache %s: %w", dir, err)
	}
	marker := filepath.Join(dir, "oci-layout")
	if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(marker, []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			return nil, fmt.Errorf("blob cache %s: %w", dir, err)
		}
	}
	return &blobStore{root: dir}, nil
}

func (s *blobStore) path(h v1.Hash) (string, error) {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 {
		return "", fmt.Errorf("unsupported digest %q", h.String())
	}
	if _, err := hex.DecodeString(h.Hex); err != nil {
		return "", fmt.Errorf("malformed digest %q", h.String())
	}
	return filepath.Join(s.root, "blobs", h.Algorithm, h.Hex), nil
}

// has reports whether the blob is present.
func (s *blobStore) has(h v1.Hash) bool {
	p, err := s.path(h)
	if err != nil {
		return false
	}
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// open opens a blob for reading.
func (s *blobStore) open(h v1.Hash) (*os.File, error) {
	p, err := s.path(h)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if !s.readOnly {
		cache.Touch(p) // last use, for cache pruning
	}
	return f, nil
}

// maxManifestBytes bounds manifests, indexes and configs read into memory (registries use 4 MiB).
const maxManifestBytes = 8 << 20

// bytes reads a small blob (a manifest, index or config) into memory, verifying its digest.
func (s *blobStore) bytes(h v1.Hash) ([]byte, error) {
	f, err := s.open(h)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("blob %s: larger than %d bytes", h, maxManifestBytes)
	}
	if err := verifyBytes(h, b); err != nil {
		return nil, err
	}
	return b, nil
}

// put stores the content of r as blob h, verifying it. size < 0 means unknown.
func (s *blobStore) put(h v1.Hash, r io.Reader, size int64) error {
	if s.readOnly {
		return fmt.Errorf("blob %s: store %s is read-only", h, s.root)
	}
	p, err := s.path(h)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+h.Hex[:12]+"-*")
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	d := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, d), r)
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s: %w: got %d bytes, want %d", h, ErrDigest, n, size)
	}
	if err := checkSum(h, d); err != nil {
		return err
	}
	if err := tmp.Chmod(0o444); err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	committed = true
	return nil
}

// putBytes stores an in-memory blob.
func (s *blobStore) putBytes(h v1.Hash, b []byte) error {
	if s.has(h) {
		return nil
	}
	return s.put(h, bytes.NewReader(b), int64(len(b)))
}

func verifyBytes(h v1.Hash, b []byte) error {
	d := sha256.New()
	d.Write(b)
	return checkSum(h, d)
}

func checkSum(h v1.Hash, d hash.Hash) error {
	if h.Algorithm != "sha256" {
		return fmt.Errorf("unsupported digest algorithm %q", h.Algorithm)
	}
	if got := hex.EncodeToString(d.Sum(nil)); got != h.Hex {
		return fmt.Errorf("%w: content has sha256:%s, want %s", ErrDigest, got, h)
	}
	return nil
}

// writeFileAtomic writes b to path via a temporary file in the same directory and a rename.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// DefaultCacheDir is the blob cache root: the "oci" area of the runner's cache (cache.Dir).
func DefaultCacheDir() string { return filepath.Join(cache.Dir(), cache.AreaOCI) }
