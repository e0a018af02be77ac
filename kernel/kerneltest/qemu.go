package kerneltest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vmbench/runner/kernel"
)

// Accel is qemu's accelerator.
type Accel string

const (
	// TCG is qemu's binary translator: no /dev/kvm needed, and here ~40x faster than kvm-pvm's
	// emulated kernel (kernel to /init in under a second).
	TCG Accel = "tcg"
	// KVM is /dev/kvm (-enable-kvm).
	KVM Accel = "kvm"
)

// Drive is a raw disk image attached as a virtio-blk-device (virtio-mmio); the guest sees
// them as /dev/vda, /dev/vdb, ... in order.
type Drive struct {
	Path     string
	ReadOnly bool
}

// Qemu is one qemu-system-x86_64 -M microvm,acpi=off run. ACPI is off because our kernel has
// none; then qemu announces its virtio-mmio devices with virtio_mmio.device= words on the
// command line and its firmware writes an MP table for SMP, as our VMM does.
type Qemu struct {
	Binary    string         // default "qemu-system-x86_64"
	Kernel    string         // vmlinux (PVH) path; required
	Initrd    string         // optional initramfs
	Cmdline   []string       // kernel command-line words
	Accel     Accel          // default TCG
	Flavour   kernel.Flavour // with KVM: KVMPVM selects the CPU model kvm-pvm needs
	CPUs      int            // default 1
	MemoryMiB int            // default 256
	Drives    []Drive        // virtio-blk devices, in order
	ExtraArgs []string       // more qemu arguments, appended last
	// Marker is a substring of the console line to time; empty means no marker.
	Marker string
	// Timeout is the deadline for the whole run (default 2 minutes); qemu is killed then.
	Timeout time.Duration
	// Console, when set, receives a live copy of the serial console.
	Console io.Writer
}

// QemuResult is what a run produced.
type QemuResult struct {
	Args       []string      // qemu's full argument list
	Console    string        // serial console (guest output), "\r\n" turned into "\n"
	Stderr     string        // qemu's own messages (e.g. the register dump of a KVM internal error)
	MarkerSeen bool          // a console line contained Marker
	ToMarker   time.Duration // from qemu's start to the first line containing Marker
	Elapsed    time.Duration // from qemu's start to its exit
	ExitCode   int           // qemu's exit status; -1 when it was killed
	Killed     bool          // killed at the deadline or on cancellation
}

// ErrDeadline means qemu was still running at the deadline and was killed; the result still
// holds the console up to that point.
var ErrDeadline = errors.New("qemu killed at deadline")

// args returns qemu's argument list.
func (q Qemu) args() ([]string, error) {
	if q.Kernel == "" {
		return nil, errors.New("qemu: no kernel")
	}
	cpus, mem := q.CPUs, q.MemoryMiB
	if cpus == 0 {
		cpus = 1
	}
	if mem == 0 {
		mem = 256
	}
	a := []string{
		"-M", "microvm,acpi=off",
		"-m", strconv.Itoa(mem) + "M",
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-serial", "stdio",
		// A guest reset (reboot=k/t, triple fault) ends qemu with status 0.
		"-no-reboot",
		"-kernel", q.Kernel,
	}
	switch q.Accel {
	case "", TCG:
		a = append(a, "-accel", "tcg")
	case KVM:
		a = append(a, "-enable-kvm")
		if q.Flavour == kernel.KVMPVM {
			// kvm-pvm's emulator has no CMPXCHG16B (the one CPUID bit it honours), and an
			// AMD-vendor model without XSAVEERPTR makes the kernel use FNCLEX/EMMS, which it
			// cannot execute either (shared/notes/kvm-here.md).
			a = append(a, "-cpu", "qemu64,-cx16,+xsaveerptr")
		} else {
			a = append(a, "-cpu", "host")
		}
	default:
		return nil, fmt.Errorf("qemu: unknown accelerator %q", q.Accel)
	}
	if q.Initrd != "" {
		a = append(a, "-initrd", q.Initrd)
	}
	for i, d := range q.Drives {
		id := "drive" + strconv.Itoa(i)
		spec := "id=" + id + ",file=" + d.Path + ",format=raw,if=none"
		if d.ReadOnly {
			spec += ",readonly=on"
		}
		a = append(a, "-drive", spec, "-device", "virtio-blk-device,drive="+id)
	}
	if len(q.Cmdline) > 0 {
		a = append(a, "-append", kernel.Join(q.Cmdline))
	}
	return append(a, q.ExtraArgs...), nil
}

// Run starts qemu and waits for it to exit or for the deadline (Timeout or ctx, whichever is
// first), then kills it. It returns an error only when qemu cannot be started or was killed
// (ErrDeadline, or ctx's error); qemu's own exit status is in ExitCode.
func (q Qemu) Run(ctx context.Context) (QemuResult, error) {
	args, err := q.args()
	if err != nil {
		return QemuResult{}, err
	}
	res := QemuResult{Args: args, ExitCode: -1}
	timeout := q.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	bin := q.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	cmd := exec.CommandContext(runCtx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("qemu: %w", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("qemu: %w", err)
	}

	var console strings.Builder
	// The reader goroutine owns console and res's marker fields until done is closed.
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				clean := strings.ReplaceAll(line, "\r", "")
				console.WriteString(clean)
				if q.Console != nil {
					_, _ = io.WriteString(q.Console, clean)
				}
				if q.Marker != "" && strings.Contains(line, q.Marker) {
					if !res.MarkerSeen {
						res.MarkerSeen = true
						res.ToMarker = time.Since(start)
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	<-done
	waitErr := cmd.Wait()
	res.Elapsed = time.Since(start)
	res.Console = console.String()
	res.Stderr = stderr.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if runCtx.Err() != nil {
		res.Killed = true
		res.ExitCode = -1
		if ctx.Err() != nil {
			return res, fmt.Errorf("qemu: %w", ctx.Err())
		}
		return res, fmt.Errorf("qemu: %w after %v", ErrDeadline, timeout)
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return res, fmt.Errorf("qemu: %w", waitErr)
	}
	return res, nil
}

// Lines returns the console lines that start with prefix, with the prefix removed.
func (r QemuResult) Lines(prefix string) []string {
	var out []string
	for _, l := range strings.Split(r.Console, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

// Between returns the console text between the first line equal to begin and the next line
// equal to end, and whether both were found.
func (r QemuResult) Between(begin, end string) (string, bool) {
	lines := strings.Split(r.Console, "\n")
	for i, l := range lines {
		if l != begin {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if lines[j] == end {
				return strings.Join(lines[i+1:j], "\n"), true
			}
		}
		return "", false
	}
	return "", false
}
