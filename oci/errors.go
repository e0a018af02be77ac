package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

var (
	// ErrNotFound reports an image, tag, manifest or blob that does not exist: a registry 404
	// (MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN), a missing file or directory, or a tag
	// absent from a layout.
	ErrNotFound = errors.New("image not found")
	// ErrPlatform reports an image index without a manifest for the requested platform; the
	// message lists the platforms the index has.
	ErrPlatform = errors.New("no image for platform")
	// ErrAuth reports that the registry refused the credentials (HTTP 401 or 403).
	ErrAuth = errors.New("registry authentication required or refused")
	// ErrDigest reports content whose sha256 does not match the digest that named it.
	ErrDigest = errors.New("digest mismatch")
)

// classify wraps err with the sentinel matching its cause, keeping err itself in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrAuth) || errors.Is(err, ErrPlatform) || errors.Is(err, ErrDigest) {
		return err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %w", ErrAuth, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%w: %w", ErrNotFound, err)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("%w: %w", ErrAuth, err)
			}
		}
	}
	return err
}
