package guest

import (
	"testing"

	"golang.org/x/sys/unix"
)

// fn must never run on the main thread, which cannot be retired (the scheduler puts a
// goroutine there now and then, so try many times).
func TestDisposableThreadIsNeverTheMainThread(t *testing.T) {
	pid := unix.Getpid()
	for range 500 {
		tid := make(chan int)
		onDisposableThread(func() { tid <- unix.Gettid() })
		if got := <-tid; got == pid {
			t.Fatal("fn ran on the main thread")
		}
	}
}
