package x86

import (
	"encoding/binary"
	"fmt"

	"github.com/vmbench/runner/vmm/guestmem"
)

// MP table (Intel MultiProcessor Specification 1.4): a floating pointer structure and a
// configuration table with one processor entry per vCPU, the ISA bus, the IOAPIC, one I/O
// interrupt entry per IOAPIC pin and the two local interrupts. Linux without ACPI finds
// its CPUs here ("found SMP MP-table"); without it SMP stays off.
const (
	mpfSize        = 16
	mpcHeaderSize  = 44
	mpcCPUSize     = 20
	mpcSmallSize   = 8 // bus, IOAPIC, I/O and local interrupt entries
	mpSpecRev      = 4 // 1.4
	apicVersion    = 0x14
	ioapicVersion  = 0x11
	ioapicPins     = 24
	mpEntryCPU     = 0
	mpEntryBus     = 1
	mpEntryIOAPIC  = 2
	mpEntryIOIntr  = 3
	mpEntryLocIntr = 4
	cpuFlagEnabled = 1
	cpuFlagBSP     = 2
	mpIntINT       = 0
	mpIntNMI       = 1
	mpIntExtINT    = 3
)

// MaxVCPUs is the most vCPUs the MP table area (MPTableSize bytes) describes.
const MaxVCPUs = (MPTableSize - mpfSize - mpcHeaderSize - (2+ioapicPins+2)*mpcSmallSize) / mpcCPUSize

// MPTable builds the floating pointer and configuration table for ncpus vCPUs with APIC
// IDs 0..ncpus-1. cpuSignature and featureFlags are CPUID.1 EAX and EDX.
func MPTable(ncpus int, cpuSignature, featureFlags uint32) ([]byte, error) {
	if ncpus < 1 || ncpus > MaxVCPUs || ncpus > 254 {
		return nil, fmt.Errorf("mptable: %d vCPUs (1..%d)", ncpus, MaxVCPUs)
	}
	le := binary.LittleEndian
	var t []byte
	put8 := func(v uint8) { t = append(t, v) }
	put16 := func(v uint16) { t = le.AppendUint16(t, v) }
	put32 := func(v uint32) { t = le.AppendUint32(t, v) }

	// Configuration table header (struct mpc_table); count and lengths patched below.
	t = append(t, "PCMP"...)
	put16(0) // base table length
	put8(mpSpecRev)
	put8(0) // checksum
	t = append(t, "VMBENCH "...)
	t = append(t, "MICROVM     "...)
	put32(0) // OEM table pointer
	put16(0) // OEM table size
	put16(0) // entry count
	put32(LAPICAddr)
	put16(0) // extended table length
	put8(0)  // extended table checksum
	put8(0)  // reserved
	entries := 0
	for i := range ncpus {
		flags := uint8(cpuFlagEnabled)
		if i == 0 {
			flags |= cpuFlagBSP
		}
		put8(mpEntryCPU)
		put8(uint8(i)) // local APIC ID
		put8(apicVersion)
		put8(flags)
		put32(cpuSignature)
		put32(featureFlags)
		put32(0)
		put32(0)
		entries++
	}
	put8(mpEntryBus)
	put8(0) // bus ID
	t = append(t, "ISA   "...)
	entries++
	ioapicID := uint8(ncpus)
	put8(mpEntryIOAPIC)
	put8(ioapicID)
	put8(ioapicVersion)
	put8(1) // enabled
	put32(IOAPICAddr)
	entries++
	for pin := range ioapicPins {
		put8(mpEntryIOIntr)
		put8(mpIntINT)
		put16(0) // polarity and trigger conform to the bus
		put8(0)  // source bus ID
		put8(uint8(pin))
		put8(ioapicID)
		put8(uint8(pin))
		entries++
	}
	for lint, typ := range []uint8{mpIntExtINT, mpIntNMI} {
		put8(mpEntryLocIntr)
		put8(typ)
		put16(0)
		put8(0)
		put8(0)
		put8(0xff) // all local APICs
		put8(uint8(lint))
		entries++
	}
	le.PutUint16(t[4:], uint16(len(t)))
	le.PutUint16(t[34:], uint16(entries))
	t[7] = checksum(t)

	// Floating pointer structure (struct mpf_intel), in front of the table.
	f := make([]byte, mpfSize)
	copy(f, "_MP_")
	le.PutUint32(f[4:], MPTableAddr+mpfSize) // physical address of the table
	f[8] = 1                                 // length in 16-byte units
	f[9] = mpSpecRev
	f[10] = checksum(f)
	return append(f, t...), nil
}

// checksum returns the byte that makes b sum to zero (with that byte's slot zeroed).
func checksum(b []byte) uint8 {
	var s uint8
	for _, v := range b {
		s += v
	}
	return -s
}

// WriteMPTable writes MPTable(...) at MPTableAddr.
func WriteMPTable(mem *guestmem.Memory, ncpus int, cpuSignature, featureFlags uint32) error {
	t, err := MPTable(ncpus, cpuSignature, featureFlags)
	if err != nil {
		return err
	}
	if _, err := mem.WriteAt(t, MPTableAddr); err != nil {
		return fmt.Errorf("mptable: %w", err)
	}
	return nil
}
