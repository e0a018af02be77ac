package guest

import (
	"slices"
	"testing"
)

// The expectations follow what `docker run` gives a container (docs: "docker run --env",
// "ENV" and "USER" references; behaviour of CreateDaemonEnvironment and runc's setupUser):
// PATH default first, HOSTNAME second, image/override variables after in order, HOME last
// unless set.
func TestBuildEnvLikeDocker(t *testing.T) {
	tests := []struct {
		name   string
		config []string
		home   string
		want   []string
	}{
		{
			name: "empty config gets the defaults",
			home: "/root",
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=h", "HOME=/root"},
		},
		{
			name:   "image PATH replaces the default in place",
			config: []string{"A=1", "PATH=/opt/bin:/usr/bin"},
			home:   "/root",
			want:   []string{"PATH=/opt/bin:/usr/bin", "HOSTNAME=h", "A=1", "HOME=/root"},
		},
		{
			name:   "HOME from the config wins",
			config: []string{"HOME=/work"},
			home:   "/root",
			want:   []string{"PATH=" + DefaultPath, "HOSTNAME=h", "HOME=/work"},
		},
		{
			name:   "empty HOME is replaced in place by the user's",
			config: []string{"HOME=", "X=y"},
			home:   "/home/app",
			want:   []string{"PATH=" + DefaultPath, "HOSTNAME=h", "HOME=/home/app", "X=y"},
		},
		{
			name:   "user without passwd entry gets HOME=/",
			config: []string{"MY_VAR=test_value"},
			home:   "",
			want:   []string{"PATH=" + DefaultPath, "HOSTNAME=h", "MY_VAR=test_value", "HOME=/"},
		},
		{
			name:   "HOSTNAME can be overridden",
			config: []string{"HOSTNAME=mine"},
			home:   "/",
			want:   []string{"PATH=" + DefaultPath, "HOSTNAME=mine", "HOME=/"},
		},
		{
			name:   "values keep '=' and spaces",
			config: []string{"A=b=c", "B= x "},
			home:   "/",
			want:   []string{"PATH=" + DefaultPath, "HOSTNAME=h", "A=b=c", "B= x ", "HOME=/"},
		},
		{
			name:   "a bare PATH entry unsets the default",
			config: []string{"PATH"},
			home:   "/",
			want:   []string{"HOSTNAME=h", "HOME=/"},
		},
		{
			name:   "repeated non-default keys are appended as Docker does",
			config: []string{"A=1", "A=2"},
			home:   "/",
			want:   []string{"PATH=" + DefaultPath, "HOSTNAME=h", "A=1", "A=2", "HOME=/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BuildEnv(tt.config, "h", tt.home); !slices.Equal(got, tt.want) {
				t.Errorf("BuildEnv(%q)\n got %q\nwant %q", tt.config, got, tt.want)
			}
		})
	}
}

func TestLookupEnv(t *testing.T) {
	env := []string{"A=1", "B=", "A=2"}
	if v, ok := lookupEnv(env, "A"); !ok || v != "1" {
		t.Errorf("A = %q %v, want first entry", v, ok)
	}
	if v, ok := lookupEnv(env, "B"); !ok || v != "" {
		t.Errorf("B = %q %v", v, ok)
	}
	if _, ok := lookupEnv(env, "C"); ok {
		t.Error("C found")
	}
}
