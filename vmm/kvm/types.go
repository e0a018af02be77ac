package kvm

// The structs below are the x86-64 kernel structs from include/uapi/linux/kvm.h and
// arch/x86/include/uapi/asm/kvm.h with the same field order, sizes and padding; abi_test.go
// compares every size and offset with the C headers.

// Regs is struct kvm_regs: the general-purpose registers (KVM_GET_REGS, KVM_SET_REGS).
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is struct kvm_segment: a segment register's hidden state.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable: a descriptor-table register (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, descriptor-table and control registers (KVM_GET_SREGS,
// KVM_SET_SREGS).
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64 // (KVM_NR_INTERRUPTS + 63) / 64
}

// FPU is struct kvm_fpu: x87 and SSE state (KVM_GET_FPU, KVM_SET_FPU).
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// CPUIDEntry2 is struct kvm_cpuid_entry2: one CPUID leaf/subleaf result.
type CPUIDEntry2 struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// MSREntry is struct kvm_msr_entry.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// UserspaceMemoryRegion is struct kvm_userspace_memory_region (KVM_SET_USER_MEMORY_REGION).
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64 // bytes; 0 deletes the slot
	UserspaceAddr uint64
}

// IRQLevel is struct kvm_irq_level (KVM_IRQ_LINE).
type IRQLevel struct {
	IRQ   uint32
	Level uint32
}

// PITConfig is struct kvm_pit_config (KVM_CREATE_PIT2).
type PITConfig struct {
	Flags uint32
	_     [15]uint32
}

// IRQFD is struct kvm_irqfd (KVM_IRQFD).
type IRQFD struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// IOEventFD is struct kvm_ioeventfd (KVM_IOEVENTFD).
type IOEventFD struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// Translation is struct kvm_translation (KVM_TRANSLATE).
type Translation struct {
	LinearAddress   uint64
	PhysicalAddress uint64
	Valid           uint8
	Writeable       uint8
	Usermode        uint8
	_               [5]uint8
}

// LAPICState is struct kvm_lapic_state: the local APIC register page (KVM_GET_LAPIC).
type LAPICState struct {
	Regs [1024]byte
}

// MPState is struct kvm_mp_state.
type MPState struct {
	State uint32
}
