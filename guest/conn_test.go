package guest

import (
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// vsockConn is a net.Conn over any stream socket held in an *os.File; exercise it over a
// Unix socket pair (this host has no vsock loopback transport).
func TestVsockConnAdapter(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[0], true)
	c := &vsockConn{File: os.NewFile(uintptr(fds[0]), "vsock"), local: vsockAddr{3, 1024}, remote: vsockAddr{HostCID, 10000}}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()

	if c.LocalAddr().Network() != "vsock" || c.RemoteAddr().String() != "vm(2):10000" {
		t.Fatalf("addresses %v %v", c.LocalAddr(), c.RemoteAddr())
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	// Deadlines work: the fd is in the runtime poller.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(buf); !os.IsTimeout(err) {
		t.Fatalf("read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	peer.Write([]byte("pong"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// The inherited socket is taken over (its original descriptor closed), so the workload can
// never inherit the result channel.
func TestInheritedConn(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0) // inheritable, as passed down
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	c, err := inheritedConn(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("original descriptor still open: %v", err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := inheritedConn(9999); err == nil {
		t.Fatal("a closed descriptor was accepted")
	}
}
