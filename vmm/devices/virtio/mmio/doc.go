// Package mmio is the virtio-mmio transport (virtio 1.2 §4.2, "version 2", non-legacy
// register layout): the 4 KiB register window through which a guest discovers a virtio
// device, negotiates features, configures virtqueues and receives interrupts.
//
// # Discovery
//
// The guest kernel finds each device through its command line (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES):
// CmdlineArg(base, irq) yields "virtio_mmio.device=4K@0xc0001000:5". The VMM registers the
// Transport on its MMIO bus at base for Size bytes, connects IRQ to the interrupt line
// (an irqfd) and, where it can, delivers queue kicks through an ioeventfd on
// base+QueueNotifyOffset that calls Notify.
//
// # What the guest controls
//
// Every register write: offsets, access widths and values are hostile. Accesses that are
// not 32 bits wide (outside the configuration space), unknown offsets, writes to read-only
// registers and writes that the current device status forbids are ignored, counted
// (Ignored) and logged at a limited rate; none can panic or block. Queue addresses and sizes
// are validated by package virtq when the driver sets DRIVER_OK; a bad geometry sets
// DEVICE_NEEDS_RESET instead of activating the device.
//
// # Device status state machine (§2.1, §3.1.1)
//
// The driver adds one bit at a time; only these moves are accepted:
//
//	from                              write adds    effect
//	0                                 ACKNOWLEDGE
//	ACKNOWLEDGE                       DRIVER        DriverFeatures becomes writable
//	ACKNOWLEDGE|DRIVER                FEATURES_OK   accepted only if the driver's features are a
//	                                                subset of the offer and include VERSION_1;
//	                                                otherwise the bit stays clear (§3.1.1 step 6)
//	ACKNOWLEDGE|DRIVER|FEATURES_OK    DRIVER_OK     queues are built and the device activated;
//	                                                on error DEVICE_NEEDS_RESET is set instead
//	any                               FAILED        the driver gave up; only a reset leaves it
//	any                               (write 0)     reset: Device.Reset, all registers cleared
//
// DEVICE_NEEDS_RESET is set only by the device side (virtio.Interrupt.NeedsReset) and is
// cleared only by a reset.
//
// # Concurrency
//
// Read and Write come from vCPU threads, possibly several at once, and are serialised by a
// mutex. Notify comes from an ioeventfd goroutine and takes no lock, so a kick can reach
// Device.Notify while another vCPU is resetting the device: devices must accept a kick
// at any time (and ignore it when inactive). The device's
// goroutines raise interrupts through the virtio.Interrupt given to Activate; that path
// is lock-free (atomics), so a reset that waits for device goroutines cannot deadlock
// against a device that is signalling at the same moment.
package mmio
