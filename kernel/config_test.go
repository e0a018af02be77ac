package kernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

const sampleConfig = `#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_64BIT=y
CONFIG_NR_CPUS=32
CONFIG_LOCALVERSION="-vmbench"
# CONFIG_ACPI is not set

CONFIG_VIRTIO_MMIO=y
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"CONFIG_64BIT":        "y",
		"CONFIG_NR_CPUS":      "32",
		"CONFIG_LOCALVERSION": `"-vmbench"`,
		"CONFIG_ACPI":         "n",
		"CONFIG_VIRTIO_MMIO":  "y",
		"CONFIG_ABSENT":       "n",
	} {
		if got := c.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := len(c.Names()); got != 5 {
		t.Errorf("%d options, want 5", got)
	}

	for _, bad := range []string{
		"CONFIG_X=y\nthis is not a config line\n",
		"X=y\n",
		"CONFIG_=y\n" + "garbage",
		strings.Repeat("#", maxConfigLine+1),
		strings.Repeat("CONFIG_A=y\n", maxConfigSize/11+1),
	} {
		if _, err := ParseConfig(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseConfig(%.30q...) accepted bad input", bad)
		}
	}
}

// ikconfigImage builds image bytes that look like a vmlinux with an IKCONFIG block.
func ikconfigImage(t testing.TB, config string, before, after []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write([]byte(config)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	img.Write(before)
	img.Write(ikcfgStart)
	img.Write(z.Bytes())
	img.Write(ikcfgEnd)
	img.Write(after)
	return img.Bytes()
}

func TestEmbeddedConfig(t *testing.T) {
	img := ikconfigImage(t, sampleConfig, []byte("\x7fELF...code...IKCFG_ST (a string in code)..."), []byte("...rodata"))
	c, err := EmbeddedConfig(img)
	if err != nil {
		t.Fatal(err)
	}
	if c.Get("CONFIG_VIRTIO_MMIO") != "y" || c.Get("CONFIG_ACPI") != "n" {
		t.Errorf("embedded config parsed wrong: %v", c)
	}

	if _, err := EmbeddedConfig([]byte("\x7fELF no config here")); !errors.Is(err, ErrNoEmbeddedConfig) {
		t.Errorf("no block: %v, want ErrNoEmbeddedConfig", err)
	}
	// Truncated: start marker and gzip header but no end marker.
	if _, err := EmbeddedConfig(img[:len(img)-len("IKCFG_ED...rodata")]); err == nil {
		t.Error("missing IKCFG_ED accepted")
	}
	// Corrupt gzip body.
	bad := bytes.Clone(img)
	i := bytes.LastIndex(bad, ikcfgStart) + len(ikcfgStart)
	copy(bad[i+10:], bytes.Repeat([]byte{0xff}, 20))
	if _, err := EmbeddedConfig(bad); err == nil {
		t.Error("corrupt gzip accepted")
	}
}

func TestRequirementCheck(t *testing.T) {
	c := Config{"CONFIG_NR_CPUS": "32", "CONFIG_A": "y", "CONFIG_B": "n"}
	for _, tc := range []struct {
		r  Requirement
		ok bool
	}{
		{Requirement{"CONFIG_NR_CPUS", ">=32", ""}, true},
		{Requirement{"CONFIG_NR_CPUS", ">=64", ""}, false},
		{Requirement{"CONFIG_A", "y", ""}, true},
		{Requirement{"CONFIG_A", "n", ""}, false},
		{Requirement{"CONFIG_B", "n", ""}, true},
		{Requirement{"CONFIG_ABSENT", "n", ""}, true},
		{Requirement{"CONFIG_ABSENT", "y", ""}, false},
		{Requirement{"CONFIG_ABSENT", ">=1", ""}, false},
		{Requirement{"CONFIG_A", ">=x", ""}, false},
	} {
		if err := tc.r.Check(c); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.r, err, tc.ok)
		}
	}
	if err := c.Check([]Requirement{{"CONFIG_A", "y", ""}, {"CONFIG_X", "y", "x"}, {"CONFIG_Y", "y", "y"}}); err == nil ||
		!strings.Contains(err.Error(), "CONFIG_X") || !strings.Contains(err.Error(), "CONFIG_Y") {
		t.Errorf("Check must report every failure: %v", err)
	}
	for _, r := range Requirements {
		if !strings.HasPrefix(r.Option, "CONFIG_") || r.Why == "" || r.Want == "" {
			t.Errorf("malformed requirement %+v", r)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(sampleConfig))
	f.Add([]byte("# CONFIG_X is not set\nCONFIG_Y=\"a=b\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, n := range c.Names() {
			if !strings.HasPrefix(n, "CONFIG_") {
				t.Fatalf("option name %q without CONFIG_ prefix", n)
			}
		}
	})
}

func FuzzEmbeddedConfig(f *testing.F) {
	f.Add(ikconfigImage(f, sampleConfig, []byte("head"), []byte("tail")))
	f.Add([]byte("IKCFG_ST\x1f\x8b\x08\x00IKCFG_ED"))
	f.Add([]byte("IKCFG_STIKCFG_ST\x1f\x8bIKCFG_ED"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = EmbeddedConfig(b) // must not panic or run away on any input
	})
}

func TestParseNotes(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		nb := append([]byte(name), 0)
		hdr := make([]byte, 12)
		binary.LittleEndian.PutUint32(hdr[0:], uint32(len(nb)))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(len(desc)))
		binary.LittleEndian.PutUint32(hdr[8:], typ)
		b.Write(hdr)
		b.Write(nb)
		b.Write(make([]byte, int(align4(uint64(len(nb))))-len(nb)))
		b.Write(desc)
		b.Write(make([]byte, int(align4(uint64(len(desc))))-len(desc)))
		return b.Bytes()
	}
	seg := append(note("GNU", 3, []byte{1, 2, 3, 4, 5}), note("Xen", 18, []byte{0, 0, 0, 1})...)
	notes := ParseNotes(seg)
	if len(notes) != 2 || notes[1].Name != "Xen" || notes[1].Type != 18 || len(notes[0].Desc) != 5 {
		t.Fatalf("ParseNotes: %+v", notes)
	}
	if got := ParseNotes(seg[:len(seg)-1]); len(got) != 1 {
		t.Errorf("truncated second note: %d notes, want 1", len(got))
	}
	huge := note("X", 1, nil)
	binary.LittleEndian.PutUint32(huge[4:], 0xffffffff)
	if got := ParseNotes(huge); len(got) != 0 {
		t.Errorf("oversized descsz accepted: %+v", got)
	}
}

func FuzzParseNotes(f *testing.F) {
	f.Add([]byte("\x04\x00\x00\x00\x04\x00\x00\x00\x12\x00\x00\x00Xen\x00\x00\x00\x00\x01"))
	f.Add([]byte("\xff\xff\xff\xff\x00\x00\x00\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, n := range ParseNotes(b) {
			if len(n.Desc) > len(b) || len(n.Name) > len(b) {
				t.Fatal("note larger than its input")
			}
		}
	})
}
