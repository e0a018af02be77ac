package kvm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultPath is the KVM device node.
const DefaultPath = "/dev/kvm"

// Sentinel errors for conditions callers branch on; the errno stays wrapped too, so
// errors.Is(err, unix.EACCES) works as well.
var (
	// ErrNoDevice: the KVM device node does not exist (KVM not built, module not loaded, or
	// no virtualisation support).
	ErrNoDevice = errors.New("no KVM device")
	// ErrPermission: the device exists but this user may not open it.
	ErrPermission = errors.New("no permission to use KVM")
	// ErrAPIVersion: the kernel speaks another KVM API version.
	ErrAPIVersion = errors.New("unsupported KVM API version")
	// ErrMissingCap: a capability the VMM needs is absent.
	ErrMissingCap = errors.New("missing KVM capability")
)

// System is an open KVM device (/dev/kvm): capability queries and VM creation.
type System struct {
	fd       int
	path     string
	mmapSize int
}

// Open opens the KVM device at path ("" means DefaultPath) and checks the API version and
// that KVM_GET_VCPU_MMAP_SIZE is sane. Errors name the cause and the fix.
func Open(path string) (*System, error) {
	if path == "" {
		path = DefaultPath
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(path, err)
	}
	s := &System{fd: fd, path: path}
	v, err := ioctl(fd, ioctlGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: KVM_GET_API_VERSION: %w (is this a KVM device?)", path, err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("%s: %w %d (want %d)", path, ErrAPIVersion, v, APIVersion)
	}
	size, err := ioctl(fd, ioctlGetVCPUMmapSize, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: KVM_GET_VCPU_MMAP_SIZE: %w", path, err)
	}
	if size < sizeofRunHeader || size > 1<<20 {
		s.Close()
		return nil, fmt.Errorf("%s: KVM_GET_VCPU_MMAP_SIZE %d: %w", path, size, errShortMapping)
	}
	s.mmapSize = int(size)
	return s, nil
}

// openError explains why the device could not be opened and how to fix it.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%s: %w: %w — enable virtualisation and load kvm_intel, kvm_amd or kvm_pvm",
			path, ErrNoDevice, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: %w: permission denied — add the user to group kvm (usermod -aG kvm $USER) and log in again: %w",
			path, ErrPermission, err)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// Path is the device node this System was opened from.
func (s *System) Path() string { return s.path }

// Close closes the device. VMs created from it stay valid.
func (s *System) Close() error { return closeFD(&s.fd) }

// CheckExtension returns KVM_CHECK_EXTENSION for c on the system fd: 0 when absent,
// otherwise a capability-specific positive value.
func (s *System) CheckExtension(c Cap) (int, error) {
	r, err := ioctl(s.fd, ioctlCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %v: %w", c, err)
	}
	return int(r), nil
}

// RequireExtensions fails with ErrMissingCap naming every absent capability.
func (s *System) RequireExtensions(caps ...Cap) error {
	var missing []Cap
	for _, c := range caps {
		n, err := s.CheckExtension(c)
		if err != nil {
			return err
		}
		if n <= 0 {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: %w: %v", s.path, ErrMissingCap, missing)
	}
	return nil
}

// VCPUMmapSize is the size of each vCPU's kvm_run mapping.
func (s *System) VCPUMmapSize() int { return s.mmapSize }

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: every leaf the host and KVM can offer a
// guest.
func (s *System) SupportedCPUID() ([]CPUIDEntry2, error) {
	b := newCPUID2(MaxCPUIDEntries)
	if err := s.getSupportedCPUID(b); err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return append([]CPUIDEntry2(nil), b.entries()...), nil
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores.
func (s *System) MSRIndexList() ([]uint32, error) {
	n := 64
	for range 8 {
		l := newMSRList(n)
		err := s.getMSRIndexList(l)
		if errors.Is(err, unix.E2BIG) {
			n = max(int(l.buf[0]), 2*n) // the kernel wrote the count it needs
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kvm: KVM_GET_MSR_INDEX_LIST: %w", err)
		}
		return append([]uint32(nil), l.indices()...), nil
	}
	return nil, fmt.Errorf("kvm: KVM_GET_MSR_INDEX_LIST: list keeps growing")
}

// CreateVM creates a VM (KVM_CREATE_VM, machine type 0).
func (s *System) CreateVM() (*VM, error) {
	for {
		fd, err := ioctl(s.fd, ioctlCreateVM, 0)
		// KVM_CREATE_VM can fail with EINTR (handled in ioctl) or, transiently, EAGAIN.
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
		}
		unix.CloseOnExec(int(fd))
		return &VM{fd: int(fd), mmapSize: s.mmapSize}, nil
	}
}

// closeFD closes *fd once and marks it closed (-1), so later ioctls fail with EBADF
// instead of reaching a reused descriptor.
func closeFD(fd *int) error {
	if *fd < 0 {
		return nil
	}
	err := unix.Close(*fd)
	*fd = -1
	if err != nil {
		return fmt.Errorf("kvm: close: %w", err)
	}
	return nil
}

// IsPVM reports whether the host's KVM is kvm_pvm (pagetable-based virtualisation without
// VT-x/AMD-V): its guest kernel code runs through KVM's instruction emulator, with quirks
// the VMM must work around (see vmm/arch/x86 CPUID handling).
func IsPVM() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}
