package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmbench/runner/cache"
	"github.com/vmbench/runner/rootfs"
)

func newRootfsCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		f       ociFlags
		out     string
		format  string
		diskMiB int
		initBin string
	)
	cmd := &cobra.Command{
		Use:   "rootfs --image REF -o FILE",
		Short: "Build the root filesystem image (ext4 or squashfs) a run would boot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmtv, err := rootfs.ParseFormat(format)
			if err != nil {
				return err
			}
			switch initBin {
			case "none":
				initBin = ""
			case "":
				initBin = defaultInitPath()
				if initBin == "" {
					slog.Warn("no bencher-init next to the runner binary; the image will have no init (use --init PATH)")
				}
			}
			// Reads the cache from the resolve to the copy: a prune waits.
			l, err := cache.LockShared(cmd.Context(), cache.Dir())
			if err != nil {
				return err
			}
			defer l.Unlock()
			img, err := f.resolve(cmd.Context(), stderr)
			if err != nil {
				return err
			}
			base, err := rootfs.Build(cmd.Context(), img, rootfs.BuildOptions{Format: fmtv, DiskMiB: diskMiB, InitPath: initBin})
			if err != nil {
				return err
			}
			if err := rootfs.CopyForRun(base, out); err != nil {
				return err
			}
			st, err := os.Stat(out)
			if err != nil {
				return fmt.Errorf("rootfs: %w", err)
			}
			fmt.Fprintf(stdout, "%s: %s, %.1f MiB, image %s\n", out, fmtv, float64(st.Size())/(1<<20), img.Digest)
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&out, "output", "o", "", "where to write the image (required)")
	fl.StringVar(&format, "format", "ext4", "filesystem: ext4 or squashfs")
	fl.IntVar(&diskMiB, "disk", 0, "ext4 image size in MiB (default: content plus headroom)")
	fl.StringVar(&initBin, "init", "", `guest init binary to install at /.bencher/init ("" = bencher-init next to runner, "none" = no init)`)
	cmd.MarkFlagRequired("output")
	return cmd
}
