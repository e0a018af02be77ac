package protocol

import (
	"fmt"
	"time"
)

// Version is the protocol version this package speaks. A peer with another version is
// refused with a *VersionError; there is no negotiation.
const Version uint16 = 1

// Type identifies a message on the wire.
type Type uint8

// Message types. The direction is fixed per type.
const (
	TypeHello     Type = 1  // guest → host, first message
	TypeRunConfig Type = 2  // host → guest, answer to Hello
	TypeStdout    Type = 3  // guest → host, a chunk of the command's stdout
	TypeStderr    Type = 4  // guest → host, a chunk of the command's stderr
	TypeExit      Type = 5  // guest → host, after both streams reached EOF
	TypeFile      Type = 6  // guest → host, header of one requested output file (or its error)
	TypeFileData  Type = 7  // guest → host, a chunk of the current file
	TypeFileEnd   Type = 8  // guest → host, end of the current file with its sha256
	TypeDone      Type = 9  // guest → host, nothing more will be sent
	TypeAck       Type = 10 // host → guest, answer to Done: the result is safe
	TypeCancel    Type = 11 // host → guest, stop the workload as at a timeout
)

var typeNames = [...]string{
	TypeHello: "Hello", TypeRunConfig: "RunConfig", TypeStdout: "Stdout", TypeStderr: "Stderr",
	TypeExit: "Exit", TypeFile: "File", TypeFileData: "FileData", TypeFileEnd: "FileEnd",
	TypeDone: "Done", TypeAck: "Ack", TypeCancel: "Cancel",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Message is one protocol message. The concrete types are the structs of this file.
type Message interface {
	Type() Type
	// appendPayload appends the encoded payload to b.
	appendPayload(b []byte) []byte
}

// Hello is the guest's first message.
type Hello struct {
	Version uint16
	// InitStart is the guest's CLOCK_BOOTTIME when the init's main started: in a VM, the time
	// from kernel entry to init.
	InitStart time.Duration
}

// RunConfig is everything the guest needs to run one command. The host builds it from the
// image config and the command line; the guest trusts it (it comes from the host).
type RunConfig struct {
	Argv     []string // command and arguments; Argv[0] is looked up in PATH like execvp
	Env      []string // KEY=VALUE from the image and overrides; the guest adds PATH, HOSTNAME, HOME
	WorkDir  string   // absolute; created if missing
	User     string   // "", "name", "uid", "name:group", "uid:gid" (resolved in the guest's /etc)
	Hostname string   // "" means DefaultHostname
	Outputs  []string // absolute guest paths of files to send back after the command exits

	// Timeout ends the command (SIGTERM to every process, KillGrace, SIGKILL); 0 = none.
	Timeout   time.Duration
	KillGrace time.Duration // 0 means DefaultKillGrace
	// MaxFileSize bounds each output file; a larger one is reported as an error record.
	// 0 means MaxFileSizeDefault.
	MaxFileSize int64
	// AllowPerf lets the workload call perf_event_open (denied by default).
	AllowPerf bool
}

// Defaults for zero fields of RunConfig.
const (
	DefaultHostname    = "bencher"
	DefaultKillGrace   = 2 * time.Second
	MaxFileSizeDefault = 1 << 30
)

// Stream names one of the command's output streams.
type Stream uint8

// The two output streams.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return fmt.Sprintf("Stream(%d)", uint8(s))
}

// Data is a chunk of stdout or stderr. A Data returned by Reader.Read aliases the reader's
// buffer and is valid until the next Read.
type Data struct {
	Stream Stream
	Bytes  []byte
}

// FailureKind says why a command could not be run at all.
type FailureKind uint8

// Failure kinds, mapped by the runner to docker run's exit codes.
const (
	FailureNone         FailureKind = 0
	FailureNotFound     FailureKind = 1 // exec: ENOENT (the command or its interpreter) → 127
	FailureCannotInvoke FailureKind = 2 // exec: EACCES, ENOEXEC, EISDIR, ... → 126
	FailureSetup        FailureKind = 3 // user, workdir, config or init error before exec → 125
)

func (k FailureKind) String() string {
	switch k {
	case FailureNone:
		return "none"
	case FailureNotFound:
		return "not found"
	case FailureCannotInvoke:
		return "cannot invoke"
	case FailureSetup:
		return "setup"
	}
	return fmt.Sprintf("FailureKind(%d)", uint8(k))
}

// Exit is the command's outcome. Exactly one of these holds: Failure != FailureNone (the
// command never ran), Signal != 0 (killed by a signal), or Code is the exit status.
type Exit struct {
	Code      int32 // exit status 0..255 when the command exited
	Signal    int32 // terminating signal number, 0 if it exited
	TimedOut  bool  // the guest ended the command because RunConfig.Timeout passed
	Cancelled bool  // the guest ended the command because the host sent Cancel
	OOMKilled bool  // the kernel's OOM killer killed a process during the run
	Failure   FailureKind
	Message   string // for a Failure: what went wrong, for humans

	// Guest CLOCK_BOOTTIME timestamps: the config arrived, the command was started (fork),
	// and the command's exit was reaped.
	ConfigReceived time.Duration
	Started        time.Duration
	Ended          time.Duration

	// InitMaxRSS is the init's own peak resident set size in bytes (getrusage), sent so the
	// host can see that streaming kept the init's memory bounded.
	InitMaxRSS int64
}

// File is the header of one requested output file, sent in RunConfig.Outputs order. With
// Err empty, Size bytes follow as FileData chunks and then a FileEnd. With Err set (missing,
// not a regular file, too large, unreadable) nothing follows.
type File struct {
	Path string
	Size int64
	Mode uint32 // st_mode (type and permission bits)
	Err  string
}

// FileData is a chunk of the current file. It aliases the reader's buffer like Data.
type FileData struct {
	Bytes []byte
}

// FileEnd ends the current file. Err is set when reading failed midway (the host discards
// the partial file); otherwise Sha256 is the digest of the bytes sent.
type FileEnd struct {
	Sha256 [32]byte
	Err    string
}

// Done says the guest has sent everything. The guest waits for Ack before powering off.
type Done struct{}

// Ack acknowledges Done.
type Ack struct{}

// Cancel asks the guest to stop the workload now (SIGTERM, grace, SIGKILL) and report.
type Cancel struct{}

// Type implementations.
func (Hello) Type() Type     { return TypeHello }
func (RunConfig) Type() Type { return TypeRunConfig }
func (d Data) Type() Type {
	if d.Stream == Stderr {
		return TypeStderr
	}
	return TypeStdout
}
func (Exit) Type() Type     { return TypeExit }
func (File) Type() Type     { return TypeFile }
func (FileData) Type() Type { return TypeFileData }
func (FileEnd) Type() Type  { return TypeFileEnd }
func (Done) Type() Type     { return TypeDone }
func (Ack) Type() Type      { return TypeAck }
func (Cancel) Type() Type   { return TypeCancel }
