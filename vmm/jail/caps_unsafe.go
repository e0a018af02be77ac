package jail

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// capsetZeroAllThreads sets the effective, permitted and inheritable sets of every thread
// to empty (capset(2) with version 3 headers: two 32-bit data words per set).
func capsetZeroAllThreads() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
}
