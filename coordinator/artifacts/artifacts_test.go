package artifacts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployme/deployme/api/apitest"
	"github.com/deployme/deployme/api/rest"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/units"
)

const linuxAmd64 = "/v1/agent/download?os=linux&arch=amd64"

// server serves the REST handler over the store; every answer is checked against
// api/openapi.yaml. The installation routes need no backend (no token is checked).
type server struct {
	t   *testing.T
	url string
	v   *apitest.Validator
}

func serve(t *testing.T, in rest.Installer) *server {
	t.Helper()
	cfg := rest.DefaultConfig()
	cfg.Installer = in
	srv := httptest.NewServer(rest.New(nil, cfg))
	t.Cleanup(srv.Close)
	return &server{t: t, url: srv.URL, v: apitest.NewValidator(t)}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) errorBody(t *testing.T) v1.Error {
	t.Helper()
	var e v1.Error
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("error body %q: %v", a.body, err)
	}
	return e
}

func (s *server) get(path string, header ...string) answer {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.v.Check("GET", path, resp.StatusCode, resp.Header, body); err != nil {
		s.t.Errorf("answer drifts from api/openapi.yaml:\n%v", err)
	}
	return answer{resp.StatusCode, resp.Header, body}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newStore(t *testing.T, binary string) *Store {
	t.Helper()
	s, err := New(Config{AgentBinary: binary, AdvertiseHTTP: "127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeBinary(t *testing.T, path string, content []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestDownload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent")
	content := bytes.Repeat([]byte("agent binary "), 10000)
	mtime := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	writeBinary(t, path, content, mtime)
	st := newStore(t, path)
	srv := serve(t, st)

	for range 3 {
		r := srv.get(linuxAmd64)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if !bytes.Equal(r.body, content) {
			t.Fatalf("body of %d bytes differs from the binary's %d", len(r.body), len(content))
		}
		for h, want := range map[string]string{
			"X-Checksum-Sha256":   sha(content),
			"Content-Type":        "application/octet-stream",
			"Content-Length":      "130000",
			"Content-Disposition": `attachment; filename="deployme-agent"`,
			"ETag":                `"sha256:` + sha(content) + `"`,
			"Last-Modified":       mtime.Format(http.TimeFormat),
		} {
			if got := r.header.Get(h); got != want {
				t.Errorf("%s %q, want %q", h, got, want)
			}
		}
	}
	r := srv.get("/v1/agent/download.sha256?os=linux&arch=amd64")
	if want := sha(content) + "  deployme-agent\n"; r.status != http.StatusOK || string(r.body) != want {
		t.Errorf("checksum: %d %q, want 200 %q", r.status, r.body, want)
	}
	if n := st.hashes.Load(); n != 1 {
		t.Errorf("the binary was hashed %d times for 4 answers, want once", n)
	}

	// What ServeContent adds: conditional requests answer 304 without the body. A range
	// gets the whole file: 206 is not in the contract, and the script never asks for one.
	for _, h := range [][]string{
		{"If-None-Match", `"sha256:` + sha(content) + `"`},
		{"If-Modified-Since", mtime.Add(time.Hour).Format(http.TimeFormat)},
	} {
		if r := srv.get(linuxAmd64, h...); r.status != http.StatusNotModified || len(r.body) != 0 {
			t.Errorf("%s: status %d with %d bytes, want 304 and none", h[0], r.status, len(r.body))
		}
	}
	if r := srv.get(linuxAmd64, "If-None-Match", `"sha256:other"`); r.status != http.StatusOK {
		t.Errorf("another ETag: status %d, want 200", r.status)
	}
	for _, h := range [][]string{{"Range", "bytes=0-9"}, {"If-Match", `"nope"`}, {"If-Unmodified-Since", mtime.Add(-time.Hour).Format(http.TimeFormat)}} {
		if r := srv.get(linuxAmd64, h...); r.status != http.StatusOK || !bytes.Equal(r.body, content) {
			t.Errorf("%s: status %d with %d bytes, want 200 and the whole binary", h[0], r.status, len(r.body))
		}
	}
}

// TestDownloadFollowsChanges: a new binary (rewritten in place, or renamed over the old
// one) is served with its own digest, found by identity, size and modification time.
func TestDownloadFollowsChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent")
	mtime := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	writeBinary(t, path, []byte("version 1"), mtime)
	st := newStore(t, path)
	srv := serve(t, st)

	check := func(what string, want []byte, hashes int64) {
		t.Helper()
		r := srv.get(linuxAmd64)
		if r.status != http.StatusOK || !bytes.Equal(r.body, want) || r.header.Get("X-Checksum-Sha256") != sha(want) {
			t.Errorf("%s: %d %q (sha256 %s), want %q (sha256 %s)", what, r.status, r.body, r.header.Get("X-Checksum-Sha256"), want, sha(want))
		}
		c := srv.get("/v1/agent/download.sha256?os=linux&arch=amd64")
		if !strings.HasPrefix(string(c.body), sha(want)+"  ") {
			t.Errorf("%s: checksum %q, want %s", what, c.body, sha(want))
		}
		if n := st.hashes.Load(); n != hashes {
			t.Errorf("%s: hashed %d times, want %d", what, n, hashes)
		}
	}
	check("first", []byte("version 1"), 1)
	writeBinary(t, path, []byte("version 22"), mtime)
	check("rewritten with another size", []byte("version 22"), 2)
	writeBinary(t, path, []byte("version 33"), mtime.Add(time.Second))
	check("rewritten with the same size", []byte("version 33"), 3)
	// Same size, same time, another file: only its identity tells it apart.
	next := filepath.Join(dir, "agent.new")
	writeBinary(t, next, []byte("version 44"), mtime.Add(time.Second))
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	check("renamed over", []byte("version 44"), 4)
	check("unchanged", []byte("version 44"), 4)
}

func TestDownloadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-agent-here")
	tests := []struct {
		name, binary, path string
		nilInstaller       bool
		want               int
		code, field        string
		message            string
	}{
		{name: "missing binary", binary: missing, path: linuxAmd64, want: 503, code: "unavailable", message: "agent binary not found at " + missing},
		{name: "missing binary, checksum", binary: missing, path: "/v1/agent/download.sha256?os=linux&arch=amd64", want: 503, code: "unavailable", message: "agent binary not found at " + missing},
		{name: "no binary configured", binary: "", path: linuxAmd64, want: 503, code: "unavailable", message: "--agent-binary"},
		{name: "a directory", binary: dir, path: linuxAmd64, want: 503, code: "unavailable", message: "not a regular file"},
		{name: "no installer", nilInstaller: true, path: linuxAmd64, want: 503, code: "unavailable", message: "does not serve agent installation"},
		{name: "no installer, script", nilInstaller: true, path: "/install.sh", want: 503, code: "unavailable"},
		{name: "another arch", binary: missing, path: "/v1/agent/download?os=linux&arch=arm64", want: 404, code: "not_found", message: "no agent binary for linux/arm64; available: linux/amd64"},
		{name: "another os", binary: missing, path: "/v1/agent/download.sha256?os=darwin&arch=amd64", want: 404, code: "not_found", message: "available: linux/amd64"},
		{name: "no os", binary: missing, path: "/v1/agent/download?arch=amd64", want: 400, code: "invalid_request", field: "os"},
		{name: "no arch", binary: missing, path: "/v1/agent/download?os=linux", want: 400, code: "invalid_request", field: "arch"},
		{name: "empty arch", binary: missing, path: "/v1/agent/download?os=linux&arch=", want: 400, code: "invalid_request", field: "arch"},
		{name: "malformed os", binary: missing, path: "/v1/agent/download?os=../etc&arch=amd64", want: 400, code: "invalid_request", field: "os"},
		{name: "repeated arch", binary: missing, path: "/v1/agent/download?os=linux&arch=amd64&arch=arm64", want: 400, code: "invalid_request", field: "arch"},
		{name: "unknown parameter", binary: missing, path: "/v1/agent/download?os=linux&arch=amd64&version=2", want: 400, code: "invalid_request", field: "version"},
		{name: "script with a parameter", binary: missing, path: "/install.sh?os=linux", want: 400, code: "invalid_request", field: "os"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in rest.Installer
			if !tc.nilInstaller {
				in = newStore(t, tc.binary)
			}
			r := serve(t, in).get(tc.path)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			e := r.errorBody(t)
			if e.Code != tc.code {
				t.Errorf("code %q, want %q", e.Code, tc.code)
			}
			if got, _ := e.Details["field"].(string); got != tc.field {
				t.Errorf("details.field %q, want %q", got, tc.field)
			}
			if !strings.Contains(e.Message, tc.message) {
				t.Errorf("message %q does not contain %q", e.Message, tc.message)
			}
		})
	}
}

// TestHashOfAFileBeingWritten: bytes that do not add up to the size the file had when it
// was opened are neither served nor remembered.
func TestHashOfAFileBeingWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent")
	writeBinary(t, path, []byte("half"), time.Now())
	st := newStore(t, path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.WriteFile(path, []byte("half a binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	grown, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := st.sum(f, grown); err == nil || !strings.Contains(err.Error(), "changed while it was read") {
		t.Errorf("sum of a file shorter than its size: %v, want an error", err)
	}
	if st.cached != nil {
		t.Error("a digest of a file being written was remembered")
	}
}

func TestInstallScript(t *testing.T) {
	st := newStore(t, "")
	r := serve(t, st).get("/install.sh")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := r.header.Get("Content-Type"); got != "text/x-shellscript; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	script := string(r.body)
	for _, want := range []string{
		"#!/bin/sh\n",
		"\nset -eu\n",
		"\nDEPLOYME_URL='http://127.0.0.1:8080'\n",
		// The unit goes in verbatim, between the lines of a quoted here-document.
		"cat <<'" + unitEnd + "'\n" + units.Agent + unitEnd + "\n",
		"\nmain \"$@\"\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("the script lacks %q", want)
		}
	}
	if strings.Contains(script, "{{") || strings.Contains(script, "<no value>") {
		t.Error("the script holds template leftovers")
	}
	path := filepath.Join(t.TempDir(), "install.sh")
	if err := os.WriteFile(path, r.body, 0o644); err != nil {
		t.Fatal(err)
	}
	// Parsed by the shells it meets: dash is Debian's sh, bash RHEL's.
	for _, sh := range []string{"sh", "dash", "bash"} {
		if _, err := exec.LookPath(sh); err != nil {
			continue
		}
		if out, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
	}
	if _, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command("shellcheck", "-s", "sh", path).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	} else {
		t.Log("shellcheck is not installed (Debian: shellcheck): the script is only parsed")
	}
	out, err := exec.Command("sh", path, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--join-token TOKEN") {
		t.Errorf("--help: %v\n%s", err, out)
	}
}

func TestNewRefusesAnAddressHostsCannotUse(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1", "127.0.0.1:0", "host:"} {
		if _, err := New(Config{AdvertiseHTTP: addr}); err == nil {
			t.Errorf("AdvertiseHTTP %q accepted", addr)
		}
	}
	st, err := New(Config{AdvertiseHTTP: "[fd00::1]:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(st.InstallScript(), []byte("DEPLOYME_URL='http://[fd00::1]:8080'")) {
		t.Error("an IPv6 address is not bracketed in the script's URL")
	}
}

func TestShquote(t *testing.T) {
	for in, want := range map[string]string{"": "''", "a b": "'a b'", "it's": `'it'\''s'`, "$(x)": "'$(x)'"} {
		if got := shquote(in); got != want {
			t.Errorf("shquote(%q) = %s, want %s", in, got, want)
		}
	}
}
