// Package e2e holds the slow end-to-end tier: the spec's scenarios through a real VM boot
// (our kernel, our VMM, our init), driven through the built `runner` binary exactly as a
// user runs it. The tests are behind the build tag `slow`:
//
//	go test -tags slow ./e2e/            # every scenario (tens of minutes on emulated KVM)
//	RUNNER_E2E_SUBSET=ci go test -tags slow ./e2e/   # the subset CI runs on every change
//
// Under the emulated KVM of the development machines a guest kernel takes ~30 s to reach
// its init and busybox shell pipelines crash now and then (a host defect), so the VM tier
// uses pipeline-free equivalents of the spec's commands and a smaller "large output"; the
// spec's exact commands run through the sandbox backend in the default tier
// (runner/sandbox tests).
package e2e
