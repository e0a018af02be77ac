package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vmbench/runner/internal/osthread"
	"github.com/vmbench/runner/protocol"
)

// Command is a resolved command, ready to start.
type Command struct {
	Path      string   // the executable, as found by PATH lookup (may be relative to Dir)
	Argv      []string // Argv[0] as given in the config
	Env       []string
	Dir       string
	User      ExecUser
	AllowPerf bool // leave perf_event_open allowed in the seccomp filter
}

// Failure is an error that stops a command before it runs, with the kind the host maps to
// an exit code.
type Failure struct {
	Kind protocol.FailureKind
	Err  error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Root names where the image's files are, for resolving a command. The init uses "/" (it
// runs inside the image); tests point it elsewhere.
type Root struct {
	Passwd, Group string // paths of the image's /etc/passwd and /etc/group
}

// SystemRoot is the root the init runs in.
var SystemRoot = Root{Passwd: "/etc/passwd", Group: "/etc/group"}

// Prepare resolves cfg as docker run would: the user from the image's files, the
// environment (BuildEnv), the working directory (created 0755 if missing, as the Docker
// daemon does), and the executable (PATH lookup like execvp). The returned error is always a
// *Failure.
func Prepare(cfg *protocol.RunConfig, root Root) (*Command, error) {
	if err := cfg.Validate(); err != nil {
		return nil, &Failure{protocol.FailureSetup, err}
	}
	user, err := ResolveUserFiles(cfg.User, root.Passwd, root.Group)
	if err != nil {
		return nil, &Failure{protocol.FailureSetup, err}
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = protocol.DefaultHostname
	}
	env := BuildEnv(cfg.Env, hostname, user.Home)
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, &Failure{protocol.FailureSetup, fmt.Errorf("working directory: %w", err)}
	}
	pathEnv, _ := lookupEnv(env, "PATH")
	exe, err := lookPath(cfg.Argv[0], pathEnv, cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	return &Command{Path: exe, Argv: cfg.Argv, Env: env, Dir: cfg.WorkDir, User: user, AllowPerf: cfg.AllowPerf}, nil
}

// lookPath finds name like execvp(3) with the command's PATH: a name containing '/' is used
// as is (relative to dir); otherwise each PATH entry is tried in order (an empty entry is the
// working directory). A file found without execute permission is remembered and reported
// only if no executable one follows, as execvp does.
func lookPath(name, pathEnv, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var denied string
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		abs := p
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(dir, abs)
		}
		st, err := os.Stat(abs)
		if err != nil || st.IsDir() {
			continue
		}
		if st.Mode()&0o111 == 0 {
			if denied == "" {
				denied = p
			}
			continue
		}
		return p, nil // a relative p is resolved by execve against dir, like abs here
	}
	if denied != "" {
		return "", &Failure{protocol.FailureCannotInvoke, fmt.Errorf("exec: %q: %w", denied, fs.ErrPermission)}
	}
	return "", &Failure{protocol.FailureNotFound, fmt.Errorf("exec: %q: executable file not found in $PATH", name)}
}

// startError classifies an error from starting the command: ENOENT (the file or its
// interpreter is missing) is "not found", every other exec error "cannot invoke".
func startError(err error) *Failure {
	if errors.Is(err, syscall.ENOENT) {
		return &Failure{protocol.FailureNotFound, err}
	}
	return &Failure{protocol.FailureCannotInvoke, err}
}

// start forks and execs c from a dedicated, hardened OS thread (see hardenThread), with
// stdin /dev/null, the given stdout and stderr, a new session, and c's user. It returns the
// process; the caller reaps it with wait4.
func (c *Command) start(stdout, stderr *os.File) (*os.Process, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, &Failure{protocol.FailureSetup, fmt.Errorf("stdin: %w", err)}
	}
	defer devnull.Close()
	groups := make([]uint32, len(c.User.Groups))
	copy(groups, c.User.Groups)
	attr := &os.ProcAttr{
		Dir:   c.Dir,
		Env:   c.Env,
		Files: []*os.File{devnull, stdout, stderr},
		Sys: &syscall.SysProcAttr{
			Setsid:     true,
			Credential: &syscall.Credential{Uid: c.User.UID, Gid: c.User.GID, Groups: groups},
		},
	}
	type started struct {
		p   *os.Process
		err error
	}
	done := make(chan started, 1)
	// The hardened thread must never run anything else: it is retired after the fork.
	osthread.RunDisposable(func() {
		if err := hardenThread(c.AllowPerf); err != nil {
			done <- started{err: &Failure{protocol.FailureSetup, err}}
			return
		}
		p, err := os.StartProcess(c.Path, c.Argv, attr)
		if err != nil {
			done <- started{err: startError(err)}
			return
		}
		done <- started{p: p}
	})
	s := <-done
	return s.p, s.err
}
