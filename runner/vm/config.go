package vm

import (
	"time"
)

// Names inside the per-run directory (and so inside the child's root after pivot_root).
const (
	// RootfsName is the per-run copy of the root filesystem image.
	RootfsName = "rootfs.img"
	// kernelName is where the kernel is bind-mounted read-only.
	kernelName = "vmlinux"
	// VsockName is the hybrid-vsock Unix socket; guest connections to host port P arrive
	// at VsockName + "_" + P.
	VsockName = "vsock.sock"
)

// GuestCID is the guest's vsock context ID (Firecracker's default).
const GuestCID = 3

// ChildConfig is what the parent sends the VMM child on fd 3 (JSON).
type ChildConfig struct {
	RunDir      string `json:"run_dir"`      // host path of the per-run directory
	Kernel      string `json:"kernel"`       // host path of the kernel image
	KVMDevice   string `json:"kvm_device"`   // host path of the KVM device ("" = /dev/kvm)
	ReadOnly    bool   `json:"read_only"`    // the rootfs is read-only (squashfs)
	Cmdline     string `json:"cmdline"`      // complete except virtio_mmio.device words
	VCPUs       int    `json:"vcpus"`        //
	MemoryMiB   int    `json:"memory_mib"`   //
	CPUTemplate string `json:"cpu_template"` // "", "host" or "baseline"
	Serial      string `json:"serial"`       // virtio-blk serial: the run ID
	Jail        bool   `json:"jail"`         // confine the child (always, except for debugging)
	LogLevel    string `json:"log_level"`    // slog level for the child's own log (stderr)
	// SelfTest makes the child do something it must not, after confinement, to prove the
	// confinement in tests: "forbidden-syscall" calls execve.
	SelfTest string `json:"self_test,omitempty"`
}

// Event is one message from the child on fd 4 (JSON lines).
type Event struct {
	// Kind is "started" (the VM is built and confined; vCPUs are about to run) or "exit".
	Kind string `json:"kind"`
	// Started: time from the child's start to the VM being ready to run.
	SetupTime time.Duration `json:"setup_ns,omitempty"`
	// Exit fields.
	Reason    string        `json:"reason,omitempty"`       // how the VM ended (vmm.ExitReason)
	Error     string        `json:"error,omitempty"`        // VMM error, if any
	BootTime  time.Duration `json:"boot_ns,omitempty"`      // boot-timer stamp: VM start → guest init
	BootTimed bool          `json:"boot_timed,omitempty"`   // BootTime is valid
	FirstRun  time.Duration `json:"first_run_ns,omitempty"` // child start → first KVM_RUN
	MaxRSSKiB int64         `json:"max_rss_kib,omitempty"`  // VMM process peak RSS
	// GuestResidentKiB is how much guest RAM was backed by host memory at the end: the
	// part of MaxRSSKiB that is the guest's, not the VMM's.
	GuestResidentKiB int64 `json:"guest_resident_kib,omitempty"`
	GuestMiB         int   `json:"guest_mib,omitempty"`
}
