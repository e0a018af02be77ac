// Package boottimer is the boot-timer pseudo device: a guest write of the magic byte 123 to
// its MMIO address (0xc0000000) records the time since the VM started. It is the same
// measurement Firecracker makes (its guest init writes the byte through /dev/mem as the
// first thing user space does), so boot times compare across VMMs.
package boottimer
