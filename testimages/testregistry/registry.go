package testregistry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/crypto/bcrypt"
)

// DockerRegistryBin is the Debian docker-registry binary.
const DockerRegistryBin = "/usr/bin/docker-registry"

// Options configure a registry.
type Options struct {
	Username, Password string // require HTTP basic auth with these credentials
	BearerToken        string // require "Authorization: Bearer BearerToken" (in-process registry)
	InProcess          bool   // use go-containerregistry's pkg/registry even if docker-registry exists
}

// Registry is a running registry at Host ("127.0.0.1:PORT").
type Registry struct {
	Host string
	Kind string // "docker-registry" or "ggcr"

	dir  string
	cmd  *exec.Cmd
	done chan error
	log  *bytes.Buffer
	srv  *httptest.Server
}

// Start starts a registry on a free loopback port and waits until it answers /v2/.
func Start(ctx context.Context, opts Options) (*Registry, error) {
	if opts.BearerToken == "" && !opts.InProcess {
		if _, err := os.Stat(DockerRegistryBin); err == nil {
			return startDockerRegistry(ctx, opts)
		}
		slog.Warn("testregistry: docker-registry not installed; using go-containerregistry's pkg/registry", "want", DockerRegistryBin)
	}
	return startInProcess(opts), nil
}

func startInProcess(opts Options) *Registry {
	var h http.Handler = registry.New(registry.Logger(nilLogger()))
	if opts.Username != "" || opts.BearerToken != "" {
		h = authHandler(h, opts)
	}
	srv := httptest.NewServer(h)
	return &Registry{Host: strings.TrimPrefix(srv.URL, "http://"), Kind: "ggcr", srv: srv}
}

// authHandler enforces basic or bearer auth the way a registry does: 401 with a
// WWW-Authenticate challenge on /v2/ and everything below it.
func authHandler(next http.Handler, opts Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if opts.BearerToken != "" {
			ok = r.Header.Get("Authorization") == "Bearer "+opts.BearerToken
		} else if u, p, has := r.BasicAuth(); has {
			ok = u == opts.Username && p == opts.Password
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startDockerRegistry(ctx context.Context, opts Options) (*Registry, error) {
	dir, err := os.MkdirTemp("", "testregistry-*")
	if err != nil {
		return nil, fmt.Errorf("testregistry: %w", err)
	}
	r, err := launch(ctx, dir, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

func launch(ctx context.Context, dir string, opts Options) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("testregistry: free port: %w", err)
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	auth := ""
	if opts.Username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("testregistry: htpasswd: %w", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("testregistry: htpasswd: %w", err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: testregistry-not-secret
%s`, filepath.Join(dir, "storage"), host, auth)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("testregistry: config: %w", err)
	}
	r := &Registry{Host: host, Kind: "docker-registry", dir: dir, log: new(bytes.Buffer), done: make(chan error, 1)}
	r.cmd = exec.Command(DockerRegistryBin, "serve", cfgPath)
	r.cmd.Stdout = r.log
	r.cmd.Stderr = r.log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("testregistry: start %s: %w", DockerRegistryBin, err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	if err := r.waitReady(ctx, 15*time.Second); err != nil {
		r.stop()
		return nil, fmt.Errorf("testregistry: %s: %w; log: %s", DockerRegistryBin, err, r.log.String())
	}
	return r, nil
}

// waitReady polls GET /v2/ until the registry answers (200, or 401 with auth on).
func (r *Registry) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-r.done:
			r.done <- err
			return fmt.Errorf("exited before serving: %v", err)
		default:
		}
		resp, err := client.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %s (last error: %v)", limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *Registry) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// Close stops the registry and deletes its storage.
func (r *Registry) Close() error {
	if r.srv != nil {
		r.srv.Close()
		return nil
	}
	r.stop()
	if err := os.RemoveAll(r.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("testregistry: %w", err)
	}
	return nil
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }
