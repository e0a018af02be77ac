package i8042

import "sync"

// Base is the first I/O port of the controller; Size covers 0x60..0x64.
const (
	Base = 0x60
	Size = 5

	offData    = 0 // port 0x60
	offCommand = 4 // port 0x64
)

// Controller commands (written to port 0x64).
const (
	cmdReadCommandByte  = 0x20
	cmdWriteCommandByte = 0x60
	cmdSelfTest         = 0xaa
	cmdInterfaceTest    = 0xab
	cmdWriteOutputPort  = 0xd1
	cmdPulseReset       = 0xfe // pulse output line 0 (reset) low

	selfTestOK = 0x55

	statusOBF    = 0x01 // output buffer full: a byte waits at port 0x60
	statusSYS    = 0x04 // system flag: self-test passed
	statusCMDDAT = 0x08 // last write was a command

	outputPortReset = 0x01 // output port bit 0: CPU reset line (active low)
)

// Device is the keyboard controller. OnReset runs (on the vCPU thread, so it must not
// block) each time the guest asks for a CPU reset.
type Device struct {
	onReset func()

	mu      sync.Mutex
	status  uint8 // guarded by mu
	cmdByte uint8 // guarded by mu
	out     uint8 // byte waiting at port 0x60, guarded by mu
	pending uint8 // command awaiting a data byte (0: none), guarded by mu
	resets  int   // guarded by mu
}

// New returns a controller that calls onReset on a reset request.
func New(onReset func()) *Device {
	return &Device{onReset: onReset, status: statusSYS, cmdByte: 0x45}
}

// Read implements bus.Device.
func (d *Device) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
	if len(data) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch offset {
	case offCommand:
		data[0] = d.status
	case offData:
		data[0] = d.out
		d.status &^= statusOBF
	}
}

// Write implements bus.Device.
func (d *Device) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	reset := false
	d.mu.Lock()
	switch offset {
	case offCommand:
		d.status |= statusCMDDAT
		d.pending = 0
		switch v {
		case cmdReadCommandByte:
			d.push(d.cmdByte)
		case cmdWriteCommandByte, cmdWriteOutputPort:
			d.pending = v
		case cmdSelfTest:
			d.push(selfTestOK)
		case cmdInterfaceTest:
			d.push(0)
		case cmdPulseReset:
			reset = true
		}
	case offData:
		d.status &^= statusCMDDAT
		switch d.pending {
		case cmdWriteCommandByte:
			d.cmdByte = v
		case cmdWriteOutputPort:
			reset = v&outputPortReset == 0
		}
		d.pending = 0
	}
	if reset {
		d.resets++
	}
	d.mu.Unlock()
	if reset && d.onReset != nil {
		d.onReset()
	}
}

// push places a byte in the output buffer. Precondition: mu held.
func (d *Device) push(b uint8) {
	d.out = b
	d.status |= statusOBF
}

// Resets is how many reset requests the guest made.
func (d *Device) Resets() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resets
}
