// Package runner runs one benchmark: it resolves the OCI image (package oci), builds or
// reuses its root filesystem with the init installed (package rootfs), makes the run's own
// copy, boots it on a Backend — a KVM microVM, or the namespace sandbox (SandboxBackend) —
// and holds the protocol session (runner/session) that streams the command's output and
// brings back its exit status and output files. Everything created for the run is removed
// when Run returns.
package runner
