package osthread

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fn must never run on the main thread, which cannot be retired (the scheduler puts a
// goroutine there now and then, so try many times).
func TestDisposableThreadIsNeverTheMainThread(t *testing.T) {
	pid := unix.Getpid()
	for range 500 {
		tid := make(chan int)
		RunDisposable(func() { tid <- unix.Gettid() })
		if got := <-tid; got == pid {
			t.Fatal("fn ran on the main thread")
		}
	}
}

// The thread fn ran on is gone afterwards, taking whatever fn changed with it.
func TestDisposableThreadExits(t *testing.T) {
	tid := make(chan int)
	RunDisposable(func() { tid <- unix.Gettid() })
	id := <-tid
	for range 200 {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", id)); os.IsNotExist(err) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("thread %d still exists", id)
}
