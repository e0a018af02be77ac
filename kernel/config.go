package kernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Config is a parsed kernel .config: option name (with the CONFIG_ prefix) to value. Options
// that are "not set" have the value "n", so Config["CONFIG_X"] is "y", "n", a number, a quoted
// string, or "" when the option does not appear at all.
type Config map[string]string

// Limits that keep parsing of an untrusted image or config bounded.
const (
	// maxConfigSize caps a decompressed .config (ours is ~50 KB; allyesconfig ~300 KB).
	maxConfigSize = 4 << 20
	// maxConfigLine caps one line of a .config.
	maxConfigLine = 64 << 10
)

// ikconfig markers around the gzip'd .config that CONFIG_IKCONFIG embeds in the kernel image
// (kernel/configs.c: .ascii "IKCFG_ST", .incbin "kernel/config_data.gz", .ascii "IKCFG_ED").
var (
	ikcfgStart = []byte("IKCFG_ST")
	ikcfgEnd   = []byte("IKCFG_ED")
)

// ErrNoEmbeddedConfig means the image carries no IKCONFIG block (built without CONFIG_IKCONFIG,
// or a compressed bzImage whose payload hides it).
var ErrNoEmbeddedConfig = errors.New("no embedded kernel config (IKCONFIG)")

// optionName reports whether s is CONFIG_ followed by one or more of [A-Za-z0-9_].
func optionName(s string) bool {
	rest, ok := strings.CutPrefix(s, "CONFIG_")
	if !ok || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ParseConfig reads a .config (or /proc/config.gz after decompression). Comments and blank
// lines are skipped; any other line that is not "CONFIG_X=value" or "# CONFIG_X is not set"
// is an error, as is input larger than 4 MiB.
func ParseConfig(r io.Reader) (Config, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxConfigSize+1))
	sc.Buffer(make([]byte, 0, 4096), maxConfigLine)
	c := Config{}
	n, size := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		size += len(sc.Bytes()) + 1
		if size > maxConfigSize {
			return nil, fmt.Errorf("kernel config: larger than %d bytes", maxConfigSize)
		}
		if name, value, ok := strings.Cut(line, "="); ok && optionName(name) {
			c[name] = value
			continue
		}
		if mid, ok := strings.CutPrefix(line, "# "); ok {
			if name, ok := strings.CutSuffix(mid, " is not set"); ok && optionName(name) {
				c[name] = "n"
				continue
			}
		}
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		return nil, fmt.Errorf("kernel config: line %d: not an option: %.60q", n, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernel config: %w", err)
	}
	return c, nil
}

// Get returns an option's value, "n" for an option that is absent: Kconfig leaves out options
// whose dependencies are off, which means the same as "not set".
func (c Config) Get(name string) string {
	if v, ok := c[name]; ok {
		return v
	}
	return "n"
}

// Names returns the option names in sorted order.
func (c Config) Names() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// EmbeddedConfig extracts the configuration that CONFIG_IKCONFIG stores in an uncompressed
// kernel image (vmlinux): the gzip stream between the IKCFG_ST and IKCFG_ED markers. It
// returns ErrNoEmbeddedConfig when there is no such block.
func EmbeddedConfig(image []byte) (Config, error) {
	from := 0
	for {
		i := bytes.Index(image[from:], ikcfgStart)
		if i < 0 {
			return nil, ErrNoEmbeddedConfig
		}
		body := image[from+i+len(ikcfgStart):]
		from += i + len(ikcfgStart)
		// The marker string also appears in code that searches for it (scripts, this file
		// when it is part of a binary): only a marker followed by a gzip header counts.
		if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
			continue
		}
		end := bytes.Index(body, ikcfgEnd)
		if end < 0 {
			return nil, fmt.Errorf("kernel config: IKCFG_ST without IKCFG_ED")
		}
		zr, err := gzip.NewReader(bytes.NewReader(body[:end]))
		if err != nil {
			return nil, fmt.Errorf("kernel config: embedded gzip: %w", err)
		}
		zr.Multistream(false)
		var buf bytes.Buffer
		n, err := io.Copy(&buf, io.LimitReader(zr, maxConfigSize+1))
		if err != nil {
			return nil, fmt.Errorf("kernel config: embedded gzip: %w", err)
		}
		if n > maxConfigSize {
			return nil, fmt.Errorf("kernel config: embedded config larger than %d bytes", maxConfigSize)
		}
		return ParseConfig(&buf)
	}
}

// ReadEmbeddedConfig is EmbeddedConfig on a file (a vmlinux is ~20 MB; it is read whole).
func ReadEmbeddedConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kernel config: %w", err)
	}
	c, err := EmbeddedConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
