package guest

import (
	"errors"
	"reflect"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

app:x:1000:1000:App User:/home/app:/bin/sh
  other:x:1001:100::/home/other:/bin/sh  
dup:x:1002:1002::/first:/bin/sh
dup:x:1003:1003::/second:/bin/sh
broken:x:notanumber:7::/b:/bin/sh
`

const testGroup = `root:x:0:root
wheel:x:10:root,app
app:x:1000:
users:x:100:other,app
video:x:44:app
empty:x:500:
`

// Expectations follow docker run --user (Docker docs "USER" and "--user"; moby/sys/user
// GetExecUser semantics): name or uid, optional group, supplementary groups from
// /etc/group only without an explicit group.
func TestResolveUserLikeDocker(t *testing.T) {
	tests := []struct {
		spec string
		want ExecUser
		err  error
	}{
		{"", ExecUser{UID: 0, GID: 0, Groups: []uint32{0, 10}, Home: "/root"}, nil},
		{"root", ExecUser{UID: 0, GID: 0, Groups: []uint32{0, 10}, Home: "/root"}, nil},
		{"app", ExecUser{UID: 1000, GID: 1000, Groups: []uint32{10, 100, 44}, Home: "/home/app"}, nil},
		{"1000", ExecUser{UID: 1000, GID: 1000, Groups: []uint32{10, 100, 44}, Home: "/home/app"}, nil},
		{"other", ExecUser{UID: 1001, GID: 100, Groups: []uint32{100}, Home: "/home/other"}, nil},
		{"app:users", ExecUser{UID: 1000, GID: 100, Home: "/home/app"}, nil},
		{"app:44", ExecUser{UID: 1000, GID: 44, Home: "/home/app"}, nil},
		{"app:4242", ExecUser{UID: 1000, GID: 4242, Home: "/home/app"}, nil},
		{"app:", ExecUser{UID: 1000, GID: 1000, Groups: []uint32{10, 100, 44}, Home: "/home/app"}, nil},
		{"4242", ExecUser{UID: 4242, GID: 0, Home: "/"}, nil},
		{"4242:4343", ExecUser{UID: 4242, GID: 4343, Home: "/"}, nil},
		{"4242:video", ExecUser{UID: 4242, GID: 44, Home: "/"}, nil},
		{"dup", ExecUser{UID: 1002, GID: 1002, Home: "/first"}, nil}, // first match wins
		{"broken", ExecUser{UID: 0, GID: 7, Home: "/b"}, nil},        // bad number reads as 0
		{"nobody", ExecUser{}, ErrNoUser},
		{"app:nogroup", ExecUser{}, ErrNoGroup},
		{"99999999999", ExecUser{}, nil}, // out of range: an error, not a name
		{"-1", ExecUser{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ResolveUser(tt.spec, []byte(testPasswd), []byte(testGroup))
			wantErr := tt.err != nil || tt.spec == "99999999999" || tt.spec == "-1"
			if wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				if tt.err != nil && !errors.Is(err, tt.err) {
					t.Fatalf("got error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Without /etc/passwd and /etc/group (scratch images), numbers work and names do not.
func TestResolveUserWithoutFiles(t *testing.T) {
	for spec, want := range map[string]ExecUser{
		"":          {Home: "/"},
		"0":         {Home: "/"},
		"1000":      {UID: 1000, Home: "/"},
		"1000:1000": {UID: 1000, GID: 1000, Home: "/"},
	} {
		got, err := ResolveUser(spec, nil, nil)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %+v, %v; want %+v", spec, got, err, want)
		}
	}
	for _, spec := range []string{"root", "1000:staff"} {
		if _, err := ResolveUser(spec, nil, nil); err == nil {
			t.Errorf("%q resolved without files", spec)
		}
	}
}

func TestResolveUserFiles(t *testing.T) {
	dir := t.TempDir()
	u, err := ResolveUserFiles("", dir+"/passwd", dir+"/group")
	if err != nil || u.UID != 0 || u.Home != "/" {
		t.Fatalf("missing files: %+v, %v", u, err)
	}
}
