package kvm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine fd: memory slots, the in-kernel irqchip and PIT, interrupt
// lines, irqfds, ioeventfds and vCPU creation.
type VM struct {
	fd       int
	mmapSize int
}

// Close closes the VM fd. The kernel destroys the VM once every vCPU fd and mapping that
// refers to it is gone too.
func (v *VM) Close() error { return closeFD(&v.fd) }

// CheckExtension is KVM_CHECK_EXTENSION on the VM fd (answers for this VM, e.g. NR_VCPUS).
func (v *VM) CheckExtension(c Cap) (int, error) {
	r, err := ioctl(v.fd, ioctlCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %v: %w", c, err)
	}
	return int(r), nil
}

// SetUserMemoryRegion maps host memory into the guest physical address space
// (KVM_SET_USER_MEMORY_REGION). The caller keeps the host memory mapped for the VM's life.
func (v *VM) SetUserMemoryRegion(r UserspaceMemoryRegion) error {
	if err := v.setUserMemoryRegion(&r); err != nil {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d GPA %#x size %#x: %w",
			r.Slot, r.GuestPhysAddr, r.MemorySize, err)
	}
	return nil
}

// SetTSSAddr places the three-page TSS region Intel VT-x needs for real mode
// (KVM_SET_TSS_ADDR); it must be outside RAM and MMIO.
func (v *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctl(v.fd, ioctlSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC, IOAPIC and per-vCPU local APICs
// (KVM_CREATE_IRQCHIP). Call it before creating vCPUs.
func (v *VM) CreateIRQChip() error {
	if _, err := ioctl(v.fd, ioctlCreateIRQChip, 0); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 PIT (KVM_CREATE_PIT2), after the irqchip.
func (v *VM) CreatePIT2(flags uint32) error {
	if err := v.createPIT2(&PITConfig{Flags: flags}); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// IRQLine sets the level of an interrupt line of the in-kernel irqchip (KVM_IRQ_LINE):
// GSIs 0–15 reach the PIC and IOAPIC, 16–23 the IOAPIC.
func (v *VM) IRQLine(irq uint32, high bool) error {
	l := IRQLevel{IRQ: irq}
	if high {
		l.Level = 1
	}
	if err := v.irqLine(&l); err != nil {
		return fmt.Errorf("kvm: KVM_IRQ_LINE %d=%d: %w", irq, l.Level, err)
	}
	return nil
}

// RegisterIRQFD makes a write to eventfd efd inject an edge on gsi (KVM_IRQFD).
func (v *VM) RegisterIRQFD(efd int, gsi uint32) error {
	if err := v.irqfd(&IRQFD{FD: uint32(efd), GSI: gsi}); err != nil {
		return fmt.Errorf("kvm: KVM_IRQFD fd %d gsi %d: %w", efd, gsi, err)
	}
	return nil
}

// UnregisterIRQFD removes an irqfd registration.
func (v *VM) UnregisterIRQFD(efd int, gsi uint32) error {
	if err := v.irqfd(&IRQFD{FD: uint32(efd), GSI: gsi, Flags: IRQFDFlagDeassign}); err != nil {
		return fmt.Errorf("kvm: KVM_IRQFD deassign fd %d gsi %d: %w", efd, gsi, err)
	}
	return nil
}

// IOEventFDSpec describes one ioeventfd: a guest write of Len bytes to Addr (MMIO, or a port
// when PIO) signals the eventfd instead of exiting to user space. With a Datamatch only
// writes of that value match.
type IOEventFDSpec struct {
	Addr      uint64
	Len       uint32 // 1, 2, 4 or 8 (0: any length, if KVM supports it)
	PIO       bool
	Datamatch *uint64
}

func (s IOEventFDSpec) raw(efd int, deassign bool) IOEventFD {
	f := IOEventFD{Addr: s.Addr, Len: s.Len, FD: int32(efd)}
	if s.PIO {
		f.Flags |= IOEventFDFlagPIO
	}
	if s.Datamatch != nil {
		f.Flags |= IOEventFDFlagDatamatch
		f.Datamatch = *s.Datamatch
	}
	if deassign {
		f.Flags |= IOEventFDFlagDeassign
	}
	return f
}

// RegisterIOEventFD registers an ioeventfd (KVM_IOEVENTFD).
func (v *VM) RegisterIOEventFD(efd int, s IOEventFDSpec) error {
	f := s.raw(efd, false)
	if err := v.ioeventfd(&f); err != nil {
		return fmt.Errorf("kvm: KVM_IOEVENTFD fd %d addr %#x: %w", efd, s.Addr, err)
	}
	return nil
}

// UnregisterIOEventFD removes an ioeventfd registration with the same parameters.
func (v *VM) UnregisterIOEventFD(efd int, s IOEventFDSpec) error {
	f := s.raw(efd, true)
	if err := v.ioeventfd(&f); err != nil {
		return fmt.Errorf("kvm: KVM_IOEVENTFD deassign fd %d addr %#x: %w", efd, s.Addr, err)
	}
	return nil
}

// CreateVCPU creates vCPU id (KVM_CREATE_VCPU; with the in-kernel irqchip the id is also
// the local APIC ID) and maps its kvm_run page.
func (v *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(v.fd, ioctlCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU %d: %w", id, err)
	}
	unix.CloseOnExec(int(fd))
	page, err := unix.Mmap(int(fd), 0, v.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: vCPU %d: mmap kvm_run (%d bytes): %w", id, v.mmapSize, err)
	}
	return &VCPU{fd: int(fd), id: id, run: &Run{page: page}}, nil
}
