package steps

import (
	"io/fs"
	"regexp"
	"testing"

	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

func TestValidateFilePath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/etc/kubernetes/pki/ca.crt", true},
		{"/etc/kubernetes/pki/etcd/ca.key", true},
		{"/etc/deployme/cni.yaml", true},
		{"", false},
		{"etc/deployme/cni.yaml", false},
		{"/etc/deployme", false},
		{"/etc/deployme/", false},
		{"/etc/kubernetes/pki", false},
		{"/etc/deployme/../passwd", false},
		{"/etc/kubernetes/pki/../../shadow", false},
		{"/etc/kubernetes/pki/./ca.crt", false},
		{"//etc/deployme/cni.yaml", false},
		{"/etc/deployme//cni.yaml", false},
		{"/etc/deploymex/cni.yaml", false},
		{"/etc/kubernetes/admin.conf", false},
		{"/etc/passwd", false},
		{"/etc/deployme/cni\x00.yaml", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := validateFilePath(tt.path)
			if (err == nil) != tt.ok {
				t.Fatalf("validateFilePath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
			}
			if err != nil && reasonOf(err) != reasonInvalidParams {
				t.Fatalf("reason %q, want %q", reasonOf(err), reasonInvalidParams)
			}
		})
	}
}

func TestFileMode(t *testing.T) {
	tests := []struct {
		path string
		mode uint32
		want fs.FileMode
		ok   bool
	}{
		{"/etc/kubernetes/pki/ca.crt", 0, 0o644, true},
		{"/etc/kubernetes/pki/ca.key", 0, 0o600, true},
		{"/etc/kubernetes/pki/ca.key", 0o644, 0o600, true},
		{"/etc/kubernetes/pki/ca.key", 0o400, 0o400, true},
		{"/etc/deployme/cni.yaml", 0o640, 0o640, true},
		{"/etc/deployme/cni.yaml", 0o777, 0o777, true},
		{"/etc/deployme/cni.yaml", 0o1777, 0, false},
		{"/etc/deployme/cni.yaml", 0o4755, 0, false},
		{"/etc/deployme/cni.yaml", 1 << 31, 0, false},
	}
	for _, tt := range tests {
		got, err := fileMode(tt.path, tt.mode)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("fileMode(%s, %#o) = %#o, %v; want %#o, ok=%v", tt.path, tt.mode, got, err, tt.want, tt.ok)
		}
	}
}

func TestValidateFilesRefusesDuplicatesAndNil(t *testing.T) {
	all := func(string) bool { return true }
	f := &agentv1.File{Path: "/etc/deployme/cni.yaml", Content: []byte("x")}
	for name, files := range map[string][]*agentv1.File{
		"duplicate": {f, f},
		"nil":       {nil},
	} {
		if _, err := validateFiles(files, all); reasonOf(err) != reasonInvalidParams {
			t.Errorf("%s: err %v, want invalid_params", name, err)
		}
	}
}

func TestNewBootstrapToken(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	seen := map[string]bool{}
	for range 1000 {
		tok := newBootstrapToken()
		if !re.MatchString(tok) {
			t.Fatalf("token %q does not match %s", tok, re)
		}
		if seen[tok] {
			t.Fatalf("token %q generated twice", tok)
		}
		seen[tok] = true
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"zero root means /", func(c *Config) { c.Root = "" }, true},
		{"relative root", func(c *Config) { c.Root = "host" }, false},
		{"unclean root", func(c *Config) { c.Root = "/tmp/../x/" }, false},
		{"no state dir", func(c *Config) { c.StateDir = "" }, false},
		{"negative poll", func(c *Config) { c.ReadyPoll = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestActiveSwaps(t *testing.T) {
	tests := []struct {
		name    string
		content *string
		want    int
	}{
		{"no /proc/swaps", nil, 0},
		{"header only", ptr("Filename\tType\tSize\tUsed\tPriority\n"), 0},
		{"one area", ptr("Filename\tType\tSize\tUsed\tPriority\n/dev/zram0 partition 4194300 0 100\n"), 1},
		{"two areas, blank line", ptr("Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1 0 -2\n\n/dev/sda2 partition 1 0 -3\n"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.content != nil {
				writeHostFile(t, root, procSwaps, *tt.content, 0o444)
			}
			got, err := activeSwaps(rootFiles{root: root})
			if err != nil || len(got) != tt.want {
				t.Fatalf("activeSwaps = %v, %v; want %d areas", got, err, tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
