package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Format is a root filesystem image type.
type Format string

// Image formats the sandbox mounts.
const (
	FormatExt4     Format = "ext4"
	FormatSquashfs Format = "squashfs"
)

// DetectFormat reads the image's superblock magic: squashfs "hsqs" at offset 0, ext2/3/4
// 0xEF53 at offset 1080.
func DetectFormat(image string) (Format, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", fmt.Errorf("sandbox: image: %w", err)
	}
	defer f.Close()
	var sb [1082]byte
	n, err := io.ReadFull(f, sb[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("sandbox: image %s: %w", image, err)
	}
	switch {
	case n >= 4 && bytes.Equal(sb[:4], []byte("hsqs")):
		return FormatSquashfs, nil
	case n >= 1082 && sb[1080] == 0x53 && sb[1081] == 0xEF:
		return FormatExt4, nil
	}
	return "", fmt.Errorf("sandbox: image %s: neither ext4 nor squashfs", image)
}

// loopAttempts bounds retries when another process takes the free loop device between
// LOOP_CTL_GET_FREE and LOOP_CONFIGURE.
const loopAttempts = 16

// attachLoop binds image to a free loop device with LO_FLAGS_AUTOCLEAR, so that the
// device detaches itself once it is unmounted and its last descriptor is closed. It returns
// the open device.
func attachLoop(image string, readOnly bool) (*os.File, error) {
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	backing, err := os.OpenFile(image, mode, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: loop: %w", err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: loop: %w", err)
	}
	defer ctl.Close()

	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	if readOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
	var lastErr error
	for range loopAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("sandbox: loop: get free device: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), mode, 0)
		if err != nil {
			return nil, fmt.Errorf("sandbox: loop: %w", err)
		}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		lastErr = err
		if err != unix.EBUSY {
			break
		}
	}
	return nil, fmt.Errorf("sandbox: loop: attach %s: %w", image, lastErr)
}
