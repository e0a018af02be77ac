package session

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vmbench/runner/guest"
	"github.com/vmbench/runner/protocol"
)

// streamBytes is what each benchmark iteration moves: enough that process start-up is
// noise next to the copying.
const streamBytes = 256 << 20

// BenchmarkStdoutThroughput measures the command's stdout travelling init → host: a process
// writes streamBytes to its stdout pipe, the init (guest.Serve, as an ordinary process here)
// frames it onto a Unix socket and the session delivers it to an io.Writer. The baseline is
// the plainest copy with the same producer and socket: io.Copy from the pipe onto the
// socket, read off the far end. Iterations alternate between the two so that a busy machine
// slows both alike; it reports both throughputs and protocol/baseline.
func BenchmarkStdoutThroughput(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the guest hardens its workload, which needs root")
	}
	dd, err := exec.LookPath("dd")
	if err != nil {
		b.Skip("dd not installed")
	}
	argv := []string{dd, "if=/dev/zero", "bs=1M", fmt.Sprintf("count=%d", streamBytes>>20), "status=none"}

	viaProtocol := func() {
		host, g := socketPair(b)
		go guest.Serve(g, guest.Options{Root: guest.SystemRoot})
		res, err := Run(context.Background(), host, protocol.RunConfig{Argv: argv, WorkDir: "/"}, Options{Stdout: io.Discard})
		if err != nil || res.StdoutBytes != streamBytes {
			b.Fatalf("run: %v, %d bytes", err, res.StdoutBytes)
		}
	}
	baseline := func() {
		host, g := socketPair(b)
		cmd := exec.Command(argv[0], argv[1:]...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		done := make(chan int64)
		go func() { n, _ := io.Copy(io.Discard, host); done <- n }()
		if _, err := io.Copy(g, out); err != nil {
			b.Fatal(err)
		}
		cmd.Wait()
		g.Close()
		if n := <-done; n != streamBytes {
			b.Fatalf("baseline moved %d bytes", n)
		}
	}
	var tProtocol, tBaseline time.Duration
	for range b.N {
		t := time.Now()
		viaProtocol()
		tProtocol += time.Since(t)
		t = time.Now()
		baseline()
		tBaseline += time.Since(t)
	}
	mbps := func(d time.Duration) float64 { return float64(streamBytes) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(tProtocol), "protocol-MB/s")
	b.ReportMetric(mbps(tBaseline), "baseline-MB/s")
	b.ReportMetric(mbps(tProtocol)/mbps(tBaseline), "protocol/baseline")
}
