package vmmtest

import (
	"fmt"
	"os"
	"strings"
)

// ProcStatus returns the fields of /proc/PID/status (Seccomp, CapEff, NoNewPrivs, …) by name,
// values trimmed: what the confinement tests of the VMM process assert on.
func ProcStatus(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}
