package guest

import (
	"encoding/binary"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/protocol"
)

// seccompData builds struct seccomp_data for the x/net/bpf VM, which loads 32-bit words
// big-endian: each word is stored big-endian at the offset the kernel would use.
func seccompData(nr int, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], uint32(nr))
	binary.BigEndian.PutUint32(b[4:], 0xc000003e) // AUDIT_ARCH_X86_64
	for i, a := range args {
		off := 16 + 8*i
		binary.BigEndian.PutUint32(b[off:], uint32(a))       // low word first (little-endian layout)
		binary.BigEndian.PutUint32(b[off+4:], uint32(a>>32)) // then the high word
	}
	return b
}

func TestWorkloadPolicyDecisions(t *testing.T) {
	info, err := arch.GetInfo("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	nr := func(name string) int {
		for n, s := range info.SyscallNumbers {
			if s == name {
				return n
			}
		}
		t.Fatalf("no syscall %s", name)
		return -1
	}
	const allow, eperm = unix.SECCOMP_RET_ALLOW, unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	tests := []struct {
		name      string
		allowPerf bool
		syscall   string
		args      []uint64
		want      uint32
	}{
		{"read is allowed", false, "read", nil, allow},
		{"reboot", false, "reboot", []uint64{0xfee1dead, 0x28121969, 0x01234567}, eperm},
		{"mount", false, "mount", nil, eperm},
		{"umount2", false, "umount2", nil, eperm},
		{"pivot_root", false, "pivot_root", nil, eperm},
		{"kexec_load", false, "kexec_load", nil, eperm},
		{"finit_module", false, "finit_module", nil, eperm},
		{"swapon", false, "swapon", nil, eperm},
		{"acct", false, "acct", nil, eperm},
		{"settimeofday", false, "settimeofday", nil, eperm},
		{"clock_settime", false, "clock_settime", nil, eperm},
		{"bpf", false, "bpf", nil, eperm},
		{"keyctl", false, "keyctl", nil, eperm},
		{"perf_event_open denied", false, "perf_event_open", nil, eperm},
		{"perf_event_open allowed on request", true, "perf_event_open", nil, allow},
		{"kill(1, SIGTERM)", false, "kill", []uint64{1, uint64(unix.SIGTERM)}, eperm},
		{"kill(1, 0) probes", false, "kill", []uint64{1, 0}, allow},
		{"kill(2, SIGTERM)", false, "kill", []uint64{2, uint64(unix.SIGTERM)}, allow},
		{"kill(-1, SIGKILL) spares init anyway", false, "kill", []uint64{^uint64(0), 9}, allow},
		{"kill(1 in the high word only)", false, "kill", []uint64{1 << 32, 15}, allow},
		{"tkill(1)", false, "tkill", []uint64{1, 15}, eperm},
		{"tgkill(1, ...)", false, "tgkill", []uint64{1, 1, 15}, eperm},
		{"tgkill(own)", false, "tgkill", []uint64{77, 78, 15}, allow},
		{"rt_sigqueueinfo(1)", false, "rt_sigqueueinfo", []uint64{1, 15}, eperm},
		{"pidfd_open(1)", false, "pidfd_open", []uint64{1, 0}, eperm},
		{"pidfd_open(child)", false, "pidfd_open", []uint64{5, 0}, allow},
		{"pidfd_send_signal", false, "pidfd_send_signal", nil, eperm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := WorkloadPolicy(tt.allowPerf)
			prog, err := policy.Assemble()
			if err != nil {
				t.Fatal(err)
			}
			vm, err := bpf.NewVM(prog)
			if err != nil {
				t.Fatal(err)
			}
			got, err := vm.Run(seccompData(nr(tt.syscall), tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			if uint32(got) != tt.want {
				t.Errorf("%s: action %#x, want %#x", tt.syscall, uint32(got), tt.want)
			}
		})
	}
}

// The filter must load in the real kernel (a policy the library accepts but the kernel
// rejects would only show at run time).
func TestWorkloadPolicyAssembles(t *testing.T) {
	for _, perf := range []bool{false, true} {
		p := WorkloadPolicy(perf)
		if _, err := p.Assemble(); err != nil {
			t.Fatal(err)
		}
	}
	if !seccomp.Supported() {
		t.Fatal("seccomp is not supported by this kernel")
	}
}

// A workload started by Run, as root and as another user: no capability in any set,
// no_new_privs, seccomp in filter mode, the filter's answers, stdin at EOF, its own
// session, HOME from passwd.
func TestHardenedWorkload(t *testing.T) {
	helper := helperCopy(t)
	root := testRoot(t)
	for _, tt := range []struct {
		user, uid, gid, groups, home string
	}{
		{"", "0", "0", "[0 10]", "/root"},
		{"app", "1000", "1000", "[10 44 100]", "/home/app"},
		{"4242:4343", "4242", "4343", "[]", "/"},
	} {
		t.Run("user="+tt.user, func(t *testing.T) {
			c := runConfig(t, protocol.RunConfig{
				Argv:    []string{helper, "-test.run=^$"},
				Env:     []string{"GUEST_TEST_HELPER=probe"},
				WorkDir: "/",
				User:    tt.user,
			}, root, nil)
			if c.err != nil || c.exit.Code != 0 || c.exit.Failure != protocol.FailureNone {
				t.Fatalf("err %v, exit %+v, stderr %q", c.err, c.exit, c.stderr)
			}
			v := probeValues(t, c.stdout)
			want := map[string]string{
				"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
				"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
				"NoNewPrivs": "1", "Seccomp": "2",
				"uid": tt.uid, "gid": tt.gid, "groups": tt.groups, "home": tt.home,
				"own_session": "true", "stdin": "0,EOF", "cwd": "/",
				"keyctl": "operation not permitted", "mount": "operation not permitted",
				"tgkill_init":     "operation not permitted",
				"pidfd_open_init": "operation not permitted",
			}
			if tt.uid == "0" {
				// kill(1, 0) passes the filter; as another user the kernel's own permission
				// check refuses it.
				want["kill_init_probe"] = "ok"
			}
			for k, w := range want {
				if v[k] != w {
					t.Errorf("%s = %q, want %q", k, v[k], w)
				}
			}
		})
	}
}

// Hardening one thread must leave the init's own privileges alone.
func TestHardeningLeavesInitPrivileged(t *testing.T) {
	helper := helperCopy(t)
	c := runConfig(t, protocol.RunConfig{Argv: []string{helper, "-test.run=^$"}, Env: []string{"GUEST_TEST_HELPER=probe"}}, testRoot(t), nil)
	if c.err != nil {
		t.Fatal(c.err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	if data[0].Effective&(1<<unix.CAP_SYS_ADMIN) == 0 {
		t.Fatal("this thread lost CAP_SYS_ADMIN")
	}
	if v, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); v != 0 {
		t.Fatal("no_new_privs leaked to this thread")
	}
}
