package kubestore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fake is the content of a fake binary, as coordinator --dev seeds them.
func fake(name, version string) string {
	return "fake-kube-binary\nname=" + name + "\nversion=" + version + "\n"
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// writeFiles writes files (slash paths relative to dir) with mode 0755.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// version writes the three fake binaries of v under dir.
func version(t testing.TB, dir, v string) {
	t.Helper()
	files := map[string]string{}
	for _, n := range Names {
		files[v+"/linux-amd64/"+n] = fake(n, v)
	}
	writeFiles(t, dir, files)
}

func newStore(t testing.TB, dir string) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = dir
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wantBinaries(v string) map[string]Artifact {
	out := map[string]Artifact{}
	for _, n := range Names {
		c := fake(n, v)
		out[n] = Artifact{Name: n, Version: v, SHA256: sha(c), Size: int64(len(c))}
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"default with a dir", func(c *Config) { c.Dir = "/srv/kube" }, ""},
		{"no dir", func(c *Config) {}, "--kube-artifacts"},
		{"negative rescan interval", func(c *Config) { c.Dir, c.RescanInterval = "/srv/kube", -time.Second }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRefusesUnreadableDir(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	writeFiles(t, dir, map[string]string{"file": "x"})
	for _, d := range []string{filepath.Join(dir, "missing"), notDir} {
		cfg := DefaultConfig()
		cfg.Dir = d
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%s) succeeded, want an error", d)
		} else if !strings.Contains(err.Error(), d) {
			t.Errorf("New(%s) = %v, want the error to name the directory", d, err)
		}
	}
}

func TestBinaries(t *testing.T) {
	dir := t.TempDir()
	version(t, dir, "v1.37.2")
	version(t, dir, "v1.38.0")
	writeFiles(t, dir, map[string]string{
		"v1.39.0/linux-amd64/kubeadm": "a", "v1.39.0/linux-amd64/kubectl": "c", // no kubelet
		"v1.40.0/linux-amd64/kubeadm": "a", "v1.40.0/linux-amd64/kubectl": "c",
		"v1.40.0/linux-amd64/kubelet/oops": "a directory where the kubelet should be",
		"v1.41.0/README":                   "no platform directory",
	})
	s := newStore(t, dir)
	tests := []struct {
		version string
		want    map[string]Artifact
		wantErr error
		// wantMsg is in the error: the path the operator should fill.
		wantMsg string
	}{
		{version: "v1.37.2", want: wantBinaries("v1.37.2")},
		{version: "v1.38.0", want: wantBinaries("v1.38.0")},
		{version: "v1.36.0", wantErr: ErrNotFound, wantMsg: filepath.Join(dir, "v1.36.0", "linux-amd64", "{kubeadm,kubectl,kubelet}")},
		{version: "v1.41.0", wantErr: ErrNotFound, wantMsg: filepath.Join(dir, "v1.41.0", "linux-amd64")},
		{version: "v1.39.0", wantErr: ErrNotFound, wantMsg: "kubelet of Kubernetes v1.39.0 is not in the Kubernetes artifact store: want it at " + filepath.Join(dir, "v1.39.0", "linux-amd64", "kubelet")},
		{version: "v1.40.0", wantMsg: filepath.Join(dir, "v1.40.0", "linux-amd64", "kubelet") + " is not a regular file"},
		{version: "1.38.0", wantErr: ErrBadVersion},
		{version: "v1.38", wantErr: ErrBadVersion},
		{version: "v1.38.0-rc.1", wantErr: ErrBadVersion},
		{version: "v1.38.0\n", wantErr: ErrBadVersion},
		{version: "V1.38.0", wantErr: ErrBadVersion},
		{version: "../v1.38.0", wantErr: ErrBadVersion},
		{version: "v1.38.0/..", wantErr: ErrBadVersion},
		{version: "", wantErr: ErrBadVersion},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			got, err := s.Binaries(tc.version)
			if tc.wantErr == nil && tc.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("Binaries (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Binaries(%q) = %v, want an error", tc.version, got)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
		})
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"kubelet": "not in the store"})
	// v1.10.0 sorts after v1.9.0: versions compare as numbers.
	version(t, dir, "v1.10.0")
	version(t, dir, "v1.9.0")
	writeFiles(t, dir, map[string]string{
		"v1.11.0/linux-amd64/kubeadm":       fake("kubeadm", "v1.11.0"),
		"not-a-version/linux-amd64/kubeadm": "ignored",
		"v1.12/linux-amd64/kubeadm":         "ignored",
	})
	if err := os.Symlink(filepath.Join(outside, "kubelet"), filepath.Join(dir, "v1.11.0/linux-amd64/kubelet")); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dir)
	got, err := s.List()
	if err == nil || !strings.Contains(err.Error(), "kubelet of Kubernetes v1.11.0") {
		t.Errorf("List error %v, want one naming the kubelet of v1.11.0 (a link out of the store)", err)
	}
	var want []Artifact
	for _, v := range []string{"v1.9.0", "v1.10.0"} {
		for _, n := range Names {
			want = append(want, wantBinaries(v)[n])
		}
	}
	want = append(want, Artifact{Name: "kubeadm", Version: "v1.11.0", SHA256: sha(fake("kubeadm", "v1.11.0")), Size: int64(len(fake("kubeadm", "v1.11.0")))})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

// TestSymlinks: a link inside the store is followed (an operator may share a binary between
// versions); a link out of it, of a binary or of a whole version, is refused.
func TestSymlinks(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	version(t, outside, "v1.38.0")
	version(t, dir, "v1.37.2")
	writeFiles(t, dir, map[string]string{
		"v1.37.3/linux-amd64/kubeadm": fake("kubeadm", "v1.37.3"),
		"v1.37.3/linux-amd64/kubelet": fake("kubelet", "v1.37.3"),
		"v1.37.4/linux-amd64/kubeadm": fake("kubeadm", "v1.37.4"),
		"v1.37.4/linux-amd64/kubelet": fake("kubelet", "v1.37.4"),
	})
	links := map[string]string{
		"v1.37.3/linux-amd64/kubectl": "../../v1.37.2/linux-amd64/kubectl",                   // inside
		"v1.37.4/linux-amd64/kubectl": filepath.Join(outside, "v1.38.0/linux-amd64/kubectl"), // out, absolute
		"v1.38.0":                     filepath.Join(outside, "v1.38.0"),                     // a whole version out
		"v1.38.1":                     "../" + filepath.Base(outside) + "/v1.38.0",           // out, relative
	}
	for rel, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, dir)
	if got, err := s.Binaries("v1.37.3"); err != nil {
		t.Errorf("a link inside the store: %v", err)
	} else if got["kubectl"].SHA256 != sha(fake("kubectl", "v1.37.2")) {
		t.Errorf("kubectl through a link inside the store: %+v", got["kubectl"])
	}
	for _, v := range []string{"v1.37.4", "v1.38.0", "v1.38.1"} {
		got, err := s.Binaries(v)
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "escapes") {
			t.Errorf("Binaries(%s) through a link out of the store = %v, %v; want it refused as escaping", v, got, err)
		}
	}
}

// TestHashCache: a binary is read once however often it is asked for, and read again
// whenever it is replaced, in any of the ways an operator can replace it.
func TestHashCache(t *testing.T) {
	const v = "v1.38.0"
	kubeadm := func(dir string) string { return filepath.Join(dir, v, "linux-amd64", "kubeadm") }
	tests := []struct {
		name    string
		replace func(t *testing.T, dir string) string // returns the new content
	}{
		{"renamed over", func(t *testing.T, dir string) string {
			tmp := filepath.Join(dir, "new")
			writeFiles(t, dir, map[string]string{"new": "new kubeadm"})
			if err := os.Rename(tmp, kubeadm(dir)); err != nil {
				t.Fatal(err)
			}
			return "new kubeadm"
		}},
		{"rewritten in place, another size", func(t *testing.T, dir string) string {
			writeFiles(t, dir, map[string]string{v + "/linux-amd64/kubeadm": "longer new kubeadm content"})
			return "longer new kubeadm content"
		}},
		{"rewritten in place, same size, old mtime put back", func(t *testing.T, dir string) string {
			p := kubeadm(dir)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			content := strings.Repeat("X", int(fi.Size()))
			writeFiles(t, dir, map[string]string{v + "/linux-amd64/kubeadm": content})
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			return content
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			version(t, dir, v)
			s := newStore(t, dir)
			for range 3 {
				if _, err := s.Binaries(v); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.List(); err != nil {
				t.Fatal(err)
			}
			if n := s.reads.Load(); n != 3 {
				t.Fatalf("%d files read for three calls, want 3 (one per binary)", n)
			}
			content := tc.replace(t, dir)
			got, err := s.Binaries(v)
			if err != nil {
				t.Fatal(err)
			}
			if got["kubeadm"].SHA256 != sha(content) || got["kubeadm"].Size != int64(len(content)) {
				t.Errorf("after replacing kubeadm: %+v, want sha256 %s size %d", got["kubeadm"], sha(content), len(content))
			}
			if n := s.reads.Load(); n != 4 {
				t.Errorf("%d files read, want 4: only the replaced one again", n)
			}
		})
	}
}

// TestConcurrentBinaries: callers asking at once share one read of each file.
func TestConcurrentBinaries(t *testing.T) {
	dir := t.TempDir()
	version(t, dir, "v1.38.0")
	s := newStore(t, dir)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			got, err := s.Binaries("v1.38.0")
			if err != nil {
				t.Error(err)
				return
			}
			if diff := cmp.Diff(wantBinaries("v1.38.0"), got); diff != "" {
				t.Errorf("Binaries (-want +got):\n%s", diff)
			}
		})
	}
	wg.Wait()
	if n := s.reads.Load(); n != 3 {
		t.Errorf("%d files read by 16 concurrent callers, want 3", n)
	}
}
