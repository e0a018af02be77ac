package guest

import (
	"strconv"
	"strings"

	"github.com/vmbench/runner/protocol"
)

// DefaultVsockPort is the host port the init connects to when no --vsock-port is given.
const DefaultVsockPort = protocol.VsockPort

// Mode is how the init reaches the host, and with it which system setup it does.
type Mode int

const (
	// ModeVM: PID 1 of a VM, connects over AF_VSOCK, owns the whole system setup.
	ModeVM Mode = iota
	// ModeSandbox: PID 1 of namespaces prepared by runner/sandbox, talks over an inherited
	// Unix socket; the root and /dev are already in place.
	ModeSandbox
)

func (m Mode) String() string {
	if m == ModeSandbox {
		return "sandbox"
	}
	return "vm"
}

// Args is the init's command line.
type Args struct {
	Mode      Mode
	VsockPort uint32 // ModeVM
	FD        int    // ModeSandbox: the connected socket
}

// ParseArgs reads the init's arguments. The kernel hands init every command-line word it
// does not know, so unknown or malformed words are ignored rather than fatal; the returned
// list names them for a log line.
func ParseArgs(args []string) (Args, []string) {
	a := Args{Mode: ModeVM, VsockPort: DefaultVsockPort}
	var ignored []string
	for _, arg := range args {
		name, value, _ := strings.Cut(arg, "=")
		switch name {
		case "--vsock-port":
			p, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				ignored = append(ignored, arg)
				continue
			}
			a.Mode, a.VsockPort = ModeVM, uint32(p)
		case "--fd":
			fd, err := strconv.Atoi(value)
			if err != nil || fd < 3 {
				ignored = append(ignored, arg)
				continue
			}
			a.Mode, a.FD = ModeSandbox, fd
		default:
			ignored = append(ignored, arg)
		}
	}
	return a, ignored
}
