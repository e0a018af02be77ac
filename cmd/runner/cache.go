package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmbench/runner/cache"
)

func newCacheCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Show or prune the runner's cache (image blobs, root filesystems, kernel builds)",
		Long: `The runner caches image blobs by digest, built root filesystem images and guest kernel
builds under $RUNNER_CACHE_DIR (default ~/.cache/vmbench). Nothing there is ever needed: what is
removed is downloaded or rebuilt on the next run that needs it.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCacheDuCmd(stdout), newCachePruneCmd(stdout))
	return cmd
}

// areaUsage sums one cache area.
type areaUsage struct {
	Area    string `json:"area"`
	Entries int    `json:"entries"`
	Bytes   int64  `json:"bytes"`
}

func newCacheDuCmd(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "du",
		Short: "Print the disk space each cache area takes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root := cache.Dir()
			entries, err := cache.Scan(root)
			if err != nil {
				return fmt.Errorf("cache %s: %w", root, err)
			}
			areas := []areaUsage{{Area: cache.AreaOCI}, {Area: cache.AreaRootfs}, {Area: cache.AreaKernel}}
			for _, e := range entries {
				for i := range areas {
					if areas[i].Area == e.Area {
						areas[i].Entries++
						areas[i].Bytes += e.Bytes
					}
				}
			}
			if asJSON {
				return writeJSON(stdout, struct {
					Dir     string        `json:"dir"`
					Areas   []areaUsage   `json:"areas"`
					Entries []cache.Entry `json:"entries"`
				}{root, areas, entries})
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "AREA\tENTRIES\tSIZE\t\n")
			total := areaUsage{Area: "total"}
			for _, a := range areas {
				fmt.Fprintf(tw, "%s\t%d\t%s\t\n", a.Area, a.Entries, humanBytes(a.Bytes))
				total.Entries += a.Entries
				total.Bytes += a.Bytes
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t\n", total.Area, total.Entries, humanBytes(total.Bytes))
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "in %s\n", root)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the areas and every entry as JSON")
	return cmd
}

func newCachePruneCmd(stdout io.Writer) *cobra.Command {
	var (
		opts   cache.PruneOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove cached blobs and root filesystems (and, with --kernels, old kernel builds)",
		Long: `Remove the cache entries not used for --older-than (default: all of them). Runs that are
starting hold the cache while they read it; prune waits up to --wait for them. The kernel build
each flavour currently uses is always kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.OlderThan < 0 {
				return fmt.Errorf("--older-than %s: must not be negative", opts.OlderThan)
			}
			removed, err := cache.Prune(cmd.Context(), cache.Dir(), opts)
			if errors.Is(err, cache.ErrBusy) {
				err = fmt.Errorf("cache prune: %w for %s: retry, or wait longer with --wait", err, opts.Wait)
			}
			var freed int64
			for _, e := range removed {
				freed += e.Bytes
			}
			if asJSON {
				if removed == nil {
					removed = []cache.Entry{}
				}
				if jerr := writeJSON(stdout, struct {
					DryRun  bool          `json:"dry_run"`
					Removed []cache.Entry `json:"removed"`
					Freed   int64         `json:"freed_bytes"`
				}{opts.DryRun, removed, freed}); jerr != nil && err == nil {
					err = jerr
				}
				return err
			}
			verb := "removed"
			if opts.DryRun {
				verb = "would remove"
			}
			for _, e := range removed {
				fmt.Fprintf(stdout, "%s %s %s (%s, last used %s ago)\n", verb, e.Area, e.Path,
					humanBytes(e.Bytes), time.Since(e.LastUsed).Round(time.Second))
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s %d entries, %s\n", verb, len(removed), humanBytes(freed))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&opts.OlderThan, "older-than", 0, "keep what was used within this duration (e.g. 168h); 0 = remove all")
	fl.BoolVar(&opts.Kernels, "kernels", false, "also remove kernel builds no flavour uses now, and leftover kernel source trees")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print what would be removed, remove nothing")
	fl.DurationVar(&opts.Wait, "wait", 30*time.Second, "how long to wait for starting runs to release the cache")
	fl.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// humanBytes formats a size with a binary unit: 0 B, 512 B, 1.5 KiB, 98.1 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n), 0
	for v >= unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[exp-1])
}
