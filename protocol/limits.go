package protocol

// Limits on every length the wire carries. A decoder rejects anything beyond them before
// allocating, so a hostile or corrupt peer costs at most one frame of memory.
const (
	// HeaderSize is the size of a frame header: type u8 + payload length u32.
	HeaderSize = 5

	// MaxChunk is the largest Stdout/Stderr/FileData payload. The guest reads pipes of up to
	// 1 MiB (F_SETPIPE_SZ) and sends what one read returned: fewer, larger frames matter when
	// every guest syscall is expensive.
	MaxChunk = 1 << 20

	// MaxRunConfig bounds the encoded RunConfig (Linux's own argv+envp limit is about 2 MiB
	// with the default stack rlimit; 1 MiB leaves room and is plenty for benchmarks).
	MaxRunConfig = 1 << 20

	// MaxArgs and MaxEnv bound the number of argv and env entries.
	MaxArgs = 1 << 14
	MaxEnv  = 1 << 14
	// MaxArgLen is Linux's MAX_ARG_STRLEN (32 pages): the longest single argv/env string.
	MaxArgLen = 32 * 4096
	// MaxPath is PATH_MAX: workdir, output paths.
	MaxPath = 4096
	// MaxUser bounds the user spec ("name:group"); LOGIN_NAME_MAX is 256 per part.
	MaxUser = 2*256 + 1
	// MaxHostname is HOST_NAME_MAX.
	MaxHostname = 64
	// MaxOutputs bounds the number of requested output files.
	MaxOutputs = 256
	// MaxText bounds human-readable error strings (Exit.Message, File.Err, FileEnd.Err).
	MaxText = 4096

	// maxSmall bounds the fixed-shape messages (Hello, Exit, File, FileEnd, Done, Ack, Cancel).
	maxSmall = 16 << 10
)

// MaxPayload returns the payload limit of a message type, or -1 for an unknown type.
func MaxPayload(t Type) int {
	switch t {
	case TypeRunConfig:
		return MaxRunConfig
	case TypeStdout, TypeStderr, TypeFileData:
		return MaxChunk
	case TypeHello, TypeExit, TypeFile, TypeFileEnd:
		return maxSmall
	case TypeDone, TypeAck, TypeCancel:
		return 0
	}
	return -1
}

// VsockPort is the host vsock port (CID 2) the guest init connects to in a VM. With hybrid
// vsock the runner listens for it on the Unix socket <uds>_10000.
const VsockPort = 10000
