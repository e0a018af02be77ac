package x86

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/vmbench/runner/vmm/kvm"
)

// CPUTemplate selects what CPU the guest sees.
type CPUTemplate string

const (
	// TemplateHost passes KVM_GET_SUPPORTED_CPUID through (with topology and the hypervisor
	// bit set): the guest sees the host CPU. Default on hardware KVM.
	TemplateHost CPUTemplate = "host"
	// TemplateBaseline is an x86-64-v2-like Intel CPU: SSE up to 4.2 and POPCNT, no AVX*,
	// no XSAVE family, no CMPXCHG16B, no PKU, a fixed family/model and brand string.
	// Benchmarks see the same CPU on every host. Default on kvm_pvm.
	TemplateBaseline CPUTemplate = "baseline"
)

// ParseCPUTemplate accepts "host" or "baseline".
func ParseCPUTemplate(s string) (CPUTemplate, error) {
	switch t := CPUTemplate(s); t {
	case TemplateHost, TemplateBaseline:
		return t, nil
	}
	return "", fmt.Errorf("CPU template %q: want %q or %q", s, TemplateHost, TemplateBaseline)
}

// CPUIDOptions parameterise CPUID.
type CPUIDOptions struct {
	Template CPUTemplate
	VCPUs    int
	// PVM applies what kvm_pvm needs whatever the template: no CMPXCHG16B (its instruction
	// emulator lacks it) and no hypercall-based KVM PV features (PV_UNHALT, PV_SEND_IPI,
	// PV_SCHED_YIELD: a guest VMCALL spins forever inside kvm_pvm). The rest of the KVM
	// leaves stays as KVM reports it (kvm-clock is the guest's only working clock there).
	PVM bool
	// TSCDeadline advertises the TSC-deadline timer (KVM emulates it in the in-kernel
	// LAPIC; KVM_CAP_TSC_DEADLINE_TIMER).
	TSCDeadline bool
}

// CPUID bits (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E).
const (
	leaf1ECXCX16        = 1 << 13
	leaf1ECXTSCDeadline = 1 << 24
	leaf1ECXHypervisor  = 1 << 31
	leaf1EDXHTT         = 1 << 28

	kvmFeaturePVUnhalt     = 1 << 7  // KVM_FEATURE_PV_UNHALT
	kvmFeaturePVSendIPI    = 1 << 11 // KVM_FEATURE_PV_SEND_IPI
	kvmFeaturePVSchedYield = 1 << 13 // KVM_FEATURE_PV_SCHED_YIELD

	leafKVMFeatures = 0x4000_0001
	leafExtMax      = 0x8000_0000
)

func bitmask(bits ...uint) uint32 {
	var m uint32
	for _, b := range bits {
		m |= 1 << b
	}
	return m
}

// Baseline feature masks: a bit survives only if KVM supports it and it is listed here.
var (
	// leaf 1 ECX: SSE3, SSSE3, SSE4.1, SSE4.2, x2APIC, POPCNT, TSC-deadline, RDRAND (boot-time
	// entropy), hypervisor.
	baseline1ECX = bitmask(0, 9, 19, 20, 21, 23, 24, 30, 31)
	// leaf 1 EDX: FPU VME DE PSE TSC MSR PAE MCE CX8 APIC, SEP MTRR PGE MCA CMOV PAT PSE36,
	// CLFSH, MMX FXSR SSE SSE2.
	baseline1EDX = bitmask(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 23, 24, 25, 26)
	// leaf 7 EBX: FSGSBASE, SMEP, ERMS, SMAP, CLFLUSHOPT.
	baseline7EBX = bitmask(0, 7, 9, 20, 23)
	// leaf 7 EDX: speculation-control enumeration only (MD_CLEAR, SPEC_CTRL, STIBP,
	// FLUSH_L1D, ARCH_CAPABILITIES, SSBD).
	baseline7EDX = bitmask(10, 26, 27, 28, 29, 31)
	// 0x80000001 ECX: LAHF/SAHF, PREFETCHW.
	baselineExt1ECX = bitmask(0, 8)
	// 0x80000001 EDX: SYSCALL, NX, 1 GiB pages, RDTSCP, long mode.
	baselineExt1EDX = bitmask(11, 20, 26, 27, 29)
)

const (
	baselineSignature = 0x0000_0f61 // family 15, model 6, stepping 1 (qemu's kvm64)
	baselineMaxLeaf   = 0xb
	baselineMaxExt    = 0x8000_0008
	baselineBrand     = "vmbench baseline x86-64-v2"
)

// Vendor strings as CPUID.0 EBX, EDX, ECX.
var (
	vendorIntel = [3]uint32{0x756e_6547, 0x4965_6e69, 0x6c65_746e} // "Genu" "ineI" "ntel"
	vendorAMD   = [3]uint32{0x6874_7541, 0x6974_6e65, 0x444d_4163} // "Auth" "enti" "cAMD"
)

// table is a CPUID table under edit.
type table struct{ e []kvm.CPUIDEntry2 }

func (t *table) get(fn, idx uint32) *kvm.CPUIDEntry2 {
	for i := range t.e {
		if t.e[i].Function == fn && (t.e[i].Index == idx || t.e[i].Flags&kvm.CPUIDFlagSignificantIndex == 0) {
			return &t.e[i]
		}
	}
	return nil
}

// ensure returns the entry for fn/idx, adding a zero one if absent.
func (t *table) ensure(fn, idx uint32, significant bool) *kvm.CPUIDEntry2 {
	if e := t.get(fn, idx); e != nil {
		return e
	}
	e := kvm.CPUIDEntry2{Function: fn, Index: idx}
	if significant {
		e.Flags = kvm.CPUIDFlagSignificantIndex
	}
	t.e = append(t.e, e)
	return &t.e[len(t.e)-1]
}

func (t *table) keep(f func(e *kvm.CPUIDEntry2) bool) {
	t.e = slices.DeleteFunc(t.e, func(e kvm.CPUIDEntry2) bool { return !f(&e) })
}

func (t *table) isAMD() bool {
	l0 := t.get(0, 0)
	return l0 != nil && [3]uint32{l0.EBX, l0.EDX, l0.ECX} == vendorAMD
}

// CPUID returns the CPUID table for vCPU id (its APIC ID), derived from KVM's supported
// table according to the options.
func CPUID(supported []kvm.CPUIDEntry2, id int, o CPUIDOptions) ([]kvm.CPUIDEntry2, error) {
	if o.VCPUs < 1 || id < 0 || id >= o.VCPUs || o.VCPUs > 255 {
		return nil, fmt.Errorf("cpuid: vCPU %d of %d", id, o.VCPUs)
	}
	t := &table{e: slices.Clone(supported)}
	if t.get(0, 0) == nil || t.get(1, 0) == nil {
		return nil, fmt.Errorf("cpuid: KVM reports no leaf 0 or 1")
	}
	switch o.Template {
	case TemplateHost:
	case TemplateBaseline:
		applyBaseline(t)
	default:
		return nil, fmt.Errorf("cpuid: unknown template %q", o.Template)
	}
	l1 := t.get(1, 0)
	l1.ECX |= leaf1ECXHypervisor
	if o.TSCDeadline {
		l1.ECX |= leaf1ECXTSCDeadline
	}
	if o.PVM {
		l1.ECX &^= leaf1ECXCX16
		if f := t.get(leafKVMFeatures, 0); f != nil {
			f.EAX &^= kvmFeaturePVUnhalt | kvmFeaturePVSendIPI | kvmFeaturePVSchedYield
		}
	}
	setTopology(t, uint32(id), uint32(o.VCPUs))
	slices.SortFunc(t.e, func(a, b kvm.CPUIDEntry2) int {
		if a.Function != b.Function {
			return int(int64(a.Function) - int64(b.Function))
		}
		return int(int64(a.Index) - int64(b.Index))
	})
	return t.e, nil
}

// applyBaseline turns the host table into the baseline CPU.
func applyBaseline(t *table) {
	t.keep(func(e *kvm.CPUIDEntry2) bool {
		switch {
		case e.Function >= 0x4000_0000 && e.Function < leafExtMax:
			return true // hypervisor leaves: untouched
		case e.Function == 7:
			return e.Index == 0
		case e.Function < leafExtMax:
			return e.Function == 0 || e.Function == 1 || e.Function == 4
		}
		return e.Function <= baselineMaxExt
	})
	l0 := t.get(0, 0)
	l0.EAX = baselineMaxLeaf
	l0.EBX, l0.EDX, l0.ECX = vendorIntel[0], vendorIntel[1], vendorIntel[2]

	l1 := t.get(1, 0)
	l1.EAX = baselineSignature
	l1.EBX &= 0xff00 // keep the CLFLUSH line size; topology is set later
	l1.ECX &= baseline1ECX
	l1.EDX &= baseline1EDX

	l7 := t.ensure(7, 0, true)
	l7.EAX = 0 // no subleaf 1 (AVX-VNNI, AVX512-BF16 …)
	l7.EBX &= baseline7EBX
	l7.ECX = 0 // PKU, OSPKE, AVX512*, VAES, GFNI, LA57 …
	l7.EDX &= baseline7EDX

	ext := t.ensure(leafExtMax, 0, false)
	ext.EAX, ext.EBX, ext.ECX, ext.EDX = baselineMaxExt, 0, 0, 0
	e1 := t.ensure(0x8000_0001, 0, false)
	e1.EAX, e1.EBX = 0, 0
	e1.ECX &= baselineExt1ECX
	e1.EDX &= baselineExt1EDX
	var brand [48]byte
	copy(brand[:], baselineBrand)
	for i := range 3 {
		b := t.ensure(0x8000_0002+uint32(i), 0, false)
		w := brand[16*i:]
		b.EAX, b.EBX = binary.LittleEndian.Uint32(w), binary.LittleEndian.Uint32(w[4:])
		b.ECX, b.EDX = binary.LittleEndian.Uint32(w[8:]), binary.LittleEndian.Uint32(w[12:])
	}
	e5 := t.ensure(0x8000_0005, 0, false) // reserved on Intel
	e5.EAX, e5.EBX, e5.ECX, e5.EDX = 0, 0, 0, 0
	e6 := t.ensure(0x8000_0006, 0, false) // L2 cache in ECX only
	e6.EAX, e6.EBX, e6.EDX = 0, 0, 0
	e7 := t.ensure(0x8000_0007, 0, false) // invariant TSC only
	e7.EAX, e7.EBX, e7.ECX = 0, 0, 0
	e7.EDX &= 1 << 8
	e8 := t.ensure(0x8000_0008, 0, false) // address sizes only
	e8.EBX, e8.ECX, e8.EDX = 0, 0, 0
}

// setTopology describes n single-threaded cores in one package, this vCPU being APIC ID id.
func setTopology(t *table, id, n uint32) {
	coreBits := uint32(bits.Len32(n - 1)) // bits of APIC ID for the core number
	l1 := t.get(1, 0)
	l1.EBX = l1.EBX&0xffff | min(n, 255)<<16 | id<<24
	if n > 1 {
		l1.EDX |= leaf1EDXHTT
	} else {
		l1.EDX &^= leaf1EDXHTT
	}
	for i := range t.e {
		e := &t.e[i]
		if e.Function == 4 && e.EAX&0x1f != 0 { // a cache (type != 0)
			sharing := uint32(1)
			if e.EAX>>5&7 >= 3 { // L3 and beyond: shared by the package
				sharing = n
			}
			e.EAX = e.EAX&0x3fff | (sharing-1)<<14 | (1<<coreBits-1)<<26
		}
	}
	maxLeaf := t.get(0, 0).EAX
	for _, leaf := range []uint32{0xb, 0x1f} {
		if leaf > maxLeaf || (leaf == 0x1f && t.get(0x1f, 0) == nil) {
			continue
		}
		t.keep(func(e *kvm.CPUIDEntry2) bool { return e.Function != leaf })
		// Subleaf 0: SMT level (1 thread per core); 1: core level (n cores); 2: invalid.
		t.e = append(t.e,
			kvm.CPUIDEntry2{Function: leaf, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex,
				EAX: 0, EBX: 1, ECX: 1 << 8, EDX: id},
			kvm.CPUIDEntry2{Function: leaf, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex,
				EAX: coreBits, EBX: n, ECX: 2<<8 | 1, EDX: id},
			kvm.CPUIDEntry2{Function: leaf, Index: 2, Flags: kvm.CPUIDFlagSignificantIndex,
				ECX: 2, EDX: id})
	}
	if t.isAMD() {
		if e := t.get(0x8000_0008, 0); e != nil {
			e.ECX = e.ECX&^0xf0ff | coreBits<<12 | (n - 1)
		}
		if e := t.get(0x8000_001e, 0); e != nil {
			e.EAX, e.EBX, e.ECX = id, id&0xff, 0 // extended APIC ID, core ID (1 thread/core), node 0
		}
	}
}

// Signature returns CPUID.1 EAX and EDX of a table (for the MP table's processor entries).
func Signature(entries []kvm.CPUIDEntry2) (eax, edx uint32) {
	t := &table{e: entries}
	if l1 := t.get(1, 0); l1 != nil {
		return l1.EAX, l1.EDX
	}
	return 0, 0
}
