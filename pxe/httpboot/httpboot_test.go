package httpboot

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const testMAC = "52:54:00:12:34:56"

// event is one Backend.Event call.
type event struct{ MAC, Kind, Detail string }

// fakeBackend answers Machine from a map (unknown MACs get the agent) or with err.
type fakeBackend struct {
	mu       sync.Mutex
	machines map[string]Machine
	err      error
	events   []event
}

func (b *fakeBackend) Machine(ctx context.Context, mac net.HardwareAddr) (Machine, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return Machine{}, b.err
	}
	if m, ok := b.machines[mac.String()]; ok {
		return m, nil
	}
	return agentMachine(mac), nil
}

func (b *fakeBackend) Event(mac net.HardwareAddr, kind, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, event{mac.String(), kind, detail})
}

func (b *fakeBackend) set(m Machine) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.machines[m.MAC.String()] = m
}

func (b *fakeBackend) takeEvents() []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.events
	b.events = nil
	return e
}

func agentMachine(mac net.HardwareAddr) Machine {
	return Machine{
		MAC: mac, Hostname: "node-01", Next: NextAgent,
		Coordinators: []string{"10.0.0.1:9090", "[fd00::1]:9090"},
		JoinToken:    "dpj_0123456789abcdefghijklmnopqrstuv",
		CAHash:       "sha256:" + strings.Repeat("ab", 32),
	}
}

// fixture is a running handler on an httptest server (127.0.0.1) over an assets directory.
type fixture struct {
	url     string
	backend *fakeBackend
	assets  string
	kernel  []byte
	initrd  []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{backend: &fakeBackend{machines: map[string]Machine{}}, assets: t.TempDir()}
	f.kernel = []byte(strings.Repeat("kernel-bytes-", 1000))
	f.initrd = []byte(strings.Repeat("initrd-bytes-", 2000))
	f.write(t, "vmlinuz", f.kernel)
	f.write(t, "initrd.img", f.initrd)
	cfg := DefaultConfig()
	cfg.Backend = f.backend
	cfg.Assets = f.assets
	cfg.BaseURL = "http://10.0.0.1:8080/"
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fixture) write(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.assets, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) do(t *testing.T, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

func TestScriptGolden(t *testing.T) {
	mac, _ := net.ParseMAC(testMAC)
	agent := agentMachine(mac)
	tests := []struct {
		golden string
		m      Machine
		detail string
	}{
		{"agent.ipxe", agent, "agent"},
		{"disk-exit.ipxe", Machine{MAC: mac, Hostname: "node-01", Next: NextDisk}, "disk exit"},
		{"disk-sanboot.ipxe", Machine{MAC: mac, Hostname: "node-01", Next: NextDisk, DiskExit: DiskExitSanboot}, "disk sanboot"},
		{"disk-chain.ipxe", Machine{MAC: mac, Hostname: "node-01", Next: NextDisk, DiskExit: DiskExitChain,
			DiskChain: "http://10.0.0.1:8080/local.ipxe?a=1&b=2"}, "disk chain"},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			f.backend.set(tc.m)
			resp, body := f.do(t, "GET", "/boot/ipxe?mac="+testMAC, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), body); diff != "" {
				t.Errorf("script differs from %s (-want +got):\n%s", path, diff)
			}
			if diff := cmp.Diff([]event{{testMAC, EventScript, tc.detail}}, f.backend.takeEvents()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInitrdDigest checks that the digest on the command line is the initrd's, the same
// one the initrd response carries, and that it follows a replaced file.
func TestInitrdDigest(t *testing.T) {
	f := newFixture(t)
	for i, content := range [][]byte{f.initrd, []byte("a new initrd, of another size")} {
		if i > 0 {
			f.write(t, "initrd.img", content)
		}
		s := sum(content)
		want := hex.EncodeToString(s[:])
		_, body := f.do(t, "GET", "/boot/ipxe?mac="+testMAC, nil)
		if !strings.Contains(body, " deployme.initrd_sha256="+want+" ") {
			t.Errorf("version %d: script lacks deployme.initrd_sha256=%s:\n%s", i, want, body)
		}
		resp, got := f.do(t, "GET", "/boot/initrd.img", nil)
		if got != string(content) || resp.Header.Get("ETag") != `"`+want+`"` {
			t.Errorf("version %d: initrd served %d bytes with ETag %s, want %d bytes and %q", i, len(got), resp.Header.Get("ETag"), len(content), want)
		}
	}
}

func TestFiles(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		path, kind string
		content    []byte
	}{
		{"/boot/vmlinuz", EventKernel, f.kernel},
		{"/boot/initrd.img", EventInitrd, f.initrd},
	} {
		t.Run(tc.path, func(t *testing.T) {
			s := sum(tc.content)
			etag := `"` + hex.EncodeToString(s[:]) + `"`

			resp, body := f.do(t, "GET", tc.path+"?mac="+testMAC, nil)
			if resp.StatusCode != 200 || body != string(tc.content) {
				t.Fatalf("GET: status %d, %d bytes; want 200, %d bytes", resp.StatusCode, len(body), len(tc.content))
			}
			want := map[string]string{
				"ETag":           etag,
				"Digest":         "sha-256=" + base64.StdEncoding.EncodeToString(s[:]),
				"Content-Type":   "application/octet-stream",
				"Accept-Ranges":  "bytes",
				"Content-Length": fmt.Sprint(len(tc.content)),
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}

			resp, body = f.do(t, "GET", tc.path+"?mac="+testMAC, map[string]string{"Range": "bytes=100-199"})
			if resp.StatusCode != http.StatusPartialContent || body != string(tc.content[100:200]) {
				t.Errorf("Range: status %d, body %q; want 206 and bytes 100-199", resp.StatusCode, body)
			}
			if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 100-199/%d", len(tc.content)) {
				t.Errorf("Content-Range %q", cr)
			}

			resp, body = f.do(t, "GET", tc.path+"?mac="+testMAC, map[string]string{"If-None-Match": etag})
			if resp.StatusCode != http.StatusNotModified || body != "" {
				t.Errorf("If-None-Match: status %d, %d bytes; want 304, none", resp.StatusCode, len(body))
			}
			resp, _ = f.do(t, "GET", tc.path, map[string]string{"If-None-Match": `"stale"`})
			if resp.StatusCode != 200 {
				t.Errorf("stale If-None-Match: status %d, want 200", resp.StatusCode)
			}

			resp, body = f.do(t, "HEAD", tc.path, nil)
			if resp.StatusCode != 200 || body != "" || resp.Header.Get("ETag") != etag {
				t.Errorf("HEAD: status %d, %d body bytes, ETag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
			}

			// Only requests naming a MAC become events.
			wantEvents := []event{
				{testMAC, tc.kind, fmt.Sprintf("status=200 bytes=%d", len(tc.content))},
				{testMAC, tc.kind, "status=206 bytes=100"},
				{testMAC, tc.kind, "status=304 bytes=0"},
			}
			if diff := cmp.Diff(wantEvents, f.backend.takeEvents()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("replaced", func(t *testing.T) {
		next := []byte("another kernel")
		f.write(t, "vmlinuz", next)
		// Equal size and modification time must not fool the cache: a rename brings a new inode.
		resp, body := f.do(t, "GET", "/boot/vmlinuz", nil)
		s := sum(next)
		if body != string(next) || resp.Header.Get("ETag") != `"`+hex.EncodeToString(s[:])+`"` {
			t.Errorf("after replacement: %q with ETag %s", body, resp.Header.Get("ETag"))
		}
		same := []byte("ANOTHER KERNEL") // same size
		tmp := filepath.Join(f.assets, "vmlinuz.new")
		os.WriteFile(tmp, same, 0o644)
		st, _ := os.Stat(filepath.Join(f.assets, "vmlinuz"))
		os.Chtimes(tmp, st.ModTime(), st.ModTime())
		if err := os.Rename(tmp, filepath.Join(f.assets, "vmlinuz")); err != nil {
			t.Fatal(err)
		}
		resp, body = f.do(t, "GET", "/boot/vmlinuz", nil)
		s = sum(same)
		if body != string(same) || resp.Header.Get("ETag") != `"`+hex.EncodeToString(s[:])+`"` {
			t.Errorf("after a same-size, same-mtime rename: %q with ETag %s", body, resp.Header.Get("ETag"))
		}
	})

	t.Run("missing", func(t *testing.T) {
		os.Remove(filepath.Join(f.assets, "initrd.img"))
		if resp, _ := f.do(t, "GET", "/boot/initrd.img", nil); resp.StatusCode != 404 {
			t.Errorf("missing initrd: status %d, want 404", resp.StatusCode)
		}
		// The agent's script needs the initrd's digest.
		if resp, body := f.do(t, "GET", "/boot/ipxe?mac="+testMAC, nil); resp.StatusCode != 500 || body != "internal error\n" {
			t.Errorf("agent script without initrd: status %d %q, want 500", resp.StatusCode, body)
		}
	})
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/boot/other", 404},
		{"GET", "/boot/", 404},
		{"GET", "/boot/vmlinuz/x", 404},
		{"GET", "/boot/../boot/vmlinuz", 404}, // exact paths only; a mux in front redirects to the clean path
		{"POST", "/boot/ipxe?mac=" + testMAC, 405},
		{"PUT", "/boot/vmlinuz", 405},
		{"DELETE", "/boot/initrd.img", 405},
		{"GET", "/boot/ipxe", 400},
		{"GET", "/boot/ipxe?mac=", 400},
		{"GET", "/boot/ipxe?mac=zz:zz", 400},
		{"GET", "/boot/ipxe?mac=52:54:00:12:34", 400},
		{"GET", "/boot/ipxe?mac=52:54:00:12:34:56%0Ashell", 400},
		{"GET", "/boot/ipxe?mac=52-54-00-12-34-56", 200},
		{"HEAD", "/boot/ipxe?mac=" + testMAC, 200},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, _ := f.do(t, tc.method, tc.path, nil)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q, want GET, HEAD", resp.Header.Get("Allow"))
			}
		})
	}
}

func TestBackendError(t *testing.T) {
	f := newFixture(t)
	f.backend.err = fmt.Errorf("raft: no leader at 10.9.9.9: %w", errors.New("secret-internal-detail"))
	resp, body := f.do(t, "GET", "/boot/ipxe?mac="+testMAC, nil)
	if resp.StatusCode != 500 || body != "internal error\n" {
		t.Errorf("status %d body %q, want 500 %q", resp.StatusCode, body, "internal error\n")
	}
	if ev := f.backend.takeEvents(); len(ev) != 0 {
		t.Errorf("events after a failure: %v", ev)
	}
}

func TestBackendTimeout(t *testing.T) {
	var b blockingBackend
	cfg := DefaultConfig()
	cfg.Backend, cfg.Assets, cfg.BaseURL = &b, t.TempDir(), "http://127.0.0.1:8080"
	cfg.BackendTimeout = 50 * time.Millisecond
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/boot/ipxe?mac=" + testMAC)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Errorf("status %d, want 500 once the backend deadline passes", resp.StatusCode)
	}
}

// blockingBackend waits for its context, as a backend without a Raft leader would.
type blockingBackend struct{}

func (blockingBackend) Machine(ctx context.Context, _ net.HardwareAddr) (Machine, error) {
	<-ctx.Done()
	return Machine{}, ctx.Err()
}
func (blockingBackend) Event(net.HardwareAddr, string, string) {}

func TestValidate(t *testing.T) {
	base := DefaultConfig()
	base.Backend, base.Assets, base.BaseURL = &fakeBackend{}, t.TempDir(), "http://10.0.0.1:8080"
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"no backend", func(c *Config) { c.Backend = nil }},
		{"no assets", func(c *Config) { c.Assets = "" }},
		{"no timeout", func(c *Config) { c.BackendTimeout = 0 }},
		{"no base URL", func(c *Config) { c.BaseURL = "" }},
		{"relative", func(c *Config) { c.BaseURL = "10.0.0.1:8080" }},
		{"ftp", func(c *Config) { c.BaseURL = "ftp://10.0.0.1" }},
		{"query", func(c *Config) { c.BaseURL = "http://10.0.0.1/?x=1" }},
		{"expansion", func(c *Config) { c.BaseURL = "http://${next-server}/" }},
		{"space", func(c *Config) { c.BaseURL = "http://10.0.0.1/ x" }},
		{"user", func(c *Config) { c.BaseURL = "http://u@10.0.0.1/" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			if _, err := New(c); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
