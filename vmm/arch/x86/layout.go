package x86

// Guest-physical addresses of the boot structures (see the package comment).
const (
	GDTAddr        = 0x500
	IDTAddr        = 0x520
	ZeroPageAddr   = 0x7000
	BootStackAddr  = 0x8ff0
	PML4Addr       = 0x9000
	PDPTAddr       = 0xa000
	PDAddr         = 0xb000 // four page directories: 0xb000, 0xc000, 0xd000, 0xe000
	CmdlineAddr    = 0x2_0000
	MPTableAddr    = 0x9_fc00
	MPTableSize    = 0x400 // [MPTableAddr, EBDA end 0xa0000) is reserved in e820
	EBDAEnd        = 0xa_0000
	BIOSROMStart   = 0xf_0000 // [BIOSROMStart, HighMemStart) is reserved in e820 (system BIOS area)
	HighMemStart   = 0x10_0000
	identityMapped = 4 << 30 // bytes covered by the boot page tables

	// CmdlineMax is the longest command line accepted, including the NUL
	// (COMMAND_LINE_SIZE on x86 is 2048).
	CmdlineMax = 2048

	// IOAPICAddr and LAPICAddr are the default interrupt-controller MMIO bases (in KVM's
	// in-kernel irqchip and in the MP table).
	IOAPICAddr = 0xfec0_0000
	LAPICAddr  = 0xfee0_0000

	// TSSAddr is where KVM_SET_TSS_ADDR puts the three pages VT-x needs for real mode:
	// inside the MMIO hole, away from devices (Firecracker's choice).
	TSSAddr = 0xfffb_d000
)
