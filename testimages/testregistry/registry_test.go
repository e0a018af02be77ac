package testregistry

import (
	"context"
	"net/http"
	"testing"
)

func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		kind string
	}{
		{"docker-registry with htpasswd", Options{Username: "u", Password: "p"}, "docker-registry"},
		{"in-process with basic auth", Options{Username: "u", Password: "p", InProcess: true}, "ggcr"},
		{"in-process with bearer token", Options{BearerToken: "t"}, "ggcr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Start(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Kind != tc.kind {
				if tc.kind == "docker-registry" {
					t.Skipf("docker-registry not installed: got %s", r.Kind)
				}
				t.Fatalf("kind = %s, want %s", r.Kind, tc.kind)
			}
			resp, err := http.Get("http://" + r.Host + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("anonymous /v2/: %d, want 401", resp.StatusCode)
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.Host+"/v2/", nil)
			if tc.opts.BearerToken != "" {
				req.Header.Set("Authorization", "Bearer "+tc.opts.BearerToken)
			} else {
				req.SetBasicAuth(tc.opts.Username, tc.opts.Password)
			}
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("authenticated /v2/: %d, want 200", resp.StatusCode)
			}
		})
	}
}
