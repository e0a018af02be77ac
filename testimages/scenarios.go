package testimages

import (
	"fmt"
	"slices"
)

// scenario is the config part of a spec scenario's Dockerfile.
type scenario struct {
	cmd     []string
	env     []string // added after PATH
	workdir string
	appFile bool // COPY . /app: a second layer with /app/hello.txt
}

// scenarios maps an image name (its tag) to its config. The first thirteen are the spec's
// Dockerfiles; the -nopipe and -vm variants are for the VM tier (no shell pipelines).
var scenarios = map[string]scenario{
	"basic":   {cmd: []string{"echo", "hello from vm"}},
	"env":     {cmd: []string{"sh", "-c", "echo $MY_VAR"}, env: []string{"MY_VAR=test_value"}},
	"workdir": {cmd: []string{"pwd"}, workdir: "/app", appFile: true},
	"output":  {cmd: []string{"sh", "-c", `echo '{"result": 42}' > /tmp/output.json`}},
	"exit":    {cmd: []string{"sh", "-c", "exit 42"}},
	"timeout": {cmd: []string{"sleep", "3600"}},
	"large":   {cmd: []string{"sh", "-c", "dd if=/dev/urandom bs=1M count=10 | base64"}},
	"write":   {cmd: []string{"sh", "-c", "echo test > /data.txt && cat /data.txt"}},
	"stderr":  {cmd: []string{"sh", "-c", "echo stdout && echo stderr >&2"}},
	"cpu":     {cmd: []string{"sh", "-c", "cat /proc/cpuinfo | grep processor | wc -l"}},
	"seccomp": {cmd: []string{"sh", "-c", "reboot"}},
	"caps":    {cmd: []string{"sh", "-c", "cat /proc/self/status | grep Cap"}},
	"network": {cmd: []string{"sh", "-c", "ping -c 1 8.8.8.8 2>&1 || echo no network"}},

	"cpu-nopipe":  {cmd: []string{"grep", "-c", "processor", "/proc/cpuinfo"}},
	"caps-nopipe": {cmd: []string{"grep", "Cap", "/proc/self/status"}},
	"large-vm":    {cmd: []string{"sh", "-c", "dd if=/dev/urandom of=/tmp/r bs=1k count=256 && base64 /tmp/r"}},
}

// Names lists every image Build can make, sorted.
func Names() []string {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Cmd returns the command an image runs (its Cmd), for tests that check what came back.
func Cmd(name string) ([]string, error) {
	s, ok := scenarios[name]
	if !ok {
		return nil, fmt.Errorf("testimages: unknown image %q (have %v)", name, Names())
	}
	return slices.Clone(s.cmd), nil
}
