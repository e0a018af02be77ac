package x86

import (
	"errors"
	"os"
	"testing"

	"github.com/vmbench/runner/kernel"
	"github.com/vmbench/runner/vmm/kvm"
)

// supportedCPUID returns the host's KVM_GET_SUPPORTED_CPUID.
func supportedCPUID(t *testing.T) []kvm.CPUIDEntry2 {
	t.Helper()
	if _, err := os.Stat(kvm.DefaultPath); errors.Is(err, os.ErrNotExist) {
		t.Skip("/dev/kvm absent")
	}
	s, err := kvm.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func find(t *testing.T, entries []kvm.CPUIDEntry2, fn, idx uint32) kvm.CPUIDEntry2 {
	t.Helper()
	for _, e := range entries {
		if e.Function == fn && e.Index == idx {
			return e
		}
	}
	t.Fatalf("no CPUID leaf %#x.%d", fn, idx)
	return kvm.CPUIDEntry2{}
}

func TestCPUIDBaseline(t *testing.T) {
	sup := supportedCPUID(t)
	got, err := CPUID(sup, 2, CPUIDOptions{Template: TemplateBaseline, VCPUs: 4})
	if err != nil {
		t.Fatal(err)
	}
	l0 := find(t, got, 0, 0)
	if [3]uint32{l0.EBX, l0.EDX, l0.ECX} != vendorIntel || l0.EAX != 0xb {
		t.Errorf("leaf 0: %+v", l0)
	}
	l1 := find(t, got, 1, 0)
	for name, bit := range map[string]uint32{"CX16": 13, "XSAVE": 26, "OSXSAVE": 27, "AVX": 28, "F16C": 29, "FMA": 12, "MOVBE": 22, "PCID": 17} {
		if l1.ECX&(1<<bit) != 0 {
			t.Errorf("baseline leaf 1 ECX has %s", name)
		}
	}
	if l1.ECX&leaf1ECXHypervisor == 0 || l1.EAX != baselineSignature {
		t.Errorf("leaf 1: %+v", l1)
	}
	if l1.EBX>>24 != 2 || l1.EBX>>16&0xff != 4 || l1.EDX&leaf1EDXHTT == 0 {
		t.Errorf("leaf 1 topology EBX %#x EDX %#x", l1.EBX, l1.EDX)
	}
	l7 := find(t, got, 7, 0)
	for name, bit := range map[string]uint32{"AVX2": 5, "BMI1": 3, "BMI2": 8, "AVX512F": 16, "SHA": 29, "ADX": 19} {
		if l7.EBX&(1<<bit) != 0 {
			t.Errorf("baseline leaf 7 EBX has %s", name)
		}
	}
	if l7.ECX != 0 || l7.EAX != 0 {
		t.Errorf("baseline leaf 7 ECX %#x (PKU is bit 3) EAX %#x", l7.ECX, l7.EAX)
	}
	for _, e := range got {
		if e.Function == 0xd || (e.Function > 0xb && e.Function < 0x4000_0000) || e.Function > baselineMaxExt {
			t.Errorf("baseline keeps leaf %#x", e.Function)
		}
	}
	if e := find(t, got, 0x8000_0001, 0); e.EDX&(1<<29) == 0 || e.ECX&(1<<5) != 0 {
		t.Errorf("0x80000001: LM missing or LZCNT present: %+v", e)
	}
	b := find(t, got, 0x8000_0002, 0)
	if string([]byte{byte(b.EAX), byte(b.EAX >> 8), byte(b.EAX >> 16), byte(b.EAX >> 24)}) != "vmbe" {
		t.Errorf("brand string %+v", b)
	}
	// Hypervisor leaves are KVM's, untouched (no PVM quirks requested).
	for _, fn := range []uint32{0x4000_0000, 0x4000_0001} {
		if find(t, got, fn, 0) != find(t, sup, fn, 0) {
			t.Errorf("leaf %#x changed", fn)
		}
	}
	// Topology leaf 0xb: 4 cores of one thread, x2APIC ID 2.
	if s0, s1 := find(t, got, 0xb, 0), find(t, got, 0xb, 1); s0.EBX != 1 || s0.EDX != 2 || s1.EBX != 4 || s1.EAX != 2 || s1.ECX>>8&0xff != 2 {
		t.Errorf("leaf 0xb: %+v %+v", s0, s1)
	}
}

func TestCPUIDHostAndPVMQuirks(t *testing.T) {
	sup := supportedCPUID(t)
	host, err := CPUID(sup, 0, CPUIDOptions{Template: TemplateHost, VCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	h0, s0 := find(t, host, 0, 0), find(t, sup, 0, 0)
	if h0 != s0 {
		t.Errorf("host template changed the vendor leaf: %+v", h0)
	}
	if l1 := find(t, host, 1, 0); l1.EDX&leaf1EDXHTT != 0 || l1.EBX>>24 != 0 {
		t.Errorf("1 vCPU: HTT or APIC ID set: %+v", l1)
	}
	if f := find(t, sup, leafKVMFeatures, 0); find(t, host, leafKVMFeatures, 0) != f {
		t.Error("host template changed the KVM feature leaf without PVM")
	}
	pvm, err := CPUID(sup, 1, CPUIDOptions{Template: TemplateHost, VCPUs: 2, PVM: true, TSCDeadline: true})
	if err != nil {
		t.Fatal(err)
	}
	l1 := find(t, pvm, 1, 0)
	if l1.ECX&leaf1ECXCX16 != 0 || l1.ECX&leaf1ECXTSCDeadline == 0 {
		t.Errorf("PVM leaf 1 ECX %#x", l1.ECX)
	}
	f := find(t, pvm, leafKVMFeatures, 0)
	if f.EAX&(kvmFeaturePVSendIPI|kvmFeaturePVUnhalt|kvmFeaturePVSchedYield) != 0 {
		t.Errorf("PVM kept hypercall features: %#x", f.EAX)
	}
	if want := find(t, sup, leafKVMFeatures, 0).EAX &^ (kvmFeaturePVSendIPI | kvmFeaturePVUnhalt | kvmFeaturePVSchedYield); f.EAX != want {
		t.Errorf("PVM changed other KVM features: %#x, want %#x", f.EAX, want)
	}
}

func TestCPUIDErrors(t *testing.T) {
	sup := []kvm.CPUIDEntry2{{Function: 0, EAX: 1}, {Function: 1}}
	for _, o := range []CPUIDOptions{
		{Template: "fancy", VCPUs: 1},
		{Template: TemplateHost, VCPUs: 0},
		{Template: TemplateHost, VCPUs: 256},
	} {
		if _, err := CPUID(sup, 0, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := CPUID(nil, 0, CPUIDOptions{Template: TemplateHost, VCPUs: 1}); err == nil {
		t.Error("empty table accepted")
	}
	if _, err := ParseCPUTemplate("baseline"); err != nil {
		t.Error(err)
	}
	if _, err := ParseCPUTemplate("Host"); err == nil {
		t.Error("case-insensitive template name accepted")
	}
}

// TestLoadRealVmlinux loads the project's guest kernel (built by kernel/build.sh).
func TestLoadRealVmlinux(t *testing.T) {
	k, err := kernel.Locate("")
	if errors.Is(err, kernel.ErrNotFound) {
		t.Skip("guest kernel not built (make kernel)")
	}
	if err != nil {
		t.Fatal(err)
	}
	m := newMem(t, 128<<20)
	info, err := LoadLinux(m, BootConfig{Kernel: k.Path, Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Kernel.Format != FormatELF || info.Kernel.Entry != 0x100_0000 || info.Kernel.End <= info.Kernel.Entry || info.Kernel.End > 64<<20 {
		t.Errorf("vmlinux: %+v", info.Kernel)
	}
}
