package blk

import (
	"bytes"
	"encoding/binary"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/vmm/devices/virtio/virtq"
)

const fuzzDiskSize = 64 << 10

var (
	fuzzDiskOnce sync.Once
	fuzzDisk     *os.File
)

// disk returns a 64 KiB in-memory file (memfd: real pread/pwrite/fallocate semantics,
// nothing left on disk).
func disk(t *testing.T) *os.File {
	fuzzDiskOnce.Do(func() {
		fd, err := unix.MemfdCreate("blk-fuzz", 0)
		if err != nil {
			t.Fatalf("memfd_create: %v", err)
		}
		fuzzDisk = os.NewFile(uintptr(fd), "blk-fuzz")
		if err := fuzzDisk.Truncate(fuzzDiskSize); err != nil {
			t.Fatal(err)
		}
	})
	return fuzzDisk
}

// FuzzRequest parses and executes arbitrary virtio-blk requests. layout has two bytes per
// buffer (bit 15 = device-writable, low 12 bits = length; at most 16 buffers, readable
// ones first as virtq guarantees); payload fills the readable buffers in order (header,
// data, segments); ro selects read-only mode.
//
// Properties: nothing panics; a status byte, when there is room for one, is OK, IOERR or
// UNSUPP; the used length never exceeds the writable bytes; the disk never changes size;
// a read-only disk never changes at all; a successful IN returns the disk's bytes.
func FuzzRequest(f *testing.F) {
	f.Add([]byte{0x10, 0x00, 0x80, 0x01}, make([]byte, 16), false) // FLUSH
	f.Fuzz(func(t *testing.T, layout, payload []byte, ro bool) {
		file := disk(t)
		var readable, writable [][]byte
		for i := 0; i+1 < len(layout) && i < 32; i += 2 {
			v := binary.BigEndian.Uint16(layout[i:])
			b := make([]byte, v&0xfff)
			if v&0x8000 != 0 {
				for j := range b {
					b[j] = 0xee // so "unwritten" is visible
				}
				writable = append(writable, b)
			} else {
				payload = payload[copy(b, payload):]
				readable = append(readable, b)
			}
		}
		c := &virtq.Chain{Readable: readable, Writable: writable}
		lim := limits{capacity: fuzzDiskSize / SectorSize, readOnly: ro, discard: !ro, writeZeroes: !ro,
			maxSegments: MaxDiscardSegments, maxSectors: MaxDiscardSectors}
		back := &backend{f: file, fd: int(file.Fd()), readOnly: ro}
		copy(back.serial[:], "fuzz-serial")
		var before []byte
		if ro {
			before = make([]byte, fuzzDiskSize)
			file.ReadAt(before, 0)
		}

		r, err := parseRequest(c, lim)
		wlen := totalLen(writable)
		var status Status
		var used uint32
		switch {
		case err == errNoStatus:
			if wlen != 0 {
				t.Fatalf("errNoStatus with %d writable bytes", wlen)
			}
		case err != nil:
			re, ok := err.(*requestError)
			if !ok {
				t.Fatalf("parseRequest error of type %T", err)
			}
			status, used = re.status, 1
		default:
			if r.dataLen != totalLen(r.data) {
				t.Fatalf("dataLen %d, buffers hold %d", r.dataLen, totalLen(r.data))
			}
			var n uint32
			status, n, _ = back.execute(&r)
			used = n + 1
			if r.typ == TypeIn && status == StatusOK {
				want := make([]byte, r.dataLen)
				file.ReadAt(want, int64(r.sector*SectorSize))
				if !bytes.Equal(flatten(r.data), want) {
					t.Fatal("IN returned bytes that differ from the disk")
				}
			}
		}
		if wlen > 0 {
			r.status[0] = byte(status)
			if status > StatusUnsupp {
				t.Fatalf("status %d", status)
			}
			// The status must land in the very last writable byte.
			for i := len(writable) - 1; i >= 0; i-- {
				if n := len(writable[i]); n > 0 {
					if writable[i][n-1] != byte(status) {
						t.Fatal("status not in the last writable byte")
					}
					break
				}
			}
		}
		if uint64(used) > wlen {
			t.Fatalf("used length %d exceeds %d writable bytes", used, wlen)
		}
		if fi, err := file.Stat(); err != nil || fi.Size() != fuzzDiskSize {
			t.Fatalf("disk size changed: %v %v", fi.Size(), err)
		}
		if ro {
			after := make([]byte, fuzzDiskSize)
			file.ReadAt(after, 0)
			if !bytes.Equal(before, after) {
				t.Fatal("read-only disk changed")
			}
		}
	})
}
