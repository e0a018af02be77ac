package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/oci"
	"github.com/vmbench/runner/rootfs"
	"github.com/vmbench/runner/runner"
	"github.com/vmbench/runner/runner/session"
	"github.com/vmbench/runner/vmm/kvm"
)

// runFlags are the flags of `runner run`.
type runFlags struct {
	oci        ociFlags
	backend    string
	timeout    string
	outputs    []string
	outputDir  string
	env        []string
	workdir    string
	user       string
	entrypoint string
	cmd        []string
	hostname   string
	format     string
	diskMiB    int
	vcpus      int
	memoryMiB  int
	initBin    string
	allowPerf  bool
	console    bool
	json       bool

	// VM backend.
	kernel      string
	cpuTemplate string
	bootTimeout string
	iter        int
	verbose     bool
	kernelArgs  string
}

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --image REF [flags] [-- CMD ARGS...]",
		Short: "Run an image's command in an isolated machine and report its output and exit status",
		Long: `Run an image's command in an isolated machine (a KVM microVM, or the namespace sandbox)
and report its output and exit status.

The command's stdout and stderr are printed as they come; the exit status is the command's
own, 124 when it timed out, 125 when the runner failed, 126 when the command cannot be
invoked and 127 when it was not found. Output files (--output) land as DIR/<base name>.

Backends: "kvm" boots the image in a microVM; "sandbox" runs it in namespaces on the host
kernel (container-grade isolation, no /dev/kvm needed); "auto" picks kvm when /dev/kvm is
usable and falls back to sandbox with a warning.

The guest kernel is --kernel, else $RUNNER_KERNEL, else the one "make kernel" built.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd, f, args, stdout, stderr)
		},
	}
	f.oci.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.backend, "backend", "auto", "where to run: kvm, sandbox or auto")
	fl.StringVar(&f.timeout, "timeout", "0", "time limit of the command: seconds or a duration (1m30s); 0 = none")
	fl.StringArrayVar(&f.outputs, "output", nil, "absolute guest path of a file to bring back (repeatable)")
	fl.StringVar(&f.outputDir, "output-dir", ".", "where output files are written, as DIR/<base name>")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone: take it from this environment)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the image (created if missing)")
	fl.StringVarP(&f.user, "user", "u", "", "user[:group] to run as, names or numbers from the image")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint (clears its command)")
	fl.StringArrayVar(&f.cmd, "cmd", nil, "override the image's command: one argument per flag (or give it after --)")
	fl.StringVar(&f.hostname, "hostname", "", `the guest's hostname (default "bencher")`)
	fl.StringVar(&f.format, "rootfs", "ext4", "root filesystem: ext4 or squashfs (read-only, with a tmpfs overlay)")
	fl.IntVar(&f.diskMiB, "disk", 0, "ext4 image size in MiB (default: content plus headroom)")
	fl.IntVar(&f.vcpus, "vcpus", 0, fmt.Sprintf("virtual CPUs, 1-%d (sandbox: CPU affinity and cgroup quota; default: kvm %d, sandbox all)", maxVCPUs, runner.DefaultVCPUs))
	fl.IntVar(&f.memoryMiB, "memory", 0, fmt.Sprintf("memory in MiB, at least %d (sandbox: a cgroup memory limit where available; default: kvm %d)", minMemoryMiB, runner.DefaultMemoryMiB))
	fl.StringVar(&f.initBin, "init", "", "guest init binary (default: bencher-init next to the runner)")
	fl.BoolVar(&f.allowPerf, "allow-perf", false, "let the command use perf_event_open")
	fl.BoolVar(&f.console, "console", false, "print the guest console (kernel and init log) on stderr")
	fl.BoolVar(&f.json, "json", false, "print one JSON object with the result (and the command's stdout) instead of streaming stdout")
	fl.StringVar(&f.kernel, "kernel", "", "guest kernel (vmlinux or bzImage); default $RUNNER_KERNEL, then the one `make kernel` built")
	fl.StringVar(&f.cpuTemplate, "cpu-template", "", "CPUID the guest sees: host, or baseline (x86-64-v2-like, reproducible across hosts); default: baseline on kvm_pvm hosts, else host")
	fl.StringVar(&f.bootTimeout, "boot-timeout", "0", "how long the guest may take to boot and connect; 0 = 10m on an emulated (kvm_pvm) host, else 60s")
	fl.IntVar(&f.iter, "iter", 1, "boot and run N times, reporting each run")
	fl.BoolVar(&f.verbose, "kernel-verbose", false, "keep the guest kernel's boot messages (no \"quiet\"); see them with --console")
	fl.StringVar(&f.kernelArgs, "kernel-args", "", "extra guest kernel command-line words, appended to the runner's (e.g. \"initcall_debug printk.time=1\")")
	return cmd
}

func runRun(cmd *cobra.Command, f runFlags, args []string, stdout, stderr io.Writer) error {
	cfg, err := f.config(cmd, args)
	if err != nil {
		return f.fail(stdout, err)
	}
	if f.console {
		cfg.Console = stderr
	}
	backend, err := f.newBackend()
	if err != nil {
		return f.fail(stdout, err)
	}
	// Ctrl-C or SIGTERM cancels the run: the guest stops the command and still reports,
	// and everything the run created is removed.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.OCI.Progress = stderr

	var reports []jsonReport
	status := 0
	for i := 1; i <= f.iter; i++ {
		var captured strings.Builder
		cfg.Stdout, cfg.Stderr = stdout, stderr
		if f.json {
			cfg.Stdout = &captured
		}
		res, err := runner.Run(ctx, cfg, backend)
		if errors.Is(err, runner.ErrHostTimeout) {
			// The host's backstop: the run is over and counts as timed out.
			fmt.Fprintf(stderr, "runner: %v\n", err)
			if f.json {
				reports = append(reports, jsonReport{Exit: exitTimeout, TimedOut: true, Error: err.Error()})
			}
			status = firstNonZero(status, exitTimeout)
			continue
		}
		if err != nil && ctx.Err() != nil {
			// Ctrl-C or SIGTERM: everything the run made is gone; say so, shell-style status.
			err = fmt.Errorf("interrupted: %w", err)
			if f.json {
				writeJSON(stdout, jsonReport{Exit: exitInterrupted, Error: err.Error()})
			}
			fmt.Fprintf(stderr, "runner: %v\n", err)
			return &exitCodeError{code: exitInterrupted}
		}
		if err != nil {
			if f.json && len(reports) > 0 {
				reports = append(reports, jsonReport{Exit: exitRunnerError, Error: err.Error()})
				writeJSON(stdout, combineReports(reports))
				fmt.Fprintf(stderr, "runner: %v\n", err)
				return &exitCodeError{code: exitRunnerError}
			}
			return f.fail(stdout, err)
		}
		report(stderr, res, cfg.Timeout)
		if f.iter > 1 {
			fmt.Fprintf(stderr, "runner: run %d/%d: exit %d, total %.3fs, boot %.3fs, command %.3fs\n", i, f.iter,
				res.ExitCode(), res.Timings.Total.Seconds(), res.Timings.BootTimer.Seconds(), res.Timings.GuestCommand.Seconds())
		}
		if f.json {
			reports = append(reports, newJSONReport(res, captured.String()))
		}
		status = firstNonZero(status, res.ExitCode())
		if ctx.Err() != nil {
			break
		}
	}
	if f.json {
		if err := writeJSON(stdout, combineReports(reports)); err != nil {
			return err
		}
	}
	if status != 0 {
		return &exitCodeError{code: status}
	}
	return nil
}

func firstNonZero(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// report prints what the user must know about a finished run on stderr: files that could
// not be brought back, why the command did not finish normally.
func report(stderr io.Writer, res *runner.Result, timeout time.Duration) {
	for _, file := range res.Files {
		if file.Err != "" {
			fmt.Fprintf(stderr, "runner: output %s: %s\n", file.Path, file.Err)
		} else if file.LocalPath != "" {
			slog.Info("output saved", "path", file.Path, "to", file.LocalPath, "bytes", file.Size)
		}
	}
	if res.OutputErr != nil {
		slog.Warn("command output was cut short", "err", res.OutputErr)
	}
	e := res.Exit
	switch {
	case e.Failure != 0:
		fmt.Fprintf(stderr, "runner: %s\n", e.Message)
	case e.TimedOut:
		fmt.Fprintf(stderr, "runner: the command timed out after %v\n", timeout)
	}
	if e.OOMKilled {
		fmt.Fprintln(stderr, "runner: a process was killed for lack of memory")
	}
	slog.Info("run finished", "backend", res.Backend, "exit", res.ExitCode(), "total", res.Timings.Total,
		"boot", res.Timings.Boot, "boot_timer", res.Timings.BootTimer, "command", res.Timings.GuestCommand)
}

// fail reports a runner error: as the usual one line (by the caller), and with --json also
// as a JSON object on stdout. The exit status is 125 either way.
func (f runFlags) fail(stdout io.Writer, err error) error {
	if f.json {
		writeJSON(stdout, jsonReport{Exit: exitRunnerError, Error: err.Error()})
	}
	return err
}

// config turns the flags into a runner.Config.
func (f runFlags) config(cmd *cobra.Command, args []string) (runner.Config, error) {
	timeout, err := parseTimeout(f.timeout)
	if err != nil {
		return runner.Config{}, err
	}
	bootTimeout, err := parseDurationFlag("--boot-timeout", f.bootTimeout)
	if err != nil {
		return runner.Config{}, err
	}
	if bootTimeout == 0 {
		bootTimeout = defaultBootTimeout()
	}
	if err := f.checkResources(cmd); err != nil {
		return runner.Config{}, err
	}
	format, err := rootfs.ParseFormat(f.format)
	if err != nil {
		return runner.Config{}, err
	}
	initBin := f.initBin
	if initBin == "" {
		if initBin = defaultInitPath(); initBin == "" {
			return runner.Config{}, errors.New("no bencher-init next to the runner binary: build it (make init) or pass --init PATH")
		}
	}
	if err := checkOutputs(f.outputs); err != nil {
		return runner.Config{}, err
	}
	ov := oci.Overrides{Env: resolveEnv(f.env, os.LookupEnv), WorkingDir: f.workdir, User: f.user}
	if f.entrypoint != "" {
		ov.EntrypointSet, ov.Entrypoint = true, []string{f.entrypoint}
	}
	switch {
	case len(f.cmd) > 0 && len(args) > 0:
		return runner.Config{}, errors.New("give the command either with --cmd or after --, not both")
	case len(f.cmd) > 0:
		ov.CmdSet, ov.Cmd = true, f.cmd
	case len(args) > 0:
		ov.CmdSet, ov.Cmd = true, args
	}
	return runner.Config{
		RunDirParent: os.Getenv("RUNNER_WORK_DIR"),
		Image:        f.oci.image,
		OCI:          oci.Options{Platform: f.oci.platform, Insecure: f.oci.insecure, Token: f.oci.token},
		Overrides:    ov,
		Hostname:     f.hostname,
		Outputs:      f.outputs,
		OutputDir:    f.outputDir,
		Timeout:      timeout,
		AllowPerf:    f.allowPerf,
		Rootfs:       rootfs.BuildOptions{Format: format, DiskMiB: f.diskMiB, InitPath: initBin},
		VCPUs:        f.vcpus,
		MemoryMiB:    f.memoryMiB,
		BootTimeout:  bootTimeout,
	}, nil
}

// Limits of --vcpus and --memory.
const (
	maxVCPUs     = 32 // the MP table and the guest kernel's NR_CPUS
	minMemoryMiB = 64 // below this the guest kernel and init cannot start
	maxMemoryMiB = 1 << 20
)

// checkResources validates --vcpus, --memory and --iter when they are given.
func (f runFlags) checkResources(cmd *cobra.Command) error {
	fl := cmd.Flags()
	if fl.Changed("vcpus") && (f.vcpus < 1 || f.vcpus > maxVCPUs) {
		return fmt.Errorf("--vcpus %d: want 1 to %d", f.vcpus, maxVCPUs)
	}
	if fl.Changed("memory") && (f.memoryMiB < minMemoryMiB || f.memoryMiB > maxMemoryMiB) {
		return fmt.Errorf("--memory %d: want %d to %d MiB", f.memoryMiB, minMemoryMiB, maxMemoryMiB)
	}
	if f.iter < 1 {
		return fmt.Errorf("--iter %d: want at least 1", f.iter)
	}
	return nil
}

// defaultBootTimeout is generous where the guest kernel runs through an instruction
// emulator (~30 s per boot there, more when VMs share the CPUs), tight on hardware KVM.
func defaultBootTimeout() time.Duration {
	if kernel.IsKVMPVM() {
		return 10 * time.Minute
	}
	return 60 * time.Second
}

// parseDurationFlag accepts seconds or a Go duration, like --timeout.
func parseDurationFlag(name, s string) (time.Duration, error) {
	d, err := parseTimeout(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want seconds or a duration such as 90s", name, s)
	}
	return d, nil
}

// parseTimeout accepts seconds ("5", "1.5") or a Go duration ("90s", "2m").
func parseTimeout(s string) (time.Duration, error) {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if secs < 0 {
			return 0, fmt.Errorf("--timeout %q: negative", s)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--timeout %q: want seconds or a duration such as 90s", s)
	}
	return d, nil
}

// checkOutputs requires absolute guest paths whose base names are distinct (they all land
// in one directory).
func checkOutputs(outputs []string) error {
	seen := map[string]string{}
	for _, o := range outputs {
		if !path.IsAbs(o) {
			return fmt.Errorf("--output %q: not an absolute path in the image", o)
		}
		name := session.LocalName(o)
		if name == "" {
			return fmt.Errorf("--output %q: no file name", o)
		}
		if prev, dup := seen[name]; dup {
			return fmt.Errorf("--output %q and %q would both be saved as %s", prev, o, name)
		}
		seen[name] = o
	}
	return nil
}

// resolveEnv applies docker run's -e rules: KEY=VALUE as is; a bare KEY takes the value
// from the runner's own environment, or is dropped when it is not set there.
func resolveEnv(env []string, lookup func(string) (string, bool)) []string {
	var out []string
	for _, kv := range env {
		if strings.Contains(kv, "=") {
			out = append(out, kv)
			continue
		}
		if v, ok := lookup(kv); ok {
			out = append(out, kv+"="+v)
		}
	}
	return out
}

// newBackend returns the backend --backend names.
func (f runFlags) newBackend() (runner.Backend, error) {
	switch f.backend {
	case "sandbox":
		return runner.SandboxBackend{}, nil
	case "kvm", "vm":
		return f.vmBackend()
	case "auto":
		if err := kvmUsable(); err != nil {
			slog.Warn("running in the sandbox backend (namespaces on the host kernel), not a VM", "reason", err)
			return runner.SandboxBackend{}, nil
		}
		return f.vmBackend()
	}
	return nil, fmt.Errorf("--backend %q: want kvm, sandbox or auto", f.backend)
}

// vmBackend returns the microVM backend, after checking what it needs: a usable /dev/kvm
// and a guest kernel.
//
// A bad flag value is reported before anything about the host: it is wrong everywhere.
// The KVM device comes before the kernel, so a host without KVM is never sent to build one.
func (f runFlags) vmBackend() (runner.Backend, error) {
	switch f.cpuTemplate {
	case "", "host", "baseline":
	default:
		return nil, fmt.Errorf("--cpu-template %q: want host or baseline", f.cpuTemplate)
	}
	if err := kvmUsable(); err != nil {
		return nil, err
	}
	k, err := kernel.Locate(f.kernel)
	if err != nil {
		return nil, err
	}
	return runner.VMBackend{
		Kernel:      k,
		KVMDevice:   kvmDevice(),
		CPUTemplate: f.cpuTemplate,
		Verbose:     f.verbose,
		KernelArgs:  strings.Fields(f.kernelArgs),
		LogLevel:    logLevel(),
	}, nil
}

// logLevel is the current slog level, for the VMM child.
func logLevel() string {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if slog.Default().Enabled(context.Background(), l) {
			return l.String()
		}
	}
	return slog.LevelError.String()
}

// kvmDevice is the KVM device the runner uses ($RUNNER_KVM_DEVICE overrides /dev/kvm).
func kvmDevice() string {
	if p := os.Getenv("RUNNER_KVM_DEVICE"); p != "" {
		return p
	}
	return "/dev/kvm"
}

// kvmUsable reports why the KVM device cannot be used, or nil. It opens the device the way
// the VMM will (API version, vCPU mapping size), so a file that is not KVM is caught here
// with a clear line rather than inside the jailed VMM child.
func kvmUsable() error {
	dev := kvmDevice()
	sys, err := kvm.Open(dev)
	switch {
	case errors.Is(err, kvm.ErrNoDevice):
		return fmt.Errorf("%s does not exist: this host has no KVM (enable virtualisation, load kvm_intel/kvm_amd, or use --backend sandbox)", dev)
	case errors.Is(err, kvm.ErrPermission):
		return fmt.Errorf("%s: permission denied — add the user to group kvm (usermod -aG kvm $USER) and log in again", dev)
	case err != nil:
		return err
	}
	return sys.Close()
}
