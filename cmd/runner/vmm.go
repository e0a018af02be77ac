package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/vmbench/runner/runner/vm"
)

// newVMMCmd is the hidden `runner vmm` command: the VMM child process that `runner run`
// starts for each VM (package runner/vm). It takes its configuration on fd 3 and reports on
// fd 4; it is not meant to be run by hand.
func newVMMCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:    "vmm",
		Short:  "Run one microVM (internal: started by `runner run`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		// The child configures its own logging from its config.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code := vm.ChildMain(stdout, stderr); code != 0 {
				return &exitCodeError{code: code}
			}
			return nil
		},
	}
}
