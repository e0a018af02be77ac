package guest

import "strings"

// DefaultPath is the PATH Docker gives a Linux container whose config does not set one
// (moby oci.DefaultPathEnv).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BuildEnv returns the command's environment the way Docker builds it:
//
//  1. the daemon's defaults, PATH=DefaultPath then HOSTNAME=hostname
//     (container.CreateDaemonEnvironment);
//  2. the config's KEY=VALUE entries (image Env with -e overrides already merged) replace a
//     default of the same name in place or are appended, in order (ReplaceOrAppendEnvValues;
//     like Docker, a key repeated in config is appended twice, not merged);
//  3. HOME is set from the user's passwd entry when it is unset or empty (runc's setupUser),
//     "/" when the user has no entry.
func BuildEnv(config []string, hostname, home string) []string {
	env := make([]string, 0, len(config)+3)
	env = append(env, "PATH="+DefaultPath, "HOSTNAME="+hostname)
	defaults := map[string]int{"PATH": 0, "HOSTNAME": 1}
	for _, kv := range config {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			// A bare KEY unsets a default (Docker); the host resolves "-e KEY" itself, so this
			// only happens for an image Env entry without "=".
			if i, found := defaults[kv]; found {
				env[i] = ""
			}
			continue
		}
		if i, found := defaults[k]; found {
			env[i] = kv
			continue
		}
		env = append(env, kv)
	}
	out := env[:0]
	for _, kv := range env {
		if kv != "" {
			out = append(out, kv)
		}
	}
	if home == "" {
		home = "/"
	}
	for i, kv := range out {
		if k, v, _ := strings.Cut(kv, "="); k == "HOME" {
			if v == "" {
				out[i] = "HOME=" + home
			}
			return out
		}
	}
	return append(out, "HOME="+home)
}

// lookupEnv returns the value of key in env (the first entry wins, as in libc getenv).
func lookupEnv(env []string, key string) (string, bool) {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
