package kvm

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues request req on fd with an integer argument. Calls that KVM may interrupt with
// a signal (the Go runtime preempts threads with SIGURG) are retried on EINTR; KVM_RUN is
// not issued through here.
func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return r, e
		}
		return r, nil
	}
}

// ioctlPtr issues request req on fd with a pointer to p (a struct of the request's size).
func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return r, e
		}
		return r, nil
	}
}

// runIoctl issues KVM_RUN once. EINTR is returned to the caller: it is how a signal (or
// immediate_exit) ends KVM_RUN.
func runIoctl(fd int) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctlRun, 0)
	if e != 0 {
		return e
	}
	return nil
}

// cpuid2 is struct kvm_cpuid2 with its flexible array: a header and n entries laid out
// contiguously, as the kernel expects.
type cpuid2 struct {
	buf []uint64 // 8-byte aligned backing store
	n   int
}

func newCPUID2(n int) *cpuid2 {
	words := (sizeofCPUID2 + n*sizeofCPUIDEntry2 + 7) / 8
	c := &cpuid2{buf: make([]uint64, words), n: n}
	*(*uint32)(unsafe.Pointer(&c.buf[0])) = uint32(n) // nent
	return c
}

func (c *cpuid2) ptr() unsafe.Pointer { return unsafe.Pointer(&c.buf[0]) }

func (c *cpuid2) nent() int { return int(*(*uint32)(unsafe.Pointer(&c.buf[0]))) }

func (c *cpuid2) entries() []CPUIDEntry2 {
	n := min(c.nent(), c.n)
	p := (*CPUIDEntry2)(unsafe.Add(unsafe.Pointer(&c.buf[0]), sizeofCPUID2))
	return unsafe.Slice(p, n)
}

// msrs is struct kvm_msrs with its flexible array of struct kvm_msr_entry.
type msrs struct {
	buf []uint64
	n   int
}

func newMSRs(entries []MSREntry) *msrs {
	words := (sizeofMSRs + len(entries)*sizeofMSREntry + 7) / 8
	m := &msrs{buf: make([]uint64, words), n: len(entries)}
	*(*uint32)(unsafe.Pointer(&m.buf[0])) = uint32(len(entries)) // nmsrs
	copy(m.entries(), entries)
	return m
}

func (m *msrs) ptr() unsafe.Pointer { return unsafe.Pointer(&m.buf[0]) }

func (m *msrs) entries() []MSREntry {
	p := (*MSREntry)(unsafe.Add(unsafe.Pointer(&m.buf[0]), sizeofMSRs))
	return unsafe.Slice(p, m.n)
}

// msrList is struct kvm_msr_list: nmsrs and an array of u32 indices.
type msrList struct {
	buf []uint32
}

func newMSRList(n int) *msrList {
	l := &msrList{buf: make([]uint32, 1+n)}
	l.buf[0] = uint32(n)
	return l
}

func (l *msrList) ptr() unsafe.Pointer { return unsafe.Pointer(&l.buf[0]) }

func (l *msrList) indices() []uint32 {
	n := min(int(l.buf[0]), len(l.buf)-1)
	return l.buf[1 : 1+n]
}

// Typed pointer helpers: each ioctl below takes exactly the struct its number encodes.

func (s *System) getSupportedCPUID(c *cpuid2) error {
	_, err := ioctlPtr(s.fd, ioctlGetSupportedCPUID, c.ptr())
	return err
}

func (s *System) getMSRIndexList(l *msrList) error {
	_, err := ioctlPtr(s.fd, ioctlGetMSRIndexList, l.ptr())
	return err
}

func (v *VM) setUserMemoryRegion(r *UserspaceMemoryRegion) error {
	_, err := ioctlPtr(v.fd, ioctlSetUserMemRegion, unsafe.Pointer(r))
	return err
}

func (v *VM) irqLine(l *IRQLevel) error {
	_, err := ioctlPtr(v.fd, ioctlIRQLine, unsafe.Pointer(l))
	return err
}

func (v *VM) createPIT2(c *PITConfig) error {
	_, err := ioctlPtr(v.fd, ioctlCreatePIT2, unsafe.Pointer(c))
	return err
}

func (v *VM) irqfd(f *IRQFD) error {
	_, err := ioctlPtr(v.fd, ioctlIRQFD, unsafe.Pointer(f))
	return err
}

func (v *VM) ioeventfd(f *IOEventFD) error {
	_, err := ioctlPtr(v.fd, ioctlIOEventFD, unsafe.Pointer(f))
	return err
}

func (c *VCPU) regsIoctl(req uintptr, r *Regs) error {
	_, err := ioctlPtr(c.fd, req, unsafe.Pointer(r))
	return err
}

func (c *VCPU) sregsIoctl(req uintptr, s *Sregs) error {
	_, err := ioctlPtr(c.fd, req, unsafe.Pointer(s))
	return err
}

func (c *VCPU) fpuIoctl(req uintptr, f *FPU) error {
	_, err := ioctlPtr(c.fd, req, unsafe.Pointer(f))
	return err
}

func (c *VCPU) lapicIoctl(req uintptr, l *LAPICState) error {
	_, err := ioctlPtr(c.fd, req, unsafe.Pointer(l))
	return err
}

func (c *VCPU) mpStateIoctl(req uintptr, s *MPState) error {
	_, err := ioctlPtr(c.fd, req, unsafe.Pointer(s))
	return err
}

func (c *VCPU) translateIoctl(t *Translation) error {
	_, err := ioctlPtr(c.fd, ioctlTranslate, unsafe.Pointer(t))
	return err
}

func (c *VCPU) cpuidIoctl(req uintptr, b *cpuid2) error {
	_, err := ioctlPtr(c.fd, req, b.ptr())
	return err
}

// msrsIoctl returns how many MSRs KVM processed (KVM_GET_MSRS / KVM_SET_MSRS stop at the
// first one they cannot handle).
func (c *VCPU) msrsIoctl(req uintptr, m *msrs) (int, error) {
	r, err := ioctlPtr(c.fd, req, m.ptr())
	return int(r), err
}

var errShortMapping = errors.New("kvm_run mapping shorter than struct kvm_run")
