package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// ExecUser is the identity the command runs with.
type ExecUser struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups (setgroups)
	Home     string   // for HOME; "/" when the user has no passwd entry
}

// ErrNoUser and ErrNoGroup report a user or group name that the image's files do not have.
var (
	ErrNoUser  = errors.New("no matching entries in passwd file")
	ErrNoGroup = errors.New("no matching entries in group file")
)

// maxUserFile bounds how much of /etc/passwd or /etc/group is read.
const maxUserFile = 16 << 20

// ResolveUserFiles resolves spec against the passwd and group files at the given paths (the
// image's /etc/passwd and /etc/group). A missing file is treated as empty, as Docker does.
func ResolveUserFiles(spec, passwdPath, groupPath string) (ExecUser, error) {
	passwd, err := readUserFile(passwdPath)
	if err != nil {
		return ExecUser{}, err
	}
	group, err := readUserFile(groupPath)
	if err != nil {
		return ExecUser{}, err
	}
	return ResolveUser(spec, passwd, group)
}

// readUserFile returns the file's content, or nil if it does not exist.
func readUserFile(path string) ([]byte, error) {
	b, err := readFile(path, maxUserFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("user: %w", err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// ResolveUser resolves a Docker user spec ("", "name", "uid", "name:group", "uid:gid",
// "name:gid", "uid:group") against passwd and group file contents (nil = file absent), with
// the rules of runc/moby's GetExecUser that docker run applies:
//
//   - the default is uid 0, gid 0, home "/"; an empty spec looks up uid 0's entry;
//   - the user part matches a passwd entry by uid if numeric, else by name; the first match
//     gives uid, primary gid and home. A name with no entry is an error; a number with no
//     entry is used as is (gid 0, home "/");
//   - an explicit group part matches a group entry by gid if numeric, else by name, and sets
//     the primary gid; then no supplementary groups are set. An unknown name is an error;
//   - without a group part, the supplementary groups are every group listing the matched
//     user name as a member.
func ResolveUser(spec string, passwd, group []byte) (ExecUser, error) {
	u := ExecUser{Home: "/"}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	userID, userNumeric, err := parseID(userPart)
	if err != nil {
		return ExecUser{}, fmt.Errorf("user %q: %w", spec, err)
	}
	groupID, groupNumeric, err := parseID(groupPart)
	if err != nil {
		return ExecUser{}, fmt.Errorf("group %q: %w", spec, err)
	}
	if userPart == "" {
		userNumeric, userID = true, 0
	}

	var matched *passwdEntry
	for e := range passwdEntries(passwd) {
		if (userNumeric && e.uid == userID) || (!userNumeric && e.name == userPart) {
			matched = &e
			break
		}
	}
	switch {
	case matched != nil:
		u.UID, u.GID, u.Home = matched.uid, matched.gid, matched.home
	case !userNumeric:
		return ExecUser{}, fmt.Errorf("unable to find user %s: %w", userPart, ErrNoUser)
	default:
		u.UID = userID
	}

	if hasGroup && groupPart != "" {
		found := false
		for e := range groupEntries(group) {
			if (groupNumeric && e.gid == groupID) || (!groupNumeric && e.name == groupPart) {
				u.GID, found = e.gid, true
				break
			}
		}
		if !found {
			if !groupNumeric {
				return ExecUser{}, fmt.Errorf("unable to find group %s: %w", groupPart, ErrNoGroup)
			}
			u.GID = groupID
		}
		return u, nil
	}
	if matched != nil {
		for e := range groupEntries(group) {
			for _, member := range e.members {
				if member == matched.name {
					u.Groups = append(u.Groups, e.gid)
					break
				}
			}
		}
	}
	return u, nil
}

// parseID reports whether s is a uid/gid number and its value. Like moby, a number outside
// 0..MaxInt32 is an error rather than a name.
func parseID(s string) (uint32, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, true, fmt.Errorf("id %s out of range 0..%d", s, math.MaxInt32)
		}
		return 0, false, nil // a name
	}
	if n < 0 || n > math.MaxInt32 {
		return 0, true, fmt.Errorf("id %s out of range 0..%d", s, math.MaxInt32)
	}
	return uint32(n), true, nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// fields splits a line on ':' into exactly n fields, padding with "".
func fields(line []byte, n int) []string {
	parts := strings.SplitN(string(line), ":", n)
	for len(parts) < n {
		parts = append(parts, "")
	}
	return parts
}

// atoid parses a uid/gid field; an invalid field reads as 0, as in moby's parseLine.
func atoid(s string) uint32 {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > math.MaxInt32 {
		return 0
	}
	return uint32(n)
}

// lines yields the non-empty, space-trimmed lines of b.
func lines(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		s := bufio.NewScanner(bytes.NewReader(b))
		s.Buffer(nil, len(b)+1)
		for s.Scan() {
			if line := bytes.TrimSpace(s.Bytes()); len(line) > 0 && !yield(line) {
				return
			}
		}
	}
}

// passwdEntries yields passwd(5) entries: name:password:uid:gid:gecos:home:shell.
func passwdEntries(b []byte) func(func(passwdEntry) bool) {
	return func(yield func(passwdEntry) bool) {
		for line := range lines(b) {
			f := fields(line, 7)
			if !yield(passwdEntry{name: f[0], uid: atoid(f[2]), gid: atoid(f[3]), home: f[5]}) {
				return
			}
		}
	}
}

// groupEntries yields group(5) entries: name:password:gid:member,member.
func groupEntries(b []byte) func(func(groupEntry) bool) {
	return func(yield func(groupEntry) bool) {
		for line := range lines(b) {
			f := fields(line, 4)
			var members []string
			if f[3] != "" {
				members = strings.Split(f[3], ",")
			}
			if !yield(groupEntry{name: f[0], gid: atoid(f[2]), members: members}) {
				return
			}
		}
	}
}
