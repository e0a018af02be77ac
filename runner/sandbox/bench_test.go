package sandbox

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/vmbench/runner/protocol"
	"github.com/vmbench/runner/runner/session"
)

// BenchmarkInitToExec measures, with the real bencher-init as PID 1 of a sandbox, the time
// from the init's main to the command's fork+exec on the guest's clock (mounts, loopback,
// Hello and RunConfig over the socket, user and PATH resolution, hardening), and the host's
// time from Start to the init's Hello. The baseline, in the same run, is a bare fork+exec+
// wait of the same command by the host (os/exec), the floor any init adds to.
func BenchmarkInitToExec(b *testing.B) {
	if testing.Short() {
		b.Skip("short")
	}
	needTools(b, "mkfs.ext4")
	img := makeImage(b, imageTree(b, true), FormatExt4)
	var initToExec, startToHello, bare time.Duration
	for range b.N {
		t0 := time.Now()
		sb, err := Start(context.Background(), Config{Image: img})
		if err != nil {
			b.Fatal(err)
		}
		res, err := session.Run(context.Background(), sb.Conn(), protocol.RunConfig{Argv: []string{"/bin/true"}, WorkDir: "/"}, session.Options{})
		if err != nil {
			b.Fatal(err)
		}
		sb.Close()
		initToExec += res.Exit.Started - res.Hello.InitStart
		startToHello += res.HelloAt.Sub(t0)

		t0 = time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
		bare += time.Since(t0)
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(b.N) }
	b.ReportMetric(ms(initToExec), "init-to-exec-ms")
	b.ReportMetric(ms(startToHello), "start-to-hello-ms")
	b.ReportMetric(ms(bare), "bare-exec-ms")
	b.ReportMetric(ms(initToExec)/ms(bare), "init-to-exec/bare-exec")
}
