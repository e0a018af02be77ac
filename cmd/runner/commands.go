package main

import (
	"io"

	"github.com/spf13/cobra"
)

// subcommands lists the runner's subcommands; each lives in its own file.
func subcommands(stdout, stderr io.Writer) []*cobra.Command {
	return []*cobra.Command{
		newRunCmd(stdout, stderr),
		newVMMCmd(stdout, stderr),
		newInspectCmd(stdout, stderr),
		newRootfsCmd(stdout, stderr),
		newCacheCmd(stdout, stderr),
	}
}
