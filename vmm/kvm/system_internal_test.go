package kvm

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenErrorMessages(t *testing.T) {
	err := openError("/dev/kvm", unix.EACCES)
	if !errors.Is(err, ErrPermission) || !errors.Is(err, unix.EACCES) ||
		!strings.Contains(err.Error(), "/dev/kvm: ") || !strings.Contains(err.Error(), "add the user to group kvm") {
		t.Errorf("EACCES: %v", err)
	}
	if err := openError("/dev/kvm", unix.ENOENT); !errors.Is(err, ErrNoDevice) {
		t.Errorf("ENOENT: %v", err)
	}
	if err := openError("/dev/kvm", unix.EIO); errors.Is(err, ErrNoDevice) || !errors.Is(err, unix.EIO) {
		t.Errorf("EIO: %v", err)
	}
}
