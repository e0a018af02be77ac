package kvm

import (
	"encoding/binary"
	"fmt"
)

// Offsets into struct kvm_run (include/uapi/linux/kvm.h, x86-64); checked by abi_test.go.
const (
	runOffImmediateExit = 1
	runOffExitReason    = 8
	runOffIfFlag        = 13
	runOffExit          = 32 // the exit-information union

	runOffIODirection  = runOffExit + 0
	runOffIOSize       = runOffExit + 1
	runOffIOPort       = runOffExit + 2
	runOffIOCount      = runOffExit + 4
	runOffIODataOffset = runOffExit + 8

	runOffMMIOPhysAddr = runOffExit + 0
	runOffMMIOData     = runOffExit + 8
	runOffMMIOLen      = runOffExit + 16
	runOffMMIOIsWrite  = runOffExit + 20

	runOffSystemEventType  = runOffExit + 0
	runOffSystemEventNData = runOffExit + 4
	runOffSystemEventData  = runOffExit + 8

	runOffInternalSuberror = runOffExit + 0
	runOffInternalNData    = runOffExit + 4
	runOffInternalData     = runOffExit + 8
	runOffEmulationFlags   = runOffExit + 8
	runOffEmulationInsnLen = runOffExit + 16
	runOffEmulationInsn    = runOffExit + 17

	runOffFailEntryReason = runOffExit + 0
	runOffFailEntryCPU    = runOffExit + 8

	runOffExceptionNr  = runOffExit + 0
	runOffExceptionErr = runOffExit + 4

	runOffHWExitReason = runOffExit + 0
)

// Run is a vCPU's shared struct kvm_run page. After KVM_RUN returns, the exit fields
// describe why; for port I/O reads and MMIO reads the VMM writes the result back here
// before the next KVM_RUN. Only the vCPU's own thread may use the accessors other than
// SetImmediateExit.
type Run struct {
	page []byte // the whole mapping (KVM_GET_VCPU_MMAP_SIZE bytes)
}

// ExitReason is kvm_run.exit_reason.
func (r *Run) ExitReason() ExitReason {
	return ExitReason(binary.LittleEndian.Uint32(r.page[runOffExitReason:]))
}

// SetImmediateExit sets kvm_run.immediate_exit: while it is 1, KVM_RUN returns EINTR
// without entering the guest. Safe to call from any goroutine.
func (r *Run) SetImmediateExit(on bool) {
	var v uint8
	if on {
		v = 1
	}
	r.setImmediateExit(v)
}

// ImmediateExit reports kvm_run.immediate_exit.
func (r *Run) ImmediateExit() bool { return r.immediateExit() != 0 }

// IO describes a KVM_EXIT_IO: Count repetitions (string instructions) of Size-byte
// accesses to Port. Data is the transfer buffer inside the kvm_run mapping: for OUT it
// holds what the guest wrote; for IN the VMM fills it.
type IO struct {
	Direction uint8 // IODirectionIn or IODirectionOut
	Size      uint8 // 1, 2 or 4
	Port      uint16
	Count     uint32
	Data      []byte // Count*Size bytes
}

// IO decodes the port I/O exit. It fails if the kernel reported a data buffer outside the
// mapping (never on a correct kernel, but the numbers come from shared memory).
func (r *Run) IO() (IO, error) {
	io := IO{
		Direction: r.page[runOffIODirection],
		Size:      r.page[runOffIOSize],
		Port:      binary.LittleEndian.Uint16(r.page[runOffIOPort:]),
		Count:     binary.LittleEndian.Uint32(r.page[runOffIOCount:]),
	}
	off := binary.LittleEndian.Uint64(r.page[runOffIODataOffset:])
	n := uint64(io.Size) * uint64(io.Count)
	if io.Size == 0 || off < sizeofRunHeader || off > uint64(len(r.page)) || n > uint64(len(r.page))-off {
		return IO{}, fmt.Errorf("kvm_run io: size %d count %d data_offset %#x outside the %d-byte mapping",
			io.Size, io.Count, off, len(r.page))
	}
	io.Data = r.page[off : off+n : off+n]
	return io, nil
}

// MMIO describes a KVM_EXIT_MMIO. Data aliases kvm_run.mmio.data[:Len]: for a write it
// holds the guest's value; for a read the VMM fills it.
type MMIO struct {
	PhysAddr uint64
	IsWrite  bool
	Data     []byte
}

// MMIO decodes the MMIO exit.
func (r *Run) MMIO() (MMIO, error) {
	n := binary.LittleEndian.Uint32(r.page[runOffMMIOLen:])
	if n == 0 || n > 8 {
		return MMIO{}, fmt.Errorf("kvm_run mmio: length %d", n)
	}
	return MMIO{
		PhysAddr: binary.LittleEndian.Uint64(r.page[runOffMMIOPhysAddr:]),
		IsWrite:  r.page[runOffMMIOIsWrite] != 0,
		Data:     r.page[runOffMMIOData : runOffMMIOData+int(n) : runOffMMIOData+int(n)],
	}, nil
}

// SystemEvent describes a KVM_EXIT_SYSTEM_EVENT.
type SystemEvent struct {
	Type SystemEventType
	Data []uint64 // architecture-specific (ndata entries; flags on old kernels)
}

// SystemEvent decodes the system-event exit.
func (r *Run) SystemEvent() SystemEvent {
	ev := SystemEvent{Type: SystemEventType(binary.LittleEndian.Uint32(r.page[runOffSystemEventType:]))}
	n := min(binary.LittleEndian.Uint32(r.page[runOffSystemEventNData:]), 16)
	for i := range n {
		ev.Data = append(ev.Data, binary.LittleEndian.Uint64(r.page[runOffSystemEventData+8*int(i):]))
	}
	return ev
}

// Internal describes a KVM_EXIT_INTERNAL_ERROR.
type Internal struct {
	Suberror uint32
	Data     []uint64 // internal.data[:ndata]
	// Insn holds the bytes of the instruction KVM failed to emulate when the kernel
	// provided them (suberror InternalErrorEmulation with the instruction-bytes flag).
	Insn []byte
}

// Internal decodes the internal-error exit.
func (r *Run) Internal() Internal {
	in := Internal{Suberror: binary.LittleEndian.Uint32(r.page[runOffInternalSuberror:])}
	n := min(binary.LittleEndian.Uint32(r.page[runOffInternalNData:]), 16)
	for i := range n {
		in.Data = append(in.Data, binary.LittleEndian.Uint64(r.page[runOffInternalData+8*int(i):]))
	}
	if in.Suberror == InternalErrorEmulation && n >= 3 &&
		binary.LittleEndian.Uint64(r.page[runOffEmulationFlags:])&InternalErrorFlagInstructionBytes != 0 {
		size := min(int(r.page[runOffEmulationInsnLen]), 15)
		in.Insn = append([]byte(nil), r.page[runOffEmulationInsn:runOffEmulationInsn+size]...)
	}
	return in
}

// FailEntry decodes a KVM_EXIT_FAIL_ENTRY: the hardware reason and the host CPU.
func (r *Run) FailEntry() (reason uint64, cpu uint32) {
	return binary.LittleEndian.Uint64(r.page[runOffFailEntryReason:]),
		binary.LittleEndian.Uint32(r.page[runOffFailEntryCPU:])
}

// Exception decodes a KVM_EXIT_EXCEPTION: vector and error code.
func (r *Run) Exception() (vector, errorCode uint32) {
	return binary.LittleEndian.Uint32(r.page[runOffExceptionNr:]),
		binary.LittleEndian.Uint32(r.page[runOffExceptionErr:])
}

// HardwareExitReason decodes a KVM_EXIT_UNKNOWN's hardware exit reason.
func (r *Run) HardwareExitReason() uint64 {
	return binary.LittleEndian.Uint64(r.page[runOffHWExitReason:])
}

// IFFlag reports kvm_run.if_flag (the guest's RFLAGS.IF at exit).
func (r *Run) IFFlag() bool { return r.page[runOffIfFlag] != 0 }
