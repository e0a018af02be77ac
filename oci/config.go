package oci

import (
	"fmt"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Config is the part of an image config (OCI image-spec config.md, "config" object) that
// decides how the benchmark command runs.
type Config struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`         // KEY=VALUE, in image order
	WorkingDir string   `json:"working_dir,omitempty"` // "" in an image means "/"
	User       string   `json:"user,omitempty"`        // user[:group], names or numbers, as in the image
}

// configFrom copies the run-relevant fields out of a v1 config file.
func configFrom(cf *v1.ConfigFile) Config {
	c := cf.Config
	return Config{
		Entrypoint: clone(c.Entrypoint),
		Cmd:        clone(c.Cmd),
		Env:        clone(c.Env),
		WorkingDir: c.WorkingDir,
		User:       c.User,
	}
}

// Overrides are the command-line changes to an image config, with docker run's meaning.
type Overrides struct {
	Entrypoint    []string // replaces the image Entrypoint when EntrypointSet
	EntrypointSet bool     // an entrypoint override was given (it may be empty: "--entrypoint ''")
	Cmd           []string // replaces the image Cmd when CmdSet
	CmdSet        bool
	Env           []string // KEY=VALUE merged over the image Env; a bare KEY removes it
	WorkingDir    string   // absolute; "" keeps the image's
	User          string   // "" keeps the image's
}

// Apply returns the effective config after o, with Docker's semantics: overriding the
// entrypoint clears the image Cmd (unless Cmd is overridden too), a Cmd override replaces Cmd,
// Env entries replace same-named image entries in place and new ones are appended, and an
// empty WorkingDir becomes "/". The result's WorkingDir is never empty. An Env entry with an
// empty key or a relative WorkingDir is an error.
func (c Config) Apply(o Overrides) (Config, error) {
	out := Config{
		Entrypoint: clone(c.Entrypoint),
		Cmd:        clone(c.Cmd),
		WorkingDir: c.WorkingDir,
		User:       c.User,
	}
	if o.EntrypointSet {
		out.Entrypoint = clone(o.Entrypoint)
		out.Cmd = nil
	}
	if o.CmdSet {
		out.Cmd = clone(o.Cmd)
	}
	env, err := MergeEnv(c.Env, o.Env)
	if err != nil {
		return Config{}, err
	}
	out.Env = env
	if o.WorkingDir != "" {
		out.WorkingDir = o.WorkingDir
	}
	if out.WorkingDir == "" {
		out.WorkingDir = "/"
	}
	if !path.IsAbs(out.WorkingDir) {
		return Config{}, fmt.Errorf("oci: working directory %q is not absolute", out.WorkingDir)
	}
	if o.User != "" {
		out.User = o.User
	}
	return out, nil
}

// Argv is the command line the image runs: Entrypoint followed by Cmd.
func (c Config) Argv() []string {
	argv := make([]string, 0, len(c.Entrypoint)+len(c.Cmd))
	argv = append(argv, c.Entrypoint...)
	return append(argv, c.Cmd...)
}

// MergeEnv applies overrides (KEY=VALUE, or a bare KEY to remove it) over base. A key set in
// base keeps its position; new keys are appended in override order; later duplicates win.
func MergeEnv(base, overrides []string) ([]string, error) {
	out := clone(base)
	index := make(map[string]int, len(out))
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, kv := range overrides {
		k, _, hasValue := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("oci: env %q: empty variable name", kv)
		}
		i, exists := index[k]
		switch {
		case !hasValue && exists:
			out = append(out[:i], out[i+1:]...)
			delete(index, k)
			for j := i; j < len(out); j++ {
				kj, _, _ := strings.Cut(out[j], "=")
				index[kj] = j
			}
		case !hasValue:
			// Removing a variable the image does not set changes nothing.
		case exists:
			out[i] = kv
		default:
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	return out, nil
}

func clone(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}
