package boottimer

import (
	"testing"
	"time"
)

func TestBootTimer(t *testing.T) {
	d := New()
	d.Write(0, []byte{Magic}) // before Start: ignored
	if _, ok := d.BootTime(); ok {
		t.Fatal("stamped before start")
	}
	start := time.Now().Add(-time.Second)
	d.Start(start)
	d.Write(0, []byte{122})            // wrong value
	d.Write(1, []byte{Magic})          // wrong offset
	d.Write(0, []byte{Magic, 0, 0, 0}) // wrong width
	if _, ok := d.BootTime(); ok {
		t.Fatal("stamped by a non-magic write")
	}
	d.Write(0, []byte{Magic})
	got, ok := d.BootTime()
	if !ok || got < time.Second {
		t.Fatalf("boot time %v %v", got, ok)
	}
	d.Write(0, []byte{Magic}) // later writes keep the first stamp
	if again, _ := d.BootTime(); again != got {
		t.Fatalf("stamp changed: %v -> %v", got, again)
	}
	b := []byte{1, 2}
	d.Read(0, b)
	if b[0] != 0 || b[1] != 0 {
		t.Fatal("read not zero")
	}
}
