// Package osthread runs code on an OS thread of its own that the Go runtime throws away
// afterwards, for changes Linux makes per thread and that must not leak to the rest of the
// program: dropped capabilities, a seccomp filter, a private mount namespace or root.
package osthread

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// RunDisposable runs fn on an OS thread that fn may taint and that Go retires afterwards:
// fn runs locked to its thread, and the thread exits with fn's goroutine. RunDisposable
// returns at once; fn reports back through whatever it closes over.
//
// The main thread cannot be retired (Go parks it forever instead, which would keep what fn
// did alive) and /proc/self names it, so it must stay untouched: when the locked goroutine
// finds itself on the main thread, it keeps that thread busy and hands fn to another
// goroutine, which the scheduler then has to place on another thread.
func RunDisposable(fn func()) {
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
