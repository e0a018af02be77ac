package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is a virtual CPU fd and its kvm_run page.
//
// KVM requires that a vCPU's ioctls come from one thread at a time, and KVM_RUN is best
// issued always from the same OS thread (runtime.LockOSThread). The kvm_run page may be
// read by that thread only, except SetImmediateExit.
type VCPU struct {
	fd  int
	id  int
	run *Run
}

// ID is the vCPU index given to KVM_CREATE_VCPU (the local APIC ID).
func (c *VCPU) ID() int { return c.id }

// Run returns the vCPU's kvm_run page.
func (c *VCPU) Run() *Run { return c.run }

// Close unmaps the kvm_run page and closes the vCPU fd. No thread may be inside KVM_RUN.
func (c *VCPU) Close() error {
	var errs []error
	if c.run != nil && c.run.page != nil {
		if err := unix.Munmap(c.run.page); err != nil {
			errs = append(errs, fmt.Errorf("kvm: vCPU %d: munmap kvm_run: %w", c.id, err))
		}
		c.run.page = nil
	}
	errs = append(errs, closeFD(&c.fd))
	return errors.Join(errs...)
}

// RunOnce enters the guest (KVM_RUN) until the next exit to user space. It returns
// unix.EINTR (wrapped) when a signal or kvm_run.immediate_exit ended the call without a
// guest exit; errors.Is(err, unix.EINTR) tells that case apart.
func (c *VCPU) RunOnce() error {
	if c.fd < 0 {
		return fmt.Errorf("kvm: vCPU %d: KVM_RUN: %w", c.id, unix.EBADF)
	}
	if err := runIoctl(c.fd); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_RUN: %w", c.id, err)
	}
	return nil
}

// Regs reads the general-purpose registers (KVM_GET_REGS).
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	if err := c.regsIoctl(ioctlGetRegs, &r); err != nil {
		return r, fmt.Errorf("kvm: vCPU %d: KVM_GET_REGS: %w", c.id, err)
	}
	return r, nil
}

// SetRegs writes the general-purpose registers (KVM_SET_REGS).
func (c *VCPU) SetRegs(r Regs) error {
	if err := c.regsIoctl(ioctlSetRegs, &r); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_REGS: %w", c.id, err)
	}
	return nil
}

// Sregs reads the special registers (KVM_GET_SREGS).
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	if err := c.sregsIoctl(ioctlGetSregs, &s); err != nil {
		return s, fmt.Errorf("kvm: vCPU %d: KVM_GET_SREGS: %w", c.id, err)
	}
	return s, nil
}

// SetSregs writes the special registers (KVM_SET_SREGS).
func (c *VCPU) SetSregs(s Sregs) error {
	if err := c.sregsIoctl(ioctlSetSregs, &s); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_SREGS: %w", c.id, err)
	}
	return nil
}

// FPU reads the x87/SSE state (KVM_GET_FPU).
func (c *VCPU) FPU() (FPU, error) {
	var f FPU
	if err := c.fpuIoctl(ioctlGetFPU, &f); err != nil {
		return f, fmt.Errorf("kvm: vCPU %d: KVM_GET_FPU: %w", c.id, err)
	}
	return f, nil
}

// SetFPU writes the x87/SSE state (KVM_SET_FPU).
func (c *VCPU) SetFPU(f FPU) error {
	if err := c.fpuIoctl(ioctlSetFPU, &f); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_FPU: %w", c.id, err)
	}
	return nil
}

// LAPIC reads the local APIC register page (KVM_GET_LAPIC; needs the in-kernel irqchip).
func (c *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	if err := c.lapicIoctl(ioctlGetLAPIC, &l); err != nil {
		return l, fmt.Errorf("kvm: vCPU %d: KVM_GET_LAPIC: %w", c.id, err)
	}
	return l, nil
}

// SetLAPIC writes the local APIC register page (KVM_SET_LAPIC).
func (c *VCPU) SetLAPIC(l LAPICState) error {
	if err := c.lapicIoctl(ioctlSetLAPIC, &l); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_LAPIC: %w", c.id, err)
	}
	return nil
}

// MPState reads the multiprocessing state (KVM_GET_MP_STATE).
func (c *VCPU) MPState() (uint32, error) {
	var s MPState
	if err := c.mpStateIoctl(ioctlGetMPState, &s); err != nil {
		return 0, fmt.Errorf("kvm: vCPU %d: KVM_GET_MP_STATE: %w", c.id, err)
	}
	return s.State, nil
}

// SetMPState writes the multiprocessing state (KVM_SET_MP_STATE).
func (c *VCPU) SetMPState(state uint32) error {
	s := MPState{State: state}
	if err := c.mpStateIoctl(ioctlSetMPState, &s); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MP_STATE %d: %w", c.id, state, err)
	}
	return nil
}

// SetCPUID2 sets the CPUID results the guest sees (KVM_SET_CPUID2).
func (c *VCPU) SetCPUID2(entries []CPUIDEntry2) error {
	if len(entries) > MaxCPUIDEntries {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_CPUID2: %d entries (max %d)", c.id, len(entries), MaxCPUIDEntries)
	}
	b := newCPUID2(len(entries))
	copy(b.entries(), entries)
	if err := c.cpuidIoctl(ioctlSetCPUID2, b); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_CPUID2 (%d entries): %w", c.id, len(entries), err)
	}
	return nil
}

// CPUID2 reads back the vCPU's CPUID table (KVM_GET_CPUID2).
func (c *VCPU) CPUID2() ([]CPUIDEntry2, error) {
	b := newCPUID2(MaxCPUIDEntries)
	if err := c.cpuidIoctl(ioctlGetCPUID2, b); err != nil {
		return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_CPUID2: %w", c.id, err)
	}
	return append([]CPUIDEntry2(nil), b.entries()...), nil
}

// MSRs reads the given MSRs (KVM_GET_MSRS). It fails if KVM cannot read all of them,
// naming the first it could not.
func (c *VCPU) MSRs(indices ...uint32) ([]MSREntry, error) {
	in := make([]MSREntry, len(indices))
	for i, idx := range indices {
		in[i].Index = idx
	}
	m := newMSRs(in)
	n, err := c.msrsIoctl(ioctlGetMSRs, m)
	if err != nil {
		return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS: %w", c.id, err)
	}
	if n != len(indices) {
		return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS: MSR %#x not readable", c.id, indices[n])
	}
	return append([]MSREntry(nil), m.entries()...), nil
}

// SetMSRs writes MSRs (KVM_SET_MSRS). It fails if KVM rejects any, naming the first.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	m := newMSRs(entries)
	n, err := c.msrsIoctl(ioctlSetMSRs, m)
	if err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS: %w", c.id, err)
	}
	if n != len(entries) {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS: MSR %#x rejected", c.id, entries[n].Index)
	}
	return nil
}

// Translate walks the guest's page tables for a linear address (KVM_TRANSLATE).
func (c *VCPU) Translate(linear uint64) (gpa uint64, ok bool, err error) {
	t := Translation{LinearAddress: linear}
	if err := c.translateIoctl(&t); err != nil {
		return 0, false, fmt.Errorf("kvm: vCPU %d: KVM_TRANSLATE %#x: %w", c.id, linear, err)
	}
	return t.PhysicalAddress, t.Valid != 0, nil
}
