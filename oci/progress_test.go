package oci

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/vmbench/runner/testimages"
	"github.com/vmbench/runner/testimages/testregistry"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (what a user's terminal looks like to us).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

func TestPullShowsProgressOnTerminal(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	push(t, reg.Host+"/test:basic", "basic", testimages.PushOptions{})
	master, slave := openPTY(t)
	defer master.Close()
	var drawn bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&drawn, master) // ends with EIO once the slave closes
		close(done)
	}()
	img, err := Resolve(context.Background(), reg.Host+"/test:basic", Options{CacheDir: t.TempDir(), Progress: slave})
	if err != nil {
		t.Fatal(err)
	}
	layerFiles(t, img.Image) // downloads the layer
	slave.Close()
	<-done
	t.Logf("drawn: %q", drawn.String())
	if !strings.Contains(drawn.String(), "pull ") || !strings.Contains(drawn.String(), "MB") && !strings.Contains(drawn.String(), "kB") {
		t.Errorf("no progress bar drawn on the terminal: %q", drawn.String())
	}
}
