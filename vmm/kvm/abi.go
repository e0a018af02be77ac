package kvm

import "fmt"

// ioctl request encoding (include/uapi/asm-generic/ioctl.h): dir<<30 | size<<16 | type<<8 | nr.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	kvmio = 0xAE // KVMIO
)

func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | kvmio<<8 | nr }
func io(nr uintptr) uintptr             { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr      { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr      { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr     { return ioc(iocRead|iocWrite, nr, size) }

// Struct sizes used in ioctl numbers; abi_test.go checks them against sizeof() in the C
// headers and against unsafe.Sizeof of the Go types.
const (
	sizeofMSRList               = 4
	sizeofCPUID2                = 8
	sizeofUserspaceMemoryRegion = 32
	sizeofIRQLevel              = 8
	sizeofPITConfig             = 64
	sizeofIRQFD                 = 32
	sizeofIOEventFD             = 64
	sizeofRegs                  = 144
	sizeofSregs                 = 312
	sizeofTranslation           = 24
	sizeofMSRs                  = 8
	sizeofFPU                   = 416
	sizeofLAPICState            = 1024
	sizeofMPState               = 4
	sizeofRunHeader             = 304 // struct kvm_run up to kvm_sync_regs
	sizeofCPUIDEntry2           = 40
	sizeofMSREntry              = 16
	sizeofSegment               = 24
	sizeofDTable                = 16
)

// ioctl numbers (include/uapi/linux/kvm.h). System ioctls go to /dev/kvm, VM ioctls to a VM
// fd, vCPU ioctls to a vCPU fd.
var (
	ioctlGetAPIVersion     = io(0x00)                               // KVM_GET_API_VERSION
	ioctlCreateVM          = io(0x01)                               // KVM_CREATE_VM
	ioctlGetMSRIndexList   = iowr(0x02, sizeofMSRList)              // KVM_GET_MSR_INDEX_LIST
	ioctlCheckExtension    = io(0x03)                               // KVM_CHECK_EXTENSION
	ioctlGetVCPUMmapSize   = io(0x04)                               // KVM_GET_VCPU_MMAP_SIZE
	ioctlGetSupportedCPUID = iowr(0x05, sizeofCPUID2)               // KVM_GET_SUPPORTED_CPUID
	ioctlCreateVCPU        = io(0x41)                               // KVM_CREATE_VCPU
	ioctlSetUserMemRegion  = iow(0x46, sizeofUserspaceMemoryRegion) // KVM_SET_USER_MEMORY_REGION
	ioctlSetTSSAddr        = io(0x47)                               // KVM_SET_TSS_ADDR
	ioctlCreateIRQChip     = io(0x60)                               // KVM_CREATE_IRQCHIP
	ioctlIRQLine           = iow(0x61, sizeofIRQLevel)              // KVM_IRQ_LINE
	ioctlIRQFD             = iow(0x76, sizeofIRQFD)                 // KVM_IRQFD
	ioctlCreatePIT2        = iow(0x77, sizeofPITConfig)             // KVM_CREATE_PIT2
	ioctlIOEventFD         = iow(0x79, sizeofIOEventFD)             // KVM_IOEVENTFD
	ioctlRun               = io(0x80)                               // KVM_RUN
	ioctlGetRegs           = ior(0x81, sizeofRegs)                  // KVM_GET_REGS
	ioctlSetRegs           = iow(0x82, sizeofRegs)                  // KVM_SET_REGS
	ioctlGetSregs          = ior(0x83, sizeofSregs)                 // KVM_GET_SREGS
	ioctlSetSregs          = iow(0x84, sizeofSregs)                 // KVM_SET_SREGS
	ioctlTranslate         = iowr(0x85, sizeofTranslation)          // KVM_TRANSLATE
	ioctlGetMSRs           = iowr(0x88, sizeofMSRs)                 // KVM_GET_MSRS
	ioctlSetMSRs           = iow(0x89, sizeofMSRs)                  // KVM_SET_MSRS
	ioctlGetFPU            = ior(0x8c, sizeofFPU)                   // KVM_GET_FPU
	ioctlSetFPU            = iow(0x8d, sizeofFPU)                   // KVM_SET_FPU
	ioctlGetLAPIC          = ior(0x8e, sizeofLAPICState)            // KVM_GET_LAPIC
	ioctlSetLAPIC          = iow(0x8f, sizeofLAPICState)            // KVM_SET_LAPIC
	ioctlSetCPUID2         = iow(0x90, sizeofCPUID2)                // KVM_SET_CPUID2
	ioctlGetCPUID2         = iowr(0x91, sizeofCPUID2)               // KVM_GET_CPUID2
	ioctlGetMPState        = ior(0x98, sizeofMPState)               // KVM_GET_MP_STATE
	ioctlSetMPState        = iow(0x99, sizeofMPState)               // KVM_SET_MP_STATE
	ioctlGetTSCKHz         = io(0xa3)                               // KVM_GET_TSC_KHZ
)

// APIVersion is the only KVM API version there has ever been (KVM_API_VERSION).
const APIVersion = 12

// Cap is a KVM capability for KVM_CHECK_EXTENSION (KVM_CAP_*).
type Cap uintptr

// Capabilities the VMM checks or reports.
const (
	CapIRQChip          Cap = 0   // KVM_CAP_IRQCHIP
	CapHLT              Cap = 1   // KVM_CAP_HLT
	CapUserMemory       Cap = 3   // KVM_CAP_USER_MEMORY
	CapSetTSSAddr       Cap = 4   // KVM_CAP_SET_TSS_ADDR
	CapExtCPUID         Cap = 7   // KVM_CAP_EXT_CPUID
	CapNRVCPUs          Cap = 9   // KVM_CAP_NR_VCPUS (recommended maximum)
	CapNRMemslots       Cap = 10  // KVM_CAP_NR_MEMSLOTS
	CapMPState          Cap = 14  // KVM_CAP_MP_STATE
	CapIRQFD            Cap = 32  // KVM_CAP_IRQFD
	CapPIT2             Cap = 33  // KVM_CAP_PIT2
	CapIOEventFD        Cap = 36  // KVM_CAP_IOEVENTFD
	CapInternalErrData  Cap = 40  // KVM_CAP_INTERNAL_ERROR_DATA
	CapXSave            Cap = 55  // KVM_CAP_XSAVE
	CapMaxVCPUs         Cap = 66  // KVM_CAP_MAX_VCPUS
	CapTSCDeadlineTimer Cap = 72  // KVM_CAP_TSC_DEADLINE_TIMER
	CapSplitIRQChip     Cap = 121 // KVM_CAP_SPLIT_IRQCHIP
	CapImmediateExit    Cap = 136 // KVM_CAP_IMMEDIATE_EXIT
)

var capNames = map[Cap]string{
	CapIRQChip: "IRQCHIP", CapHLT: "HLT", CapUserMemory: "USER_MEMORY", CapSetTSSAddr: "SET_TSS_ADDR",
	CapExtCPUID: "EXT_CPUID", CapNRVCPUs: "NR_VCPUS", CapNRMemslots: "NR_MEMSLOTS",
	CapMPState: "MP_STATE", CapIRQFD: "IRQFD", CapPIT2: "PIT2", CapIOEventFD: "IOEVENTFD",
	CapInternalErrData: "INTERNAL_ERROR_DATA", CapXSave: "XSAVE", CapMaxVCPUs: "MAX_VCPUS",
	CapTSCDeadlineTimer: "TSC_DEADLINE_TIMER", CapSplitIRQChip: "SPLIT_IRQCHIP",
	CapImmediateExit: "IMMEDIATE_EXIT",
}

func (c Cap) String() string {
	if n, ok := capNames[c]; ok {
		return "KVM_CAP_" + n
	}
	return fmt.Sprintf("KVM_CAP(%d)", uintptr(c))
}

// ExitReason is kvm_run.exit_reason (KVM_EXIT_*).
type ExitReason uint32

// Exit reasons.
const (
	ExitUnknown       ExitReason = 0  // KVM_EXIT_UNKNOWN
	ExitException     ExitReason = 1  // KVM_EXIT_EXCEPTION
	ExitIO            ExitReason = 2  // KVM_EXIT_IO
	ExitHypercall     ExitReason = 3  // KVM_EXIT_HYPERCALL
	ExitDebug         ExitReason = 4  // KVM_EXIT_DEBUG
	ExitHLT           ExitReason = 5  // KVM_EXIT_HLT
	ExitMMIO          ExitReason = 6  // KVM_EXIT_MMIO
	ExitIRQWindowOpen ExitReason = 7  // KVM_EXIT_IRQ_WINDOW_OPEN
	ExitShutdown      ExitReason = 8  // KVM_EXIT_SHUTDOWN
	ExitFailEntry     ExitReason = 9  // KVM_EXIT_FAIL_ENTRY
	ExitIntr          ExitReason = 10 // KVM_EXIT_INTR
	ExitSetTPR        ExitReason = 11 // KVM_EXIT_SET_TPR
	ExitTPRAccess     ExitReason = 12 // KVM_EXIT_TPR_ACCESS
	ExitNMI           ExitReason = 16 // KVM_EXIT_NMI
	ExitInternalError ExitReason = 17 // KVM_EXIT_INTERNAL_ERROR
	ExitSystemEvent   ExitReason = 24 // KVM_EXIT_SYSTEM_EVENT
	ExitIOAPICEOI     ExitReason = 26 // KVM_EXIT_IOAPIC_EOI
	ExitX86RDMSR      ExitReason = 29 // KVM_EXIT_X86_RDMSR
	ExitX86WRMSR      ExitReason = 30 // KVM_EXIT_X86_WRMSR
	ExitX86BusLock    ExitReason = 33 // KVM_EXIT_X86_BUS_LOCK
	ExitNotify        ExitReason = 37 // KVM_EXIT_NOTIFY
	ExitMemoryFault   ExitReason = 39 // KVM_EXIT_MEMORY_FAULT
)

var exitNames = map[ExitReason]string{
	ExitUnknown: "UNKNOWN", ExitException: "EXCEPTION", ExitIO: "IO", ExitHypercall: "HYPERCALL",
	ExitDebug: "DEBUG", ExitHLT: "HLT", ExitMMIO: "MMIO", ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	ExitShutdown: "SHUTDOWN", ExitFailEntry: "FAIL_ENTRY", ExitIntr: "INTR", ExitSetTPR: "SET_TPR",
	ExitTPRAccess: "TPR_ACCESS", ExitNMI: "NMI", ExitInternalError: "INTERNAL_ERROR",
	ExitSystemEvent: "SYSTEM_EVENT", ExitIOAPICEOI: "IOAPIC_EOI", ExitX86RDMSR: "X86_RDMSR",
	ExitX86WRMSR: "X86_WRMSR", ExitX86BusLock: "X86_BUS_LOCK", ExitNotify: "NOTIFY",
	ExitMemoryFault: "MEMORY_FAULT",
}

func (e ExitReason) String() string {
	if n, ok := exitNames[e]; ok {
		return "KVM_EXIT_" + n
	}
	return fmt.Sprintf("KVM_EXIT(%d)", uint32(e))
}

// Directions of a port I/O exit (kvm_run.io.direction).
const (
	IODirectionIn  = 0 // KVM_EXIT_IO_IN
	IODirectionOut = 1 // KVM_EXIT_IO_OUT
)

// SystemEventType is kvm_run.system_event.type (KVM_SYSTEM_EVENT_*).
type SystemEventType uint32

// System event types.
const (
	SystemEventShutdown SystemEventType = 1 // KVM_SYSTEM_EVENT_SHUTDOWN
	SystemEventReset    SystemEventType = 2 // KVM_SYSTEM_EVENT_RESET
	SystemEventCrash    SystemEventType = 3 // KVM_SYSTEM_EVENT_CRASH
	SystemEventWakeup   SystemEventType = 4 // KVM_SYSTEM_EVENT_WAKEUP
	SystemEventSuspend  SystemEventType = 5 // KVM_SYSTEM_EVENT_SUSPEND
	SystemEventSEVTerm  SystemEventType = 6 // KVM_SYSTEM_EVENT_SEV_TERM
)

func (t SystemEventType) String() string {
	switch t {
	case SystemEventShutdown:
		return "shutdown"
	case SystemEventReset:
		return "reset"
	case SystemEventCrash:
		return "crash"
	case SystemEventWakeup:
		return "wakeup"
	case SystemEventSuspend:
		return "suspend"
	case SystemEventSEVTerm:
		return "sev-term"
	}
	return fmt.Sprintf("system-event(%d)", uint32(t))
}

// Internal error suberrors (kvm_run.internal.suberror, KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation            = 1 // KVM_INTERNAL_ERROR_EMULATION
	InternalErrorSimulEx              = 2 // KVM_INTERNAL_ERROR_SIMUL_EX
	InternalErrorDeliveryEv           = 3 // KVM_INTERNAL_ERROR_DELIVERY_EV
	InternalErrorUnexpectedExitReason = 4 // KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON

	// InternalErrorFlagInstructionBytes marks emulation_failure.insn_bytes as valid
	// (KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES).
	InternalErrorFlagInstructionBytes = 1
)

// Flags of IRQFD.Flags and IOEventFD.Flags.
const (
	IRQFDFlagDeassign = 1 << 0 // KVM_IRQFD_FLAG_DEASSIGN

	IOEventFDFlagDatamatch = 1 << 0 // KVM_IOEVENTFD_FLAG_DATAMATCH
	IOEventFDFlagPIO       = 1 << 1 // KVM_IOEVENTFD_FLAG_PIO
	IOEventFDFlagDeassign  = 1 << 2 // KVM_IOEVENTFD_FLAG_DEASSIGN
)

// MP states (struct kvm_mp_state, KVM_MP_STATE_*).
const (
	MPStateRunnable      = 0 // KVM_MP_STATE_RUNNABLE
	MPStateUninitialized = 1 // KVM_MP_STATE_UNINITIALIZED (an AP waiting for INIT)
	MPStateInitReceived  = 2 // KVM_MP_STATE_INIT_RECEIVED (an AP waiting for SIPI)
	MPStateHalted        = 3 // KVM_MP_STATE_HALTED
	MPStateSIPIReceived  = 4 // KVM_MP_STATE_SIPI_RECEIVED
)

// CPUID entry flags (struct kvm_cpuid_entry2.flags).
const (
	CPUIDFlagSignificantIndex = 1 << 0 // KVM_CPUID_FLAG_SIGNIFCANT_INDEX (sic)
)

// MaxCPUIDEntries bounds the KVM_GET_SUPPORTED_CPUID buffer (KVM's own limit,
// KVM_MAX_CPUID_ENTRIES, is 256).
const MaxCPUIDEntries = 256
