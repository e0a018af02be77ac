// Package testregistry runs a real container registry on loopback for tests: Debian's
// docker-registry (distribution 2.8) with a temporary storage directory and, when asked,
// htpasswd (bcrypt) basic auth. When the binary is absent it falls back to
// go-containerregistry's in-process pkg/registry behind the same auth rule, and says so
// through slog. A bearer-token registry (for --token) always uses the in-process one,
// because docker-registry's token auth needs a separate token server.
package testregistry
