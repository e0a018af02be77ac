// Command bencher-init is the guest's PID 1: it runs one benchmark command for the runner
// and reports the result over the host protocol. Build it static (CGO_ENABLED=0); the logic
// lives in package guest.
//
//	bencher-init [--vsock-port=N]   in a VM (the default; port 10000)
//	bencher-init --fd=N             in runner's sandbox, over the inherited socket N
package main

import (
	"os"

	"github.com/vmbench/runner/guest"
)

func main() {
	os.Exit(guest.Main(os.Args[1:]))
}
