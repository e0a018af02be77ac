package mmio

import "fmt"

// Size is the size of each device's MMIO window.
const Size = 0x1000

// QueueNotifyOffset is the offset of the QueueNotify register, the address a VMM backs
// with an ioeventfd.
const QueueNotifyOffset = 0x050

// ConfigOffset is where the device-specific configuration space starts.
const ConfigOffset = 0x100

// MagicValue is "virt" in little-endian, the value of RegMagicValue.
const MagicValue = 0x74726976

// Version is the register-layout version this transport implements (2: non-legacy).
const Version = 2

// VendorID is our virtio subsystem vendor ID ("VMBE" in little-endian); the spec leaves
// the value to the implementation.
const VendorID = 0x45424d56

// Reg is the offset of a register in the virtio-mmio window (virtio 1.2 §4.2.2, table
// "MMIO Device Register Layout"). Every register is 32 bits wide.
type Reg uint64

const (
	RegMagicValue        Reg = 0x000 // R
	RegVersion           Reg = 0x004 // R
	RegDeviceID          Reg = 0x008 // R
	RegVendorID          Reg = 0x00c // R
	RegDeviceFeatures    Reg = 0x010 // R: 32 feature bits selected by DeviceFeaturesSel
	RegDeviceFeaturesSel Reg = 0x014 // W
	RegDriverFeatures    Reg = 0x020 // W: 32 feature bits selected by DriverFeaturesSel
	RegDriverFeaturesSel Reg = 0x024 // W
	RegQueueSel          Reg = 0x030 // W
	RegQueueNumMax       Reg = 0x034 // R: 0 if the selected queue does not exist
	RegQueueNum          Reg = 0x038 // W
	RegQueueReady        Reg = 0x044 // RW
	RegQueueNotify       Reg = 0x050 // W: queue index
	RegInterruptStatus   Reg = 0x060 // R
	RegInterruptACK      Reg = 0x064 // W
	RegStatus            Reg = 0x070 // RW: writing 0 resets the device
	RegQueueDescLow      Reg = 0x080 // W
	RegQueueDescHigh     Reg = 0x084 // W
	RegQueueDriverLow    Reg = 0x090 // W: available ring
	RegQueueDriverHigh   Reg = 0x094 // W
	RegQueueDeviceLow    Reg = 0x0a0 // W: used ring
	RegQueueDeviceHigh   Reg = 0x0a4 // W
	RegSHMSel            Reg = 0x0ac // W: shared memory region (none here)
	RegSHMLenLow         Reg = 0x0b0 // R: all ones = no such region
	RegSHMLenHigh        Reg = 0x0b4 // R
	RegSHMBaseLow        Reg = 0x0b8 // R
	RegSHMBaseHigh       Reg = 0x0bc // R
	RegConfigGeneration  Reg = 0x0fc // R
)

var regNames = map[Reg]string{
	RegMagicValue: "MagicValue", RegVersion: "Version", RegDeviceID: "DeviceID",
	RegVendorID: "VendorID", RegDeviceFeatures: "DeviceFeatures",
	RegDeviceFeaturesSel: "DeviceFeaturesSel", RegDriverFeatures: "DriverFeatures",
	RegDriverFeaturesSel: "DriverFeaturesSel", RegQueueSel: "QueueSel",
	RegQueueNumMax: "QueueNumMax", RegQueueNum: "QueueNum", RegQueueReady: "QueueReady",
	RegQueueNotify: "QueueNotify", RegInterruptStatus: "InterruptStatus",
	RegInterruptACK: "InterruptACK", RegStatus: "Status", RegQueueDescLow: "QueueDescLow",
	RegQueueDescHigh: "QueueDescHigh", RegQueueDriverLow: "QueueDriverLow",
	RegQueueDriverHigh: "QueueDriverHigh", RegQueueDeviceLow: "QueueDeviceLow",
	RegQueueDeviceHigh: "QueueDeviceHigh", RegSHMSel: "SHMSel", RegSHMLenLow: "SHMLenLow",
	RegSHMLenHigh: "SHMLenHigh", RegSHMBaseLow: "SHMBaseLow", RegSHMBaseHigh: "SHMBaseHigh",
	RegConfigGeneration: "ConfigGeneration",
}

func (r Reg) String() string {
	if n, ok := regNames[r]; ok {
		return n
	}
	if r >= ConfigOffset && r < Size {
		return fmt.Sprintf("Config+%#x", uint64(r-ConfigOffset))
	}
	return fmt.Sprintf("Reg(%#x)", uint64(r))
}

// CmdlineArg is the kernel command-line argument that makes Linux probe a virtio-mmio
// device at base with interrupt line irq (Documentation/admin-guide/kernel-parameters.txt,
// "virtio_mmio.device=<size>@<baseaddr>:<irq>").
func CmdlineArg(base uint64, irq uint32) string {
	return fmt.Sprintf("virtio_mmio.device=4K@%#x:%d", base, irq)
}
