package vmm

import "testing"

func TestWithKernelWords(t *testing.T) {
	dev := []string{"virtio_mmio.device=4K@0xc0001000:5"}
	for in, want := range map[string]string{
		"":                                "virtio_mmio.device=4K@0xc0001000:5",
		"console=ttyS0 quiet":             "console=ttyS0 quiet virtio_mmio.device=4K@0xc0001000:5",
		"console=ttyS0 -- --vsock-port=9": "console=ttyS0 virtio_mmio.device=4K@0xc0001000:5 -- --vsock-port=9",
		"a -- b -- c":                     "a virtio_mmio.device=4K@0xc0001000:5 -- b -- c",
		"-- x":                            "virtio_mmio.device=4K@0xc0001000:5 -- x",
	} {
		if got := withKernelWords(in, dev); got != want {
			t.Errorf("withKernelWords(%q) = %q, want %q", in, got, want)
		}
	}
}
