package kvm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// abiFacts is every size, offset and constant the package mirrors from the kernel headers,
// under the C expression that computes it.
func abiFacts() map[string]uint64 {
	var (
		regs   Regs
		seg    Segment
		dt     DTable
		sregs  Sregs
		fpu    FPU
		ent    CPUIDEntry2
		msr    MSREntry
		region UserspaceMemoryRegion
		irqfd  IRQFD
		ioev   IOEventFD
		tr     Translation
	)
	f := map[string]uint64{
		"sizeof(struct kvm_regs)":                                       uint64(unsafe.Sizeof(regs)),
		"offsetof(struct kvm_regs, rip)":                                uint64(unsafe.Offsetof(regs.RIP)),
		"offsetof(struct kvm_regs, rflags)":                             uint64(unsafe.Offsetof(regs.RFLAGS)),
		"offsetof(struct kvm_regs, r15)":                                uint64(unsafe.Offsetof(regs.R15)),
		"sizeof(struct kvm_segment)":                                    uint64(unsafe.Sizeof(seg)),
		"offsetof(struct kvm_segment, selector)":                        uint64(unsafe.Offsetof(seg.Selector)),
		"offsetof(struct kvm_segment, type)":                            uint64(unsafe.Offsetof(seg.Type)),
		"offsetof(struct kvm_segment, l)":                               uint64(unsafe.Offsetof(seg.L)),
		"offsetof(struct kvm_segment, unusable)":                        uint64(unsafe.Offsetof(seg.Unusable)),
		"sizeof(struct kvm_dtable)":                                     uint64(unsafe.Sizeof(dt)),
		"offsetof(struct kvm_dtable, limit)":                            uint64(unsafe.Offsetof(dt.Limit)),
		"sizeof(struct kvm_sregs)":                                      uint64(unsafe.Sizeof(sregs)),
		"offsetof(struct kvm_sregs, tr)":                                uint64(unsafe.Offsetof(sregs.TR)),
		"offsetof(struct kvm_sregs, gdt)":                               uint64(unsafe.Offsetof(sregs.GDT)),
		"offsetof(struct kvm_sregs, idt)":                               uint64(unsafe.Offsetof(sregs.IDT)),
		"offsetof(struct kvm_sregs, cr0)":                               uint64(unsafe.Offsetof(sregs.CR0)),
		"offsetof(struct kvm_sregs, cr3)":                               uint64(unsafe.Offsetof(sregs.CR3)),
		"offsetof(struct kvm_sregs, efer)":                              uint64(unsafe.Offsetof(sregs.EFER)),
		"offsetof(struct kvm_sregs, apic_base)":                         uint64(unsafe.Offsetof(sregs.APICBase)),
		"offsetof(struct kvm_sregs, interrupt_bitmap)":                  uint64(unsafe.Offsetof(sregs.InterruptBitmap)),
		"sizeof(struct kvm_fpu)":                                        uint64(unsafe.Sizeof(fpu)),
		"offsetof(struct kvm_fpu, fcw)":                                 uint64(unsafe.Offsetof(fpu.FCW)),
		"offsetof(struct kvm_fpu, last_opcode)":                         uint64(unsafe.Offsetof(fpu.LastOpcode)),
		"offsetof(struct kvm_fpu, last_ip)":                             uint64(unsafe.Offsetof(fpu.LastIP)),
		"offsetof(struct kvm_fpu, xmm)":                                 uint64(unsafe.Offsetof(fpu.XMM)),
		"offsetof(struct kvm_fpu, mxcsr)":                               uint64(unsafe.Offsetof(fpu.MXCSR)),
		"sizeof(struct kvm_cpuid_entry2)":                               uint64(unsafe.Sizeof(ent)),
		"offsetof(struct kvm_cpuid_entry2, flags)":                      uint64(unsafe.Offsetof(ent.Flags)),
		"offsetof(struct kvm_cpuid_entry2, edx)":                        uint64(unsafe.Offsetof(ent.EDX)),
		"sizeof(struct kvm_cpuid2)":                                     sizeofCPUID2,
		"offsetof(struct kvm_cpuid2, entries)":                          sizeofCPUID2,
		"sizeof(struct kvm_msr_entry)":                                  uint64(unsafe.Sizeof(msr)),
		"offsetof(struct kvm_msr_entry, data)":                          uint64(unsafe.Offsetof(msr.Data)),
		"sizeof(struct kvm_msrs)":                                       sizeofMSRs,
		"offsetof(struct kvm_msrs, entries)":                            sizeofMSRs,
		"sizeof(struct kvm_msr_list)":                                   sizeofMSRList,
		"sizeof(struct kvm_userspace_memory_region)":                    uint64(unsafe.Sizeof(region)),
		"offsetof(struct kvm_userspace_memory_region, guest_phys_addr)": uint64(unsafe.Offsetof(region.GuestPhysAddr)),
		"offsetof(struct kvm_userspace_memory_region, userspace_addr)":  uint64(unsafe.Offsetof(region.UserspaceAddr)),
		"sizeof(struct kvm_irq_level)":                                  uint64(unsafe.Sizeof(IRQLevel{})),
		"sizeof(struct kvm_pit_config)":                                 uint64(unsafe.Sizeof(PITConfig{})),
		"sizeof(struct kvm_irqfd)":                                      uint64(unsafe.Sizeof(irqfd)),
		"offsetof(struct kvm_irqfd, resamplefd)":                        uint64(unsafe.Offsetof(irqfd.ResampleFD)),
		"sizeof(struct kvm_ioeventfd)":                                  uint64(unsafe.Sizeof(ioev)),
		"offsetof(struct kvm_ioeventfd, len)":                           uint64(unsafe.Offsetof(ioev.Len)),
		"offsetof(struct kvm_ioeventfd, fd)":                            uint64(unsafe.Offsetof(ioev.FD)),
		"offsetof(struct kvm_ioeventfd, flags)":                         uint64(unsafe.Offsetof(ioev.Flags)),
		"sizeof(struct kvm_translation)":                                uint64(unsafe.Sizeof(tr)),
		"offsetof(struct kvm_translation, valid)":                       uint64(unsafe.Offsetof(tr.Valid)),
		"sizeof(struct kvm_lapic_state)":                                uint64(unsafe.Sizeof(LAPICState{})),
		"sizeof(struct kvm_mp_state)":                                   uint64(unsafe.Sizeof(MPState{})),

		// struct kvm_run
		"offsetof(struct kvm_run, immediate_exit)":                           runOffImmediateExit,
		"offsetof(struct kvm_run, exit_reason)":                              runOffExitReason,
		"offsetof(struct kvm_run, if_flag)":                                  runOffIfFlag,
		"offsetof(struct kvm_run, hw)":                                       runOffExit,
		"offsetof(struct kvm_run, hw.hardware_exit_reason)":                  runOffHWExitReason,
		"offsetof(struct kvm_run, io.direction)":                             runOffIODirection,
		"offsetof(struct kvm_run, io.size)":                                  runOffIOSize,
		"offsetof(struct kvm_run, io.port)":                                  runOffIOPort,
		"offsetof(struct kvm_run, io.count)":                                 runOffIOCount,
		"offsetof(struct kvm_run, io.data_offset)":                           runOffIODataOffset,
		"offsetof(struct kvm_run, mmio.phys_addr)":                           runOffMMIOPhysAddr,
		"offsetof(struct kvm_run, mmio.data)":                                runOffMMIOData,
		"offsetof(struct kvm_run, mmio.len)":                                 runOffMMIOLen,
		"offsetof(struct kvm_run, mmio.is_write)":                            runOffMMIOIsWrite,
		"offsetof(struct kvm_run, system_event.type)":                        runOffSystemEventType,
		"offsetof(struct kvm_run, system_event.ndata)":                       runOffSystemEventNData,
		"offsetof(struct kvm_run, system_event.data)":                        runOffSystemEventData,
		"offsetof(struct kvm_run, internal.suberror)":                        runOffInternalSuberror,
		"offsetof(struct kvm_run, internal.ndata)":                           runOffInternalNData,
		"offsetof(struct kvm_run, internal.data)":                            runOffInternalData,
		"offsetof(struct kvm_run, emulation_failure.flags)":                  runOffEmulationFlags,
		"offsetof(struct kvm_run, emulation_failure.insn_size)":              runOffEmulationInsnLen,
		"offsetof(struct kvm_run, emulation_failure.insn_bytes)":             runOffEmulationInsn,
		"offsetof(struct kvm_run, fail_entry.hardware_entry_failure_reason)": runOffFailEntryReason,
		"offsetof(struct kvm_run, fail_entry.cpu)":                           runOffFailEntryCPU,
		"offsetof(struct kvm_run, ex.exception)":                             runOffExceptionNr,
		"offsetof(struct kvm_run, ex.error_code)":                            runOffExceptionErr,
		"offsetof(struct kvm_run, s)":                                        sizeofRunHeader,

		"KVM_API_VERSION":                                     APIVersion,
		"KVM_EXIT_IO_IN":                                      IODirectionIn,
		"KVM_EXIT_IO_OUT":                                     IODirectionOut,
		"KVM_INTERNAL_ERROR_EMULATION":                        InternalErrorEmulation,
		"KVM_INTERNAL_ERROR_SIMUL_EX":                         InternalErrorSimulEx,
		"KVM_INTERNAL_ERROR_DELIVERY_EV":                      InternalErrorDeliveryEv,
		"KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON":           InternalErrorUnexpectedExitReason,
		"KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES": InternalErrorFlagInstructionBytes,
		"KVM_IRQFD_FLAG_DEASSIGN":                             IRQFDFlagDeassign,
		"KVM_IOEVENTFD_FLAG_DATAMATCH":                        IOEventFDFlagDatamatch,
		"KVM_IOEVENTFD_FLAG_PIO":                              IOEventFDFlagPIO,
		"KVM_IOEVENTFD_FLAG_DEASSIGN":                         IOEventFDFlagDeassign,
		"KVM_MP_STATE_RUNNABLE":                               MPStateRunnable,
		"KVM_MP_STATE_UNINITIALIZED":                          MPStateUninitialized,
		"KVM_MP_STATE_INIT_RECEIVED":                          MPStateInitReceived,
		"KVM_MP_STATE_HALTED":                                 MPStateHalted,
		"KVM_MP_STATE_SIPI_RECEIVED":                          MPStateSIPIReceived,
		"KVM_CPUID_FLAG_SIGNIFCANT_INDEX":                     CPUIDFlagSignificantIndex,
		"KVM_SYSTEM_EVENT_SHUTDOWN":                           uint64(SystemEventShutdown),
		"KVM_SYSTEM_EVENT_RESET":                              uint64(SystemEventReset),
		"KVM_SYSTEM_EVENT_CRASH":                              uint64(SystemEventCrash),
		"KVM_SYSTEM_EVENT_WAKEUP":                             uint64(SystemEventWakeup),
		"KVM_SYSTEM_EVENT_SUSPEND":                            uint64(SystemEventSuspend),
		"KVM_SYSTEM_EVENT_SEV_TERM":                           uint64(SystemEventSEVTerm),
	}
	ioctls := map[string]uintptr{
		"KVM_GET_API_VERSION": ioctlGetAPIVersion, "KVM_CREATE_VM": ioctlCreateVM,
		"KVM_GET_MSR_INDEX_LIST": ioctlGetMSRIndexList, "KVM_CHECK_EXTENSION": ioctlCheckExtension,
		"KVM_GET_VCPU_MMAP_SIZE": ioctlGetVCPUMmapSize, "KVM_GET_SUPPORTED_CPUID": ioctlGetSupportedCPUID,
		"KVM_CREATE_VCPU": ioctlCreateVCPU, "KVM_SET_USER_MEMORY_REGION": ioctlSetUserMemRegion,
		"KVM_SET_TSS_ADDR": ioctlSetTSSAddr, "KVM_CREATE_IRQCHIP": ioctlCreateIRQChip,
		"KVM_IRQ_LINE": ioctlIRQLine, "KVM_IRQFD": ioctlIRQFD, "KVM_CREATE_PIT2": ioctlCreatePIT2,
		"KVM_IOEVENTFD": ioctlIOEventFD, "KVM_RUN": ioctlRun, "KVM_GET_REGS": ioctlGetRegs,
		"KVM_SET_REGS": ioctlSetRegs, "KVM_GET_SREGS": ioctlGetSregs, "KVM_SET_SREGS": ioctlSetSregs,
		"KVM_TRANSLATE": ioctlTranslate, "KVM_GET_MSRS": ioctlGetMSRs, "KVM_SET_MSRS": ioctlSetMSRs,
		"KVM_GET_FPU": ioctlGetFPU, "KVM_SET_FPU": ioctlSetFPU, "KVM_GET_LAPIC": ioctlGetLAPIC,
		"KVM_SET_LAPIC": ioctlSetLAPIC, "KVM_SET_CPUID2": ioctlSetCPUID2, "KVM_GET_CPUID2": ioctlGetCPUID2,
		"KVM_GET_MP_STATE": ioctlGetMPState, "KVM_SET_MP_STATE": ioctlSetMPState,
		"KVM_GET_TSC_KHZ": ioctlGetTSCKHz,
	}
	for n, v := range ioctls {
		f[n] = uint64(v)
	}
	for c, n := range capNames {
		f["KVM_CAP_"+n] = uint64(c)
	}
	for e, n := range exitNames {
		f["KVM_EXIT_"+n] = uint64(e)
	}
	return f
}

// TestABIAgainstKernelHeaders compiles a C program against the system's <linux/kvm.h> that
// prints every fact abiFacts mirrors, and compares.
func TestABIAgainstKernelHeaders(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) to read the kernel headers with")
	}
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		t.Skip("no kernel headers (/usr/include/linux/kvm.h; Debian: linux-libc-dev)")
	}
	facts := abiFacts()
	var src bytes.Buffer
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\nint main(void) {\n")
	for expr := range facts {
		isMacro := strings.HasPrefix(expr, "KVM_")
		if isMacro { // newer than the installed headers: reported, not compared
			fmt.Fprintf(&src, "#ifndef %s\n\tprintf(\"%%s\\t-\\n\", %q);\n#else\n", expr, expr)
		}
		fmt.Fprintf(&src, "\tprintf(\"%%s\\t%%llu\\n\", %q, (unsigned long long)(%s));\n", expr, expr)
		if isMacro {
			src.WriteString("#endif\n")
		}
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "abi.c"), src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "abi")
	if out, err := exec.Command(cc, "-o", bin, filepath.Join(dir, "abi.c")).CombinedOutput(); err != nil {
		t.Fatalf("compile against kernel headers: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("bad line %q", sc.Text())
		}
		if val == "-" {
			t.Logf("%s: not in the installed headers", name)
			got[name] = facts[name]
			continue
		}
		v, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = v
	}
	if len(got) != len(facts) {
		t.Fatalf("C program printed %d facts, want %d", len(got), len(facts))
	}
	for name, want := range facts {
		if got[name] != want {
			t.Errorf("%s: Go has %#x, kernel headers say %#x", name, want, got[name])
		}
	}
}

// TestIoctlSizesMatchGoTypes checks that the size encoded in each ioctl number is the size
// of the Go type passed with it (the kernel copies exactly that many bytes).
func TestIoctlSizesMatchGoTypes(t *testing.T) {
	size := func(req uintptr) uintptr { return req >> 16 & 0x3fff }
	for _, tc := range []struct {
		name string
		req  uintptr
		want uintptr
	}{
		{"KVM_GET_REGS", ioctlGetRegs, unsafe.Sizeof(Regs{})},
		{"KVM_SET_SREGS", ioctlSetSregs, unsafe.Sizeof(Sregs{})},
		{"KVM_GET_FPU", ioctlGetFPU, unsafe.Sizeof(FPU{})},
		{"KVM_SET_USER_MEMORY_REGION", ioctlSetUserMemRegion, unsafe.Sizeof(UserspaceMemoryRegion{})},
		{"KVM_IRQ_LINE", ioctlIRQLine, unsafe.Sizeof(IRQLevel{})},
		{"KVM_CREATE_PIT2", ioctlCreatePIT2, unsafe.Sizeof(PITConfig{})},
		{"KVM_IRQFD", ioctlIRQFD, unsafe.Sizeof(IRQFD{})},
		{"KVM_IOEVENTFD", ioctlIOEventFD, unsafe.Sizeof(IOEventFD{})},
		{"KVM_TRANSLATE", ioctlTranslate, unsafe.Sizeof(Translation{})},
		{"KVM_GET_LAPIC", ioctlGetLAPIC, unsafe.Sizeof(LAPICState{})},
		{"KVM_GET_MP_STATE", ioctlGetMPState, unsafe.Sizeof(MPState{})},
	} {
		if got := size(tc.req); got != tc.want {
			t.Errorf("%s encodes %d bytes; Go type has %d", tc.name, got, tc.want)
		}
	}
	// Literal values from the header comments of well-known tools, independent of ioc().
	if ioctlGetRegs != 0x8090ae81 || ioctlRun != 0xae80 || ioctlSetCPUID2 != 0x4008ae90 {
		t.Errorf("ioctl encoding: KVM_GET_REGS=%#x KVM_RUN=%#x KVM_SET_CPUID2=%#x", ioctlGetRegs, ioctlRun, ioctlSetCPUID2)
	}
}
