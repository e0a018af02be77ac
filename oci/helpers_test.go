package oci

import (
	base64pkg "encoding/base64"

	"github.com/google/go-containerregistry/pkg/authn"
)

func base64(s string) string { return base64std.EncodeToString([]byte(s)) }

var base64std = base64pkg.StdEncoding

func bearer(tok string) authn.Authenticator {
	return authn.FromConfig(authn.AuthConfig{RegistryToken: tok})
}
