package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/deployme/deployme/api/v1"
)

// recordingAPI is a fake API that answers an empty cluster list and the version catalog,
// accepts only the tokens it is given, and records which token each call carried.
type recordingAPI struct {
	*httptest.Server
	valid map[string]bool

	mu     sync.Mutex
	tokens []string
}

func newRecordingAPI(t *testing.T, valid ...string) *recordingAPI {
	r := &recordingAPI{valid: map[string]bool{}}
	for _, v := range valid {
		r.valid[v] = true
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tok := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
		r.mu.Lock()
		r.tokens = append(r.tokens, tok)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !r.valid[tok] {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(v1.Error{Code: v1.CodeUnauthorized, Message: "invalid or revoked token"})
			return
		}
		switch req.URL.Path {
		case "/v1/clusters":
			json.NewEncoder(w).Encode(v1.ClusterList{Items: []v1.Cluster{}, Page: 1, PerPage: 20})
		case "/v1/kubernetes/versions":
			json.NewEncoder(w).Encode(v1.KubernetesVersionList{Items: []v1.KubernetesVersion{{Version: "v1.37.2", Default: true}}})
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(v1.Error{Code: v1.CodeNotFound, Message: "no such path"})
		}
	}))
	t.Cleanup(r.Close)
	return r
}

// seen returns and forgets the tokens of the calls so far.
func (r *recordingAPI) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.tokens
	r.tokens = nil
	return out
}

func writeConfig(t *testing.T, path, api, token string) {
	t.Helper()
	if err := saveConfig(path, fileConfig{API: api, Token: token}); err != nil {
		t.Fatal(err)
	}
}

// TestSettingsPrecedence: a flag beats its environment variable, which beats the config
// file; and the saved token only ever goes to the saved API.
func TestSettingsPrecedence(t *testing.T) {
	saved := newRecordingAPI(t, "saved-token", "env-token", "flag-token")
	other := newRecordingAPI(t, "saved-token", "env-token", "flag-token")
	home := t.TempDir()
	writeConfig(t, filepath.Join(home, ".config", "deployme", "config.yaml"), saved.URL, "saved-token")

	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantSaved []string // tokens the saved API saw
		wantOther []string // tokens the other API saw
		wantCode  int
	}{
		{name: "config file only", wantSaved: []string{"saved-token"}},
		{name: "env token beats the file", env: map[string]string{"DEPLOYME_TOKEN": "env-token"}, wantSaved: []string{"env-token"}},
		{name: "flag token beats env", env: map[string]string{"DEPLOYME_TOKEN": "env-token"}, args: []string{"--token", "flag-token"}, wantSaved: []string{"flag-token"}},
		{name: "env API beats the file, and gets no saved token", env: map[string]string{"DEPLOYME_API": "OTHER"}, wantOther: []string{""}, wantCode: exitError},
		{name: "flag API beats env", env: map[string]string{"DEPLOYME_API": "OTHER", "DEPLOYME_TOKEN": "env-token"}, args: []string{"--api", "SAVED"}, wantSaved: []string{"env-token"}},
		{name: "the saved API with a trailing slash keeps the saved token", args: []string{"--api", "SAVED/"}, wantSaved: []string{"saved-token"}},
		{name: "another API with its own token", args: []string{"--api", "OTHER", "--token", "flag-token"}, wantOther: []string{"flag-token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"HOME": home}
			urls := strings.NewReplacer("SAVED", saved.URL, "OTHER", other.URL)
			for k, v := range tc.env {
				env[k] = urls.Replace(v)
			}
			args := []string{"cluster", "list"}
			for _, a := range tc.args {
				args = append(args, urls.Replace(a))
			}
			got := cli{env: env}.run(args...)
			if got.code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr: %s", got.code, tc.wantCode, got.stderr)
			}
			if diff := cmp.Diff(tc.wantSaved, saved.seen()); diff != "" {
				t.Errorf("tokens sent to the saved API (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantOther, other.seen()); diff != "" {
				t.Errorf("tokens sent to the other API (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigPath(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"HOME", map[string]string{"HOME": "/home/u"}, nil, "/home/u/.config/deployme/config.yaml"},
		{"XDG_CONFIG_HOME wins over HOME", map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "/xdg"}, nil, "/xdg/deployme/config.yaml"},
		{"a relative XDG_CONFIG_HOME is ignored, as the spec says", map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "xdg"}, nil, "/home/u/.config/deployme/config.yaml"},
		{"DEPLOYME_CONFIG wins over both", map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "/xdg", "DEPLOYME_CONFIG": "/etc/d.yaml"}, nil, "/etc/d.yaml"},
		{"--config wins over everything", map[string]string{"DEPLOYME_CONFIG": "/etc/d.yaml"}, []string{"--config", "/tmp/c.yaml"}, "/tmp/c.yaml"},
		{"nothing known", map[string]string{}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApp(nil, nil, func(k string) string { return tc.env[k] })
			root := a.newRoot()
			if err := root.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			if got := a.configPath(); got != tc.want {
				t.Errorf("configPath = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLogin: login checks the token before saving anything, then saves both in a private
// file that later commands use.
func TestLogin(t *testing.T) {
	api := newRecordingAPI(t, "good")
	xdg := t.TempDir()
	env := map[string]string{"HOME": t.TempDir(), "XDG_CONFIG_HOME": xdg}
	path := filepath.Join(xdg, "deployme", "config.yaml")

	got := cli{env: env}.run("login", "--api", api.URL, "--token", "bad")
	if got.code != exitError || !strings.Contains(got.stderr, "error: unauthorized: ") {
		t.Errorf("login with a bad token: exit %d, stderr %q; want 1 and the API's error", got.code, got.stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a failed login wrote %s (stat: %v)", path, err)
	}

	got = cli{env: env}.run("login", "--token", "good")
	if got.code != exitUsage {
		t.Errorf("login without an API: exit %d, want 2; stderr %q", got.code, got.stderr)
	}

	got = cli{env: env}.run("login", "--api", api.URL+"/", "--token", "good")
	if got.code != exitOK {
		t.Fatalf("login: exit %d, stderr %q", got.code, got.stderr)
	}
	if want := "Logged in to " + api.URL + "/; saved to " + path + "\n"; got.stdout != want {
		t.Errorf("stdout = %q, want %q", got.stdout, want)
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700 | os.ModeDir, path: 0o600} {
		if st, err := os.Stat(p); err != nil {
			t.Error(err)
		} else if st.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, st.Mode(), want)
		}
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fileConfig{API: api.URL, Token: "good"}, cfg); diff != "" {
		t.Errorf("saved config (-want +got):\n%s", diff)
	}
	api.seen()
	if got := (cli{env: env}).run("cluster", "list"); got.code != exitOK {
		t.Errorf("cluster list after login: exit %d, stderr %q", got.code, got.stderr)
	}
	if diff := cmp.Diff([]string{"good"}, api.seen()); diff != "" {
		t.Errorf("token used after login (-want +got):\n%s", diff)
	}
}

// TestLoginTightensExistingDir: a config directory that already exists, readable by others,
// is made private when a token is saved in it.
func TestLoginTightensExistingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deployme")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("api: http://old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, path, "http://new", "tok")
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		if st, err := os.Stat(p); err != nil {
			t.Error(err)
		} else if st.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, st.Mode(), want)
		}
	}
}

func TestBadConfigFile(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, ".config", "deployme", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("api: http://x\nendpoint: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := cli{env: map[string]string{"HOME": home}}.run("cluster", "list")
	if got.code != exitError || !strings.Contains(got.stderr, path) {
		t.Errorf("exit %d, stderr %q; want 1 naming the file", got.code, got.stderr)
	}
}

func TestBadAPIAddress(t *testing.T) {
	got := cli{env: map[string]string{}}.run("cluster", "list", "--api", "127.0.0.1:8080")
	if got.code != exitUsage || !strings.Contains(got.stderr, `invalid API address "127.0.0.1:8080"`) {
		t.Errorf("exit %d, stderr %q; want 2 and the address", got.code, got.stderr)
	}
}
