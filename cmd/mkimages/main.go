// Command mkimages builds the spec's scenario test images (package testimages) without
// Docker and writes them as one OCI image layout, optionally also as docker-archive
// tarballs and pushed to a registry.
//
//	mkimages -o DIR [--archives DIR] [--push HOST:PORT[/PREFIX]] [--insecure] [NAME...]
//
// Each image is tagged with its name in the layout (oci:DIR:basic), as NAME.tar with tag
// test:NAME in the archive directory, and as HOST/PREFIX/test:NAME in the registry
// (PREFIX defaults to nothing). With no NAME, all images are built.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vmbench/runner/testimages"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "mkimages: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimages", flag.ContinueOnError)
	out := fs.String("o", "", "OCI layout directory to write (required)")
	archives := fs.String("archives", "", "also write docker-archive tarballs NAME.tar into this directory")
	push := fs.String("push", "", "also push to this registry (HOST:PORT[/PREFIX]) as test:NAME")
	insecure := fs.Bool("insecure", false, "plain HTTP to the registry (loopback always is)")
	list := fs.Bool("list", false, "print the image names and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, n := range testimages.Names() {
			cmd, _ := testimages.Cmd(n)
			fmt.Printf("%-12s %q\n", n, cmd)
		}
		return nil
	}
	if *out == "" {
		return fmt.Errorf("-o DIR is required")
	}
	names := fs.Args()
	if len(names) == 0 {
		names = testimages.Names()
	}
	imgs := map[string]v1.Image{}
	for _, n := range names {
		img, err := testimages.Build(n)
		if err != nil {
			return err
		}
		imgs[n] = img
	}
	if err := testimages.WriteLayout(*out, imgs); err != nil {
		return err
	}
	fmt.Printf("wrote %d images to %s (use oci:%s:NAME)\n", len(imgs), *out, *out)
	if *archives != "" {
		if err := os.MkdirAll(*archives, 0o755); err != nil {
			return err
		}
		for _, n := range names {
			file := filepath.Join(*archives, n+".tar")
			if err := testimages.WriteDockerArchive(file, "test:"+n, imgs[n]); err != nil {
				return err
			}
		}
		fmt.Printf("wrote %d docker archives to %s\n", len(names), *archives)
	}
	if *push != "" {
		prefix := strings.TrimSuffix(*push, "/")
		for _, n := range names {
			ref := prefix + "/test:" + n
			d, err := testimages.Push(ref, imgs[n], testimages.PushOptions{Insecure: *insecure})
			if err != nil {
				return err
			}
			fmt.Printf("pushed %s@%s\n", ref, d)
		}
	}
	return nil
}
