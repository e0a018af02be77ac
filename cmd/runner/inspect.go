package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmbench/runner/cache"
	"github.com/vmbench/runner/oci"
)

// ociFlags are the image-selection flags shared by the commands that take --image.
type ociFlags struct {
	image    string
	platform string
	token    string
	insecure bool
}

func (f *ociFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "image: registry ref, oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE or a path (required)")
	fl.StringVar(&f.platform, "platform", "", "platform to pick from a multi-platform image (default linux/amd64)")
	fl.StringVar(&f.token, "token", "", "registry bearer token (default: Docker config and credential helpers)")
	fl.BoolVar(&f.insecure, "insecure-registry", false, "allow plain HTTP to the registry (always allowed for loopback)")
	cmd.MarkFlagRequired("image")
}

// resolve resolves --image, drawing pull progress on stderr when it is a terminal.
func (f *ociFlags) resolve(ctx context.Context, stderr io.Writer) (*oci.Image, error) {
	return oci.Resolve(ctx, f.image, oci.Options{
		Platform: f.platform,
		Insecure: f.insecure,
		Token:    f.token,
		Progress: stderr,
	})
}

// inspectOutput is what `runner inspect` prints.
type inspectOutput struct {
	Ref       string        `json:"ref"`
	Digest    string        `json:"digest"`
	MediaType string        `json:"media_type"`
	Platform  string        `json:"platform,omitempty"`
	Config    oci.Config    `json:"config"`
	Argv      []string      `json:"argv"`
	Layers    []inspectBlob `json:"layers"`
}

type inspectBlob struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
}

func newInspectCmd(stdout, stderr io.Writer) *cobra.Command {
	var f ociFlags
	cmd := &cobra.Command{
		Use:   "inspect --image REF",
		Short: "Print an image's resolved digest and config as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := cache.LockShared(cmd.Context(), cache.Dir()) // a prune waits
			if err != nil {
				return err
			}
			defer l.Unlock()
			img, err := f.resolve(cmd.Context(), stderr)
			if err != nil {
				return err
			}
			out, err := describe(img)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
	f.register(cmd)
	return cmd
}

func describe(img *oci.Image) (*inspectOutput, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: manifest: %w", img.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: config: %w", img.Ref, err)
	}
	out := &inspectOutput{
		Ref:       img.Ref,
		Digest:    img.Digest.String(),
		MediaType: string(m.MediaType),
		Config:    img.Config,
		Argv:      img.Config.Argv(),
		Layers:    []inspectBlob{},
	}
	if cf.OS != "" {
		out.Platform = cf.OS + "/" + cf.Architecture
		if cf.Variant != "" {
			out.Platform += "/" + cf.Variant
		}
	}
	for _, l := range m.Layers {
		out.Layers = append(out.Layers, inspectBlob{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
	}
	return out, nil
}

// defaultInitPath is bencher-init next to the runner binary, when it is there.
func defaultInitPath() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "bencher-init")
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p
	}
	return ""
}
