package rootfs

import "errors"

// Limits caps what Flatten will write, against decompression bombs. Zero fields take the
// defaults.
type Limits struct {
	MaxBytes   int64 // total regular-file bytes over all layers; 0 = DefaultMaxBytes
	MaxEntries int   // total tar entries over all layers; 0 = DefaultMaxEntries
}

// Default limits: far above real benchmark images (a large distro image is ~1 GiB and
// ~100k files) yet small enough that a bomb fails quickly and leaves the disk usable.
const (
	DefaultMaxBytes   int64 = 8 << 30
	DefaultMaxEntries       = 1 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

var (
	// ErrUnsafePath reports a layer entry that would land outside the root.
	ErrUnsafePath = errors.New("path escapes the root")
	// ErrLimit reports a layer set larger than Limits allows.
	ErrLimit = errors.New("image exceeds limit")
	// ErrInvalidEntry reports a malformed layer entry (bad type, bad whiteout, hard link to
	// a directory or to a missing target).
	ErrInvalidEntry = errors.New("invalid layer entry")
)
