package vmm

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/vmbench/runner/vmm/kvm"
)

// ExitReason is how a run ended.
type ExitReason int

const (
	// ExitNone: the run has not ended (zero value).
	ExitNone ExitReason = iota
	// ExitReset: the guest pulsed the reset line through the i8042 (Linux reboot=k).
	ExitReset
	// ExitShutdown: a vCPU triple-faulted (KVM_EXIT_SHUTDOWN). Linux reboot=t restarts and,
	// on the kvm-pvm kernel flavour, powers off this way.
	ExitShutdown
	// ExitSystemEvent: KVM reported a system event (shutdown, reset, crash; Exit.SystemEvent).
	ExitSystemEvent
	// ExitStopped: Stop was called or the context ended.
	ExitStopped
	// ExitError: a vCPU failed; Run returns the error.
	ExitError
)

func (r ExitReason) String() string {
	switch r {
	case ExitNone:
		return "none"
	case ExitReset:
		return "reset"
	case ExitShutdown:
		return "shutdown"
	case ExitSystemEvent:
		return "system-event"
	case ExitStopped:
		return "stopped"
	case ExitError:
		return "error"
	}
	return fmt.Sprintf("exit-reason(%d)", int(r))
}

// Exit describes the end of a run.
type Exit struct {
	Reason ExitReason
	// VCPU is the vCPU whose exit ended the run (-1 for ExitStopped).
	VCPU int
	// RIP is that vCPU's instruction pointer at the exit (0 when unknown).
	RIP uint64
	// SystemEvent is the event type for ExitSystemEvent.
	SystemEvent kvm.SystemEventType
	// Duration is the time from the first KVM_RUN to the end of the run.
	Duration time.Duration
	// IOExits and MMIOExits count the exits to user space over all vCPUs.
	IOExits, MMIOExits uint64
	// ConsoleDropped is the number of console bytes dropped because the console writer
	// was too slow.
	ConsoleDropped uint64
}

// Normal reports whether the guest ended the run itself in an orderly way (reset, power
// off by triple fault, or a shutdown/reset system event).
func (e Exit) Normal() bool {
	switch e.Reason {
	case ExitReset, ExitShutdown:
		return true
	case ExitSystemEvent:
		return e.SystemEvent == kvm.SystemEventShutdown || e.SystemEvent == kvm.SystemEventReset
	}
	return false
}

// InternalError is KVM_EXIT_INTERNAL_ERROR: KVM could not continue the vCPU. Under kvm_pvm
// this is how an instruction its emulator lacks (INT3, XRSTOR, CMPXCHG16B, …) shows up.
type InternalError struct {
	VCPU     int
	Suberror uint32
	RIP      uint64
	// Code holds up to 15 instruction bytes at RIP: from KVM when it reports them, else
	// read from guest memory through the vCPU's page tables (nil if that failed).
	Code []byte
	Data []uint64 // kvm_run.internal.data
}

func (e *InternalError) Error() string {
	what := map[uint32]string{
		kvm.InternalErrorEmulation:            "instruction emulation failed",
		kvm.InternalErrorSimulEx:              "exception while delivering an exception",
		kvm.InternalErrorDeliveryEv:           "exit while delivering an event",
		kvm.InternalErrorUnexpectedExitReason: "unexpected exit reason",
	}[e.Suberror]
	if what == "" {
		what = "unknown"
	}
	code := "unavailable"
	if len(e.Code) > 0 {
		code = hex.EncodeToString(e.Code)
	}
	return fmt.Sprintf("vmm: vCPU %d: KVM internal error, suberror %d (%s) at RIP %#x, code %s",
		e.VCPU, e.Suberror, what, e.RIP, code)
}
