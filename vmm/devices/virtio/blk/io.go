package blk

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// iovMax bounds the buffers handed to one preadv/pwritev (IOV_MAX on Linux is 1024).
const iovMax = 1024

// backend is the image file the device reads and writes.
type backend struct {
	f        *os.File
	fd       int
	readOnly bool
	serial   [IDBytes]byte
}

// execute performs a validated request and returns its status and the number of bytes it
// wrote into the chain's data buffers (IN, GET_ID).
func (b *backend) execute(r *request) (Status, uint32, error) {
	switch r.typ {
	case TypeIn:
		if err := rwv(unix.Preadv, b.fd, r.data, int64(r.sector*SectorSize)); err != nil {
			return StatusIOErr, 0, fmt.Errorf("blk: read %d bytes at sector %d: %w", r.dataLen, r.sector, err)
		}
		return StatusOK, uint32(r.dataLen), nil
	case TypeOut:
		if err := rwv(unix.Pwritev, b.fd, r.data, int64(r.sector*SectorSize)); err != nil {
			return StatusIOErr, 0, fmt.Errorf("blk: write %d bytes at sector %d: %w", r.dataLen, r.sector, err)
		}
		return StatusOK, 0, nil
	case TypeFlush:
		if b.readOnly {
			return StatusOK, 0, nil
		}
		if err := unix.Fdatasync(b.fd); err != nil {
			return StatusIOErr, 0, fmt.Errorf("blk: flush: %w", err)
		}
		return StatusOK, 0, nil
	case TypeGetID:
		src := b.serial[:]
		n := 0
		for _, d := range r.data {
			n += copy(d, src[n:])
		}
		return StatusOK, uint32(n), nil
	case TypeDiscard, TypeWriteZeroes:
		for _, s := range r.segments {
			if err := b.zero(r.typ, s); err != nil {
				return StatusIOErr, 0, fmt.Errorf("blk: %s sectors [%d, +%d): %w", r.typ, s.Sector, s.NumSectors, err)
			}
		}
		return StatusOK, 0, nil
	}
	return StatusUnsupp, 0, nil
}

// zero discards or zeroes one segment. DISCARD punches a hole (a hint: if the file system
// cannot, nothing happens); WRITE_ZEROES must leave zeros, by hole punching (UNMAP),
// FALLOC_FL_ZERO_RANGE, or plain writes as a last resort.
func (b *backend) zero(typ RequestType, s Segment) error {
	off, n := int64(s.Sector*SectorSize), int64(s.NumSectors)*SectorSize
	if n == 0 {
		return nil
	}
	punch := uint32(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
	if typ == TypeDiscard {
		err := unix.Fallocate(b.fd, punch, off, n)
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil
		}
		return err
	}
	mode := uint32(unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE)
	if s.Flags&WriteZeroesFlagUnmap != 0 {
		mode = punch
	}
	err := unix.Fallocate(b.fd, mode, off, n)
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	zeros := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := b.f.WriteAt(zeros[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// rwv runs preadv or pwritev until all of bufs is transferred, at most iovMax buffers per
// call. A read that reaches end of file is io.ErrUnexpectedEOF.
func rwv(op func(int, [][]byte, int64) (int, error), fd int, bufs [][]byte, off int64) error {
	var iov [][]byte
	for len(bufs) > 0 || len(iov) > 0 {
		if len(iov) == 0 {
			k := min(len(bufs), iovMax)
			iov, bufs = append(iov[:0], bufs[:k]...), bufs[k:]
		}
		n, err := op(fd, iov, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 && totalLen(iov) > 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		// Drop what was transferred; keep the rest of a partly transferred buffer.
		for n > 0 && len(iov) > 0 {
			if n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
				continue
			}
			iov[0] = iov[0][n:]
			n = 0
		}
		for len(iov) > 0 && len(iov[0]) == 0 {
			iov = iov[1:]
		}
	}
	return nil
}
