package guest

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// HostCID is the vsock context id of the host (VMADDR_CID_HOST).
const HostCID = unix.VMADDR_CID_HOST

// Connect returns the connection to the host for a: AF_VSOCK to the host's port in a VM,
// the inherited Unix socket in the sandbox.
func Connect(a Args) (net.Conn, error) {
	if a.Mode == ModeSandbox {
		return inheritedConn(a.FD)
	}
	return dialVsock(HostCID, a.VsockPort)
}

// inheritedConn wraps an inherited, connected socket. The descriptor is marked close-on-exec
// first: the workload must never hold the result channel.
func inheritedConn(fd int) (net.Conn, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("connect: fd %d: %w", fd, err)
	}
	f := os.NewFile(uintptr(fd), "host")
	defer f.Close() // FileConn dups it
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("connect: fd %d: %w", fd, err)
	}
	return c, nil
}

// Connection attempts to the host: the VMM listens before the guest boots, so a refusal is
// unusual and short-lived (a VMM that is still wiring up its socket).
const (
	dialAttempts = 20
	dialBackoff  = 100 * time.Millisecond
)

// dialVsock connects a stream socket to cid:port. The socket is connected in blocking mode
// and then made non-blocking, so the returned conn goes through Go's poller like any other.
func dialVsock(cid, port uint32) (net.Conn, error) {
	var lastErr error
	for range dialAttempts {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("connect: vsock socket: %w", err)
		}
		err = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
		if err == nil {
			if err := unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
				return nil, fmt.Errorf("connect: vsock: %w", err)
			}
			local := vsockAddr{port: 0}
			if sa, err := unix.Getsockname(fd); err == nil {
				if vm, ok := sa.(*unix.SockaddrVM); ok {
					local = vsockAddr{cid: vm.CID, port: vm.Port}
				}
			}
			return &vsockConn{File: os.NewFile(uintptr(fd), "vsock"), local: local, remote: vsockAddr{cid, port}}, nil
		}
		unix.Close(fd)
		lastErr = err
		if err != unix.ECONNRESET && err != unix.ECONNREFUSED && err != unix.ETIMEDOUT && err != unix.EINTR {
			break
		}
		time.Sleep(dialBackoff)
	}
	return nil, fmt.Errorf("connect: vsock %d:%d: %w", cid, port, lastErr)
}

// vsockConn is a net.Conn over an AF_VSOCK stream socket. The standard library's
// net.FileConn does not know AF_VSOCK, but *os.File on a non-blocking socket already reads,
// writes, closes and honours deadlines through the runtime poller; this adds the addresses.
type vsockConn struct {
	*os.File
	local, remote vsockAddr
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

type vsockAddr struct{ cid, port uint32 }

func (vsockAddr) Network() string  { return "vsock" }
func (a vsockAddr) String() string { return fmt.Sprintf("vm(%d):%d", a.cid, a.port) }
