// Command runner runs a benchmark from an OCI image inside its own KVM microVM.
//
//	runner run --image REF [flags] [-- CMD ARGS...]
//	runner inspect --image REF
//	runner rootfs --image REF -o FILE
//	runner cache du | prune [--older-than D] [--kernels]
//
// Exit status follows docker run: the command's own status, 124 when the benchmark timed
// out, 125 when the runner itself failed (bad image, no kernel, no KVM, ...), 126 when the
// command could not be run and 127 when it was not found; 130 when the runner was
// interrupted (SIGINT/SIGTERM) before the command reported.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes of the runner itself (docker run's convention).
const (
	exitTimeout      = 124
	exitRunnerError  = 125
	exitCannotInvoke = 126
	exitNotFound     = 127
	// exitInterrupted is 128+SIGINT, what a shell reports for a command stopped by Ctrl-C.
	exitInterrupted = 130
)

// exitCodeError carries an exit status through cobra without printing anything more.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the CLI and maps its outcome to an exit status. Errors are printed as one
// line: "runner: <what failed>: <why>".
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	fmt.Fprintf(stderr, "runner: %v\n", err)
	return exitRunnerError
}

type globalFlags struct {
	logLevel string
	logJSON  bool
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var g globalFlags
	root := &cobra.Command{
		Use:           "runner",
		Short:         "Run benchmarks from OCI images inside isolated KVM microVMs",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return setupLogging(stderr, g)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&g.logJSON, "log-json", false, "write logs as JSON lines")
	// Flag errors (unknown flag, bad value) are runner errors: exit 125 with one line.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.AddCommand(subcommands(stdout, stderr)...)
	return root
}

func setupLogging(w io.Writer, g globalFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", g.logLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if g.logJSON {
		h = slog.NewJSONHandler(w, opts)
	}
	slog.SetDefault(slog.New(h))
	return nil
}
