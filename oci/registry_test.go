package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/vmbench/runner/testimages"
	"github.com/vmbench/runner/testimages/testregistry"
)

func startRegistry(t *testing.T, opts testregistry.Options) *testregistry.Registry {
	t.Helper()
	r, err := testregistry.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	t.Logf("registry %s at %s", r.Kind, r.Host)
	return r
}

func push(t *testing.T, ref, image string, opts testimages.PushOptions) v1.Hash {
	t.Helper()
	img, err := testimages.Build(image)
	if err != nil {
		t.Fatal(err)
	}
	d, err := testimages.Push(ref, img, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// proxy sits in front of a real registry, counts requests and can tamper with manifests.
type proxy struct {
	srv    *httptest.Server
	mu     sync.Mutex
	seen   []string // "METHOD PATH"
	tamper bool     // append a byte to manifest bodies fetched by digest
}

func newProxy(t *testing.T, upstream string) *proxy {
	p := &proxy{}
	u, _ := url.Parse("http://" + upstream)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		p.mu.Lock()
		tamper := p.tamper
		p.mu.Unlock()
		if tamper && resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/manifests/sha256:") {
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body.Close()
			b = append(b, ' ')
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
		}
		return nil
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.Path)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *proxy) host() string { return strings.TrimPrefix(p.srv.URL, "http://") }

func (p *proxy) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.seen
	p.seen = nil
	return s
}

func blobGets(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "/blobs/") {
			out = append(out, r)
		}
	}
	return out
}

func TestRegistryPullByTagAndDigestWithCache(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	want := push(t, reg.Host+"/test:basic", "basic", testimages.PushOptions{})
	p := newProxy(t, reg.Host)
	ctx := context.Background()
	cache := t.TempDir()
	opts := Options{CacheDir: cache}

	img, err := Resolve(ctx, p.host()+"/test:basic", opts)
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != want {
		t.Errorf("digest = %s, want %s", img.Digest, want)
	}
	checkBasic(t, img)
	first := p.take()
	if len(blobGets(first)) == 0 {
		t.Fatalf("first pull fetched no blobs: %v", first)
	}

	// Second run by tag: one HEAD for the tag, no blob or manifest downloads.
	img2, err := Resolve(ctx, p.host()+"/test:basic", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkBasic(t, img2)
	for _, r := range p.take() {
		if strings.HasPrefix(r, "GET ") && r != "GET /v2/" {
			t.Errorf("cached pull by tag downloaded %s", r)
		}
	}

	// By digest with a warm cache: no request at all.
	byDigest := p.host() + "/test@" + want.String()
	img3, err := Resolve(ctx, byDigest, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkBasic(t, img3)
	if reqs := p.take(); len(reqs) != 0 {
		t.Errorf("cached pull by digest made requests: %v", reqs)
	}

	// By digest with a cold cache, and tag+digest together.
	img4, err := Resolve(ctx, reg.Host+"/test:basic@"+want.String(), Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if img4.Digest != want {
		t.Errorf("tag@digest: digest = %s", img4.Digest)
	}
	checkBasic(t, img4)
}

func TestRegistryDigestVerified(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	want := push(t, reg.Host+"/test:basic", "basic", testimages.PushOptions{})
	p := newProxy(t, reg.Host)
	p.tamper = true
	_, err := Resolve(context.Background(), p.host()+"/test@"+want.String(), Options{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "does not match") && !errors.Is(err, ErrDigest) {
		t.Fatalf("tampered manifest: err = %v, want a digest mismatch", err)
	}
	t.Logf("tampered manifest: %v", err)

	// A digest the registry does not have is a clear not-found.
	other := mustDigest(t, "env")
	_, err = Resolve(context.Background(), reg.Host+"/test@"+other.String(), Options{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown digest: err = %v, want ErrNotFound", err)
	}
}

func TestRegistryNotFound(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	push(t, reg.Host+"/test:basic", "basic", testimages.PushOptions{})
	for _, ref := range []string{reg.Host + "/test:missing", reg.Host + "/nosuchrepo:latest"} {
		_, err := Resolve(context.Background(), ref, Options{CacheDir: t.TempDir()})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", ref, err)
			continue
		}
		if !strings.Contains(err.Error(), ref) {
			t.Errorf("%s: error does not name the reference: %v", ref, err)
		}
		t.Logf("%s: %v", ref, err)
	}
}

func writeDockerConfig(t *testing.T, host, user, pass string) {
	dir := t.TempDir()
	auth := base64(user + ":" + pass)
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

func TestRegistryBasicAuth(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{Username: "bench", Password: "s3cret"})
	want := push(t, reg.Host+"/private:basic", "basic", testimages.PushOptions{Username: "bench", Password: "s3cret"})
	ref := reg.Host + "/private:basic"

	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials
	_, err := Resolve(context.Background(), ref, Options{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("without credentials: err = %v, want ErrAuth", err)
	}
	t.Logf("without credentials: %v", err)

	writeDockerConfig(t, reg.Host, "bench", "wrong")
	if _, err := Resolve(context.Background(), ref, Options{CacheDir: t.TempDir()}); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong password: err = %v, want ErrAuth", err)
	}

	writeDockerConfig(t, reg.Host, "bench", "s3cret")
	img, err := Resolve(context.Background(), ref, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("with credentials from the Docker config: %v", err)
	}
	if img.Digest != want {
		t.Errorf("digest = %s, want %s", img.Digest, want)
	}
	checkBasic(t, img)
}

func TestRegistryBearerToken(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{BearerToken: "tok-123"})
	img0, err := testimages.Build("basic")
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Host + "/tok:basic")
	if err := remote.Write(ref, img0, remote.WithAuth(bearer("tok-123"))); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := Resolve(context.Background(), ref.String(), Options{CacheDir: t.TempDir()}); !errors.Is(err, ErrAuth) {
		t.Fatalf("without token: err = %v, want ErrAuth", err)
	}
	if _, err := Resolve(context.Background(), ref.String(), Options{CacheDir: t.TempDir(), Token: "bad"}); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong token: err = %v, want ErrAuth", err)
	}
	img, err := Resolve(context.Background(), ref.String(), Options{CacheDir: t.TempDir(), Token: "tok-123"})
	if err != nil {
		t.Fatalf("with token: %v", err)
	}
	checkBasic(t, img)
}

func TestRegistryPlatformIndex(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	amd, err := testimages.Build("basic")
	if err != nil {
		t.Fatal(err)
	}
	armCfg, _ := amd.ConfigFile()
	armCfg = armCfg.DeepCopy()
	armCfg.Architecture = "arm64"
	arm, err := mutate.ConfigFile(amd, armCfg)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	ref, _ := name.ParseReference(reg.Host + "/multi:latest")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	amdDigest, _ := amd.Digest()
	armDigest, _ := arm.Digest()
	ctx := context.Background()
	cache := t.TempDir()

	img, err := Resolve(ctx, ref.String(), Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != amdDigest {
		t.Errorf("default platform: digest = %s, want linux/amd64 %s", img.Digest, amdDigest)
	}
	img, err = Resolve(ctx, ref.String(), Options{CacheDir: cache, Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != armDigest {
		t.Errorf("linux/arm64: digest = %s, want %s", img.Digest, armDigest)
	}
	_, err = Resolve(ctx, ref.String(), Options{CacheDir: cache, Platform: "linux/s390x"})
	if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "linux/amd64, linux/arm64") {
		t.Errorf("missing platform: err = %v, want ErrPlatform listing linux/amd64, linux/arm64", err)
	}
	t.Logf("missing platform: %v", err)
}
