package main

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"slices"
	"time"

	"github.com/vmbench/runner/protocol"
	"github.com/vmbench/runner/runner"
)

// jsonReport is what `runner run --json` prints: one object, the command's stdout included.
type jsonReport struct {
	Exit      int    `json:"exit"` // runner run's exit status
	Code      int32  `json:"code"` // the command's own exit code (when it exited)
	Signal    int32  `json:"signal,omitempty"`
	TimedOut  bool   `json:"timed_out"`
	Cancelled bool   `json:"cancelled,omitempty"`
	OOMKilled bool   `json:"oom_killed"`
	Failure   string `json:"failure,omitempty"` // not found, cannot invoke, setup
	Message   string `json:"message,omitempty"`
	Error     string `json:"error,omitempty"` // a runner error (exit 125)

	Stdout      string     `json:"stdout"`
	StderrBytes int64      `json:"stderr_bytes"`
	Files       []jsonFile `json:"files,omitempty"`

	Backend     string        `json:"backend,omitempty"`
	Image       string        `json:"image,omitempty"`
	VCPUs       int           `json:"vcpus,omitempty"`
	Memory      int           `json:"memory_mib,omitempty"`       // guest RAM (kvm backend)
	Kernel      string        `json:"kernel,omitempty"`           // guest kernel image (kvm backend)
	VMMRSS      int64         `json:"vmm_max_rss_kib,omitempty"`  // VMM process peak RSS, guest RAM included
	VMMOverhead int64         `json:"vmm_overhead_kib,omitempty"` // that minus the guest RAM the guest touched
	BootTime    float64       `json:"boot_time_s,omitempty"`      // the VMM's boot timer, when it has one
	Dur         jsonDurations `json:"durations"`
	InitRSS     int64         `json:"init_max_rss_bytes,omitempty"`
}

type jsonFile struct {
	Path      string `json:"path"`
	LocalPath string `json:"local_path,omitempty"`
	Size      int64  `json:"size"`
	Mode      uint32 `json:"mode"`
	Sha256    string `json:"sha256,omitempty"`
	Error     string `json:"error,omitempty"`
}

// jsonDurations are in seconds.
type jsonDurations struct {
	Resolve    float64 `json:"resolve_s"`
	Build      float64 `json:"build_s"`
	Copy       float64 `json:"copy_s"`
	Start      float64 `json:"start_s"`
	Boot       float64 `json:"boot_s"`         // backend start → the init's Hello
	Command    float64 `json:"command_s"`      // the command's run time, on the guest's clock
	InitToExec float64 `json:"init_to_exec_s"` // the init's main → the command's exec, guest clock
	Collect    float64 `json:"collect_s"`
	Total      float64 `json:"total_s"`
}

func newJSONReport(res *runner.Result, stdout string) jsonReport {
	e := res.Exit
	t := res.Timings
	r := jsonReport{
		Exit: res.ExitCode(), Code: e.Code, Signal: e.Signal, TimedOut: e.TimedOut, Cancelled: e.Cancelled,
		OOMKilled: e.OOMKilled, Message: e.Message,
		Stdout: stdout, StderrBytes: res.StderrBytes,
		Backend: res.Backend, Image: res.ImageDigest, VCPUs: res.VCPUs, BootTime: secs(t.BootTimer),
		Memory: res.GuestMemoryMiB, Kernel: res.Kernel, VMMRSS: res.VMM.MaxRSSKiB, VMMOverhead: res.VMM.OverheadKiB(),
		InitRSS: e.InitMaxRSS,
		Dur: jsonDurations{
			Resolve: secs(t.Resolve), Build: secs(t.Build), Copy: secs(t.Copy), Start: secs(t.Start),
			Boot: secs(t.Boot), Command: secs(t.GuestCommand), InitToExec: secs(t.GuestInitToExec),
			Collect: secs(t.Collect), Total: secs(t.Total),
		},
	}
	if e.Failure != protocol.FailureNone {
		r.Failure = e.Failure.String()
	}
	for _, f := range res.Files {
		jf := jsonFile{Path: f.Path, LocalPath: f.LocalPath, Size: f.Size, Mode: f.Mode, Error: f.Err}
		if f.Err == "" {
			jf.Sha256 = hexString(f.Sha256[:])
		}
		r.Files = append(r.Files, jf)
	}
	return r
}

func secs(d time.Duration) float64 { return d.Seconds() }

func hexString(b []byte) string { return hex.EncodeToString(b) }

func writeJSON(w io.Writer, r any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// jsonIterations is what --json prints for --iter N > 1: every run, and a summary.
type jsonIterations struct {
	Exit       int          `json:"exit"` // the first non-zero exit status of the runs
	Iterations []jsonReport `json:"iterations"`
	Summary    jsonSummary  `json:"summary"`
}

// jsonSummary gives min / median / max over the runs that completed.
type jsonSummary struct {
	Runs     int       `json:"runs"`
	Total    jsonStats `json:"total_s"`
	BootTime jsonStats `json:"boot_time_s"`
	Command  jsonStats `json:"command_s"`
}

type jsonStats struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func stats(xs []float64) jsonStats {
	if len(xs) == 0 {
		return jsonStats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return jsonStats{Min: s[0], Median: s[len(s)/2], Max: s[len(s)-1]}
}

// combineReports is the single report of one run, or all of them with a summary.
func combineReports(rs []jsonReport) any {
	if len(rs) == 1 {
		return rs[0]
	}
	out := jsonIterations{Iterations: rs}
	var total, boot, command []float64
	for _, r := range rs {
		if out.Exit == 0 {
			out.Exit = r.Exit
		}
		if r.Error != "" {
			continue
		}
		total = append(total, r.Dur.Total)
		boot = append(boot, r.BootTime)
		command = append(command, r.Dur.Command)
	}
	out.Summary = jsonSummary{Runs: len(total), Total: stats(total), BootTime: stats(boot), Command: stats(command)}
	return out
}
