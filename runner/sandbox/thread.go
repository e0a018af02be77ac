package sandbox

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// onDisposableThread runs fn on an OS thread that fn may taint (a private mount namespace
// and root) and that Go retires afterwards: fn runs locked to its thread, and the thread
// exits with fn's goroutine.
//
// The main thread cannot be retired: Go parks it forever instead, which would keep fn's
// namespace (and its mounts and loop device) alive, and /proc/self, which names the main
// thread, would show the sandbox. So when the locked goroutine finds itself on the main
// thread, it keeps that thread busy and hands fn to another goroutine, which the scheduler
// then has to place on another thread.
func onDisposableThread(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			fn()
			return // still locked: the thread exits with this goroutine
		}
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			defer close(done)
			fn()
		}()
		<-done
		runtime.UnlockOSThread() // the main thread was never touched
	}()
}
