package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the runner binary: `runner run` re-executes
// its own executable as `runner vmm` for each VM, and in tests that executable is this one.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "vmm" {
		os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
