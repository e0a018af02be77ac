package vmmtest

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedMatchesSource reassembles asm/*.S and compares with the committed bytes.
func TestGeneratedMatchesSource(t *testing.T) {
	for _, tool := range []string{"as", "objcopy", "od", "gofmt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (binutils)", tool)
		}
	}
	out := filepath.Join(t.TempDir(), "zguests.go")
	if b, err := exec.Command("./gen.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("zguests.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("zguests.go is stale: run vmm/vmmtest/gen.sh")
	}
}

func TestELFParsesWithDebugELF(t *testing.T) {
	img := ELF(KernelEntry, Segment{Paddr: KernelEntry, Data: Spin},
		Segment{Paddr: APStartAddr, Data: SMPAP, MemSize: 0x1000})
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if f.Entry != KernelEntry || f.Machine != elf.EM_X86_64 || len(f.Progs) != 2 {
		t.Fatalf("entry %#x machine %v progs %d", f.Entry, f.Machine, len(f.Progs))
	}
	p := f.Progs[1]
	if p.Paddr != APStartAddr || p.Memsz != 0x1000 || p.Filesz != uint64(len(SMPAP)) {
		t.Fatalf("segment 1: %+v", p.ProgHeader)
	}
	b := make([]byte, p.Filesz)
	if _, err := p.ReadAt(b, 0); err != nil || !bytes.Equal(b, SMPAP) {
		t.Fatalf("segment data %x, %v", b, err)
	}
}
