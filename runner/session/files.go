package session

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"path"
	"path/filepath"

	"github.com/vmbench/runner/protocol"
)

// LocalName is the name an output file gets in Options.OutputDir: the base name of its guest
// path. It returns "" for a path without one ("/").
func LocalName(guestPath string) string {
	base := path.Base(path.Clean(guestPath))
	if base == "/" || base == "." || base == ".." {
		return ""
	}
	return base
}

// receiveFile receives the File record for the requested path want and, unless it carries
// an error, its content. A content or local write problem is reported in File.Err; only a
// guest that breaks the protocol (wrong order, wrong path, more or fewer bytes than
// announced, wrong digest) is an error.
func (s *session) receiveFile(want string) (File, error) {
	state := fmt.Sprintf("receiving output %s", want)
	m, err := s.r.Read()
	if err != nil {
		return File{}, s.readErr(state, err)
	}
	hdr, ok := m.(protocol.File)
	if !ok {
		return File{}, &ProtocolError{state, fmt.Errorf("got %v", m.Type())}
	}
	if hdr.Path != want {
		return File{}, &ProtocolError{state, fmt.Errorf("got file %q", hdr.Path)}
	}
	f := File{Path: want, Size: hdr.Size, Mode: hdr.Mode, Err: hdr.Err}
	if hdr.Err != "" {
		return f, nil
	}
	out := newFileSink(s.opts.OutputDir, want)
	defer out.discard()
	var got int64
	for {
		m, err := s.r.Read()
		if err != nil {
			return File{}, s.readErr(state, err)
		}
		switch m := m.(type) {
		case protocol.FileData:
			got += int64(len(m.Bytes))
			if got > hdr.Size {
				return File{}, &ProtocolError{state, fmt.Errorf("more than the announced %d bytes", hdr.Size)}
			}
			out.write(m.Bytes)
		case protocol.FileEnd:
			if m.Err != "" {
				f.Err = m.Err
				return f, nil
			}
			if got != hdr.Size {
				return File{}, &ProtocolError{state, fmt.Errorf("got %d of the announced %d bytes", got, hdr.Size)}
			}
			if sum := out.sum(); sum != m.Sha256 {
				return File{}, &ProtocolError{state, fmt.Errorf("sha256 %x, guest says %x", sum, m.Sha256)}
			}
			f.Sha256 = m.Sha256
			local, err := out.commit(os.FileMode(hdr.Mode)&0o777 | 0o600)
			if err != nil {
				f.Err = err.Error()
			}
			f.LocalPath = local
			return f, nil
		default:
			return File{}, &ProtocolError{state, fmt.Errorf("got %v", m.Type())}
		}
	}
}

// fileSink writes one incoming file to a temporary file beside its destination and hashes
// it; commit renames it into place, discard removes it. A local error is remembered and
// reported by commit; the content is still consumed and hashed.
type fileSink struct {
	dest string   // "" when discarding
	tmp  *os.File // nil when discarding or after an error
	h    hash.Hash
	err  error
}

func newFileSink(dir, guestPath string) *fileSink {
	s := &fileSink{h: sha256.New()}
	if dir == "" {
		return s
	}
	name := LocalName(guestPath)
	if name == "" {
		s.err = fmt.Errorf("session: output %q has no file name", guestPath)
		return s
	}
	s.dest = filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+".*.part")
	if err != nil {
		s.err = fmt.Errorf("session: output %s: %w", guestPath, err)
		return s
	}
	s.tmp = tmp
	return s
}

func (s *fileSink) write(p []byte) {
	s.h.Write(p)
	if s.tmp == nil || s.err != nil {
		return
	}
	if _, err := s.tmp.Write(p); err != nil {
		s.err = fmt.Errorf("session: write %s: %w", s.dest, err)
	}
}

func (s *fileSink) sum() (out [32]byte) {
	s.h.Sum(out[:0])
	return out
}

// commit moves the file into place with mode perm and returns its path ("" if discarding).
func (s *fileSink) commit(perm os.FileMode) (string, error) {
	if s.err != nil {
		return "", s.err
	}
	if s.tmp == nil {
		return "", nil
	}
	tmp := s.tmp
	s.tmp = nil
	err := errors.Join(tmp.Chmod(perm), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), s.dest)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("session: save %s: %w", s.dest, err)
	}
	return s.dest, nil
}

// discard removes the temporary file unless commit took it.
func (s *fileSink) discard() {
	if s.tmp != nil {
		s.tmp.Close()
		os.Remove(s.tmp.Name())
		s.tmp = nil
	}
}
