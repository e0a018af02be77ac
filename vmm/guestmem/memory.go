package guestmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/sys/unix"
)

// x86 guest-physical layout around the 32-bit MMIO hole.
const (
	// MMIOHoleStart is where RAM below 4 GiB ends; [MMIOHoleStart, MMIOHoleEnd) is left
	// for device MMIO, the IOAPIC (0xfec00000) and the local APIC (0xfee00000).
	MMIOHoleStart = 0xC000_0000
	// MMIOHoleEnd is 4 GiB; RAM beyond MMIOHoleStart continues here.
	MMIOHoleEnd = 0x1_0000_0000
)

// ErrOutOfRange is returned for a guest-physical range that is not wholly inside guest RAM.
var ErrOutOfRange = errors.New("guest address out of range")

// Region is one contiguous piece of guest RAM: GPA [GuestAddr, GuestAddr+Size) backed by
// host memory.
type Region struct {
	GuestAddr uint64
	Size      uint64
	host      []byte
}

// Options tune how guest RAM is allocated.
type Options struct {
	// HugePages backs RAM with explicit 2 MiB huge pages (MAP_HUGETLB). The host must have
	// enough reserved (vm.nr_hugepages); New fails otherwise.
	HugePages bool
}

// Memory is the guest's RAM. It is safe for concurrent use; Close must not race with
// other calls.
type Memory struct {
	regions []Region
	size    uint64
}

// New maps size bytes of guest RAM (a multiple of 4 KiB, at least 1 MiB).
func New(size uint64, opts Options) (*Memory, error) {
	if size < 1<<20 || size%4096 != 0 {
		return nil, fmt.Errorf("guestmem: size %d: must be a multiple of 4 KiB and at least 1 MiB", size)
	}
	if size > 1<<46 {
		return nil, fmt.Errorf("guestmem: size %d: too large", size)
	}
	layout := []Region{{GuestAddr: 0, Size: min(size, MMIOHoleStart)}}
	if size > MMIOHoleStart {
		layout = append(layout, Region{GuestAddr: MMIOHoleEnd, Size: size - MMIOHoleStart})
	}
	m := &Memory{size: size}
	for _, r := range layout {
		host, err := mapAnonymous(r.Size, opts.HugePages)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("guestmem: map %d MiB at GPA %#x: %w", r.Size>>20, r.GuestAddr, err)
		}
		r.host = host
		m.regions = append(m.regions, r)
	}
	return m, nil
}

func mapAnonymous(size uint64, huge bool) ([]byte, error) {
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE
	if huge {
		// No MAP_NORESERVE here: huge pages must be reserved at mmap time, so a host without
		// enough of them fails now with ENOMEM instead of SIGBUS on the first touch.
		flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_HUGETLB
	}
	return unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, flags)
}

// Close unmaps guest RAM. The Memory must not be used afterwards.
func (m *Memory) Close() error {
	var errs []error
	for i := range m.regions {
		if m.regions[i].host != nil {
			errs = append(errs, unix.Munmap(m.regions[i].host))
			m.regions[i].host = nil
		}
	}
	m.regions = nil
	return errors.Join(errs...)
}

// Size is the total amount of guest RAM in bytes.
func (m *Memory) Size() uint64 { return m.size }

// Regions lists the RAM regions in ascending GPA order (for KVM_SET_USER_MEMORY_REGION and
// the e820 map).
func (m *Memory) Regions() []Region { return m.regions }

// Slice returns the host bytes backing GPA [gpa, gpa+n). The slice aliases guest memory:
// the guest may change it at any time, so read each value once and validate it.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	end, carry := bits.Add64(gpa, n, 0)
	if carry != 0 {
		return nil, fmt.Errorf("%w: %#x+%#x overflows", ErrOutOfRange, gpa, n)
	}
	for i := range m.regions {
		r := &m.regions[i]
		if gpa >= r.GuestAddr && end <= r.GuestAddr+r.Size {
			off := gpa - r.GuestAddr
			return r.host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, %#x)", ErrOutOfRange, gpa, end)
}

// Contains reports whether GPA [gpa, gpa+n) is wholly inside guest RAM.
func (m *Memory) Contains(gpa, n uint64) bool {
	_, err := m.Slice(gpa, n)
	return err == nil
}

// ReadAt copies guest memory at GPA off into p. It implements io.ReaderAt, except that a
// range outside RAM fails as a whole (no short reads).
func (m *Memory) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrOutOfRange
	}
	s, err := m.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, s), nil
}

// WriteAt copies p into guest memory at GPA off. It implements io.WriterAt; a range outside
// RAM fails as a whole and writes nothing.
func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrOutOfRange
	}
	s, err := m.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(s, p), nil
}

// Uint16 reads a little-endian uint16 at gpa (not atomically).
func (m *Memory) Uint16(gpa uint64) (uint16, error) {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

// Uint32 reads a little-endian uint32 at gpa (not atomically).
func (m *Memory) Uint32(gpa uint64) (uint32, error) {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// Uint64 reads a little-endian uint64 at gpa (not atomically).
func (m *Memory) Uint64(gpa uint64) (uint64, error) {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint16 writes a little-endian uint16 at gpa (not atomically).
func (m *Memory) PutUint16(gpa uint64, v uint16) error {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(s, v)
	return nil
}

// PutUint32 writes a little-endian uint32 at gpa (not atomically).
func (m *Memory) PutUint32(gpa uint64, v uint32) error {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(s, v)
	return nil
}

// PutUint64 writes a little-endian uint64 at gpa (not atomically).
func (m *Memory) PutUint64(gpa uint64, v uint64) error {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}

// Resident counts the bytes of guest RAM that are backed by host pages (mincore(2)): the
// pages the guest has touched. It is how the VMM's own memory overhead is told apart from
// guest memory in its RSS.
func (m *Memory) Resident() (uint64, error) {
	page := uint64(unix.Getpagesize())
	var total uint64
	for _, r := range m.regions {
		vec := make([]byte, (uint64(len(r.host))+page-1)/page)
		if err := mincore(r.host, vec); err != nil {
			return 0, fmt.Errorf("guestmem: mincore: %w", err)
		}
		for _, v := range vec {
			if v&1 != 0 {
				total += page
			}
		}
	}
	return total, nil
}
