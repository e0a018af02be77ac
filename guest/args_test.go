package guest

import (
	"slices"
	"testing"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		want    Args
		ignored []string
	}{
		{nil, Args{Mode: ModeVM, VsockPort: DefaultVsockPort}, nil},
		{[]string{"--vsock-port=5000"}, Args{Mode: ModeVM, VsockPort: 5000}, nil},
		{[]string{"--fd=3"}, Args{Mode: ModeSandbox, VsockPort: DefaultVsockPort, FD: 3}, nil},
		// The kernel passes unknown command-line words through to init.
		{[]string{"quiet", "--vsock-port=7", "console=ttyS0", "--bogus"},
			Args{Mode: ModeVM, VsockPort: 7}, []string{"quiet", "console=ttyS0", "--bogus"}},
		{[]string{"--vsock-port=x", "--fd=1", "--fd=-3"},
			Args{Mode: ModeVM, VsockPort: DefaultVsockPort}, []string{"--vsock-port=x", "--fd=1", "--fd=-3"}},
		{[]string{"--vsock-port=99999999999"}, Args{Mode: ModeVM, VsockPort: DefaultVsockPort}, []string{"--vsock-port=99999999999"}},
	}
	for _, tt := range tests {
		got, ignored := ParseArgs(tt.args)
		if got != tt.want || !slices.Equal(ignored, tt.ignored) {
			t.Errorf("ParseArgs(%q) = %+v, %q; want %+v, %q", tt.args, got, ignored, tt.want, tt.ignored)
		}
	}
}
