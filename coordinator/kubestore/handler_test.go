package kubestore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
)

// serve starts the handler on a loopback listener.
func serve(t testing.TB, s *Store) string {
	t.Helper()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, method, url string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	version(t, dir, "v1.38.0")
	writeFiles(t, outside, map[string]string{"secret": "outside the store"})
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "v1.38.0/linux-amd64/evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "v1.39.0")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, outside, map[string]string{"linux-amd64/kubeadm": "outside kubeadm"})
	s := newStore(t, dir)
	url := serve(t, s)
	kubeadm := fake("kubeadm", "v1.38.0")
	sum := sha(kubeadm)
	immutable := "public, max-age=31536000, immutable"
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		wantStatus int
		wantBody   string
		// wantCode is the error body's code, for errors.
		wantCode   string
		wantHeader map[string]string
	}{
		{name: "whole file", method: "GET", path: PathPrefix + sum, wantStatus: 200, wantBody: kubeadm,
			wantHeader: map[string]string{"ETag": `"sha256:` + sum + `"`, "Content-Type": "application/octet-stream", "Cache-Control": immutable, "Content-Length": fmt.Sprint(len(kubeadm)), "Accept-Ranges": "bytes"}},
		{name: "head", method: "HEAD", path: PathPrefix + sum, wantStatus: 200, wantBody: "",
			wantHeader: map[string]string{"ETag": `"sha256:` + sum + `"`, "Content-Type": "application/octet-stream", "Content-Length": fmt.Sprint(len(kubeadm))}},
		{name: "range", method: "GET", path: PathPrefix + sum, header: map[string]string{"Range": "bytes=5-12"}, wantStatus: 206, wantBody: kubeadm[5:13],
			wantHeader: map[string]string{"Content-Range": fmt.Sprintf("bytes 5-12/%d", len(kubeadm)), "ETag": `"sha256:` + sum + `"`}},
		{name: "suffix range", method: "GET", path: PathPrefix + sum, header: map[string]string{"Range": "bytes=-4"}, wantStatus: 206, wantBody: kubeadm[len(kubeadm)-4:]},
		{name: "range resumed if unchanged", method: "GET", path: PathPrefix + sum, header: map[string]string{"Range": "bytes=10-", "If-Range": `"sha256:` + sum + `"`}, wantStatus: 206, wantBody: kubeadm[10:]},
		{name: "unsatisfiable range", method: "GET", path: PathPrefix + sum, header: map[string]string{"Range": "bytes=1000-"}, wantStatus: 416},
		{name: "not modified", method: "GET", path: PathPrefix + sum, header: map[string]string{"If-None-Match": `"sha256:` + sum + `"`}, wantStatus: 304},
		{name: "unknown hash", method: "GET", path: PathPrefix + sha("nothing"), wantStatus: 404, wantCode: v1.CodeNotFound},
		{name: "unknown hash, head", method: "HEAD", path: PathPrefix + sha("nothing"), wantStatus: 404},
		{name: "uppercase", method: "GET", path: PathPrefix + strings.ToUpper(sum), wantStatus: 400, wantCode: v1.CodeInvalidRequest},
		{name: "short", method: "GET", path: PathPrefix + sum[:63], wantStatus: 400, wantCode: v1.CodeInvalidRequest},
		{name: "long", method: "GET", path: PathPrefix + sum + "0", wantStatus: 400, wantCode: v1.CodeInvalidRequest},
		{name: "not hex", method: "GET", path: PathPrefix + strings.Repeat("g", 64), wantStatus: 400, wantCode: v1.CodeInvalidRequest},
		{name: "empty", method: "GET", path: PathPrefix, wantStatus: 400, wantCode: v1.CodeInvalidRequest},
		{name: "a path instead", method: "GET", path: PathPrefix + "v1.38.0/linux-amd64/kubeadm", wantStatus: 400, wantCode: v1.CodeInvalidRequest},
		{name: "traversal", method: "GET", path: PathPrefix + "..%2f..%2fetc%2fpasswd", wantStatus: 400, wantCode: v1.CodeInvalidRequest},
		{name: "another prefix", method: "GET", path: "/artifacts/md5/" + sum[:32], wantStatus: 404, wantCode: v1.CodeNotFound},
		{name: "a file linked from outside", method: "GET", path: PathPrefix + sha("outside the store"), wantStatus: 404, wantCode: v1.CodeNotFound},
		{name: "a version linked from outside", method: "GET", path: PathPrefix + sha("outside kubeadm"), wantStatus: 404, wantCode: v1.CodeNotFound},
		{name: "post", method: "POST", path: PathPrefix + sum, wantStatus: 405, wantCode: v1.CodeMethodNotAllowed, wantHeader: map[string]string{"Allow": "GET, HEAD"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := do(t, tc.method, url+tc.path, tc.header)
			if got.status != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %q", got.status, tc.wantStatus, got.body)
			}
			if tc.wantCode != "" {
				var e v1.Error
				if err := json.Unmarshal([]byte(got.body), &e); err != nil || e.Code != tc.wantCode || e.Message == "" {
					t.Errorf("body %q (%v), want an error body with code %q", got.body, err, tc.wantCode)
				}
				if ct := got.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type %q, want application/json", ct)
				}
				if strings.Contains(got.header.Get("Cache-Control"), "immutable") {
					t.Error("an error is cached as immutable")
				}
			} else if tc.wantStatus < 300 && got.body != tc.wantBody {
				t.Errorf("body %q, want %q", got.body, tc.wantBody)
			}
			for k, want := range tc.wantHeader {
				if v := got.header.Get(k); v != want {
					t.Errorf("header %s: %q, want %q", k, v, want)
				}
			}
		})
	}
}

// TestHandlerRescan: a binary added after the store has looked is found by its hash, at the
// latest one rescan interval later; a replaced binary is no longer served under its old hash.
func TestHandlerRescan(t *testing.T) {
	dir := t.TempDir()
	version(t, dir, "v1.37.2")
	cfg := DefaultConfig()
	cfg.Dir, cfg.RescanInterval = dir, time.Hour
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := serve(t, s)
	get := func(sum string) int { return do(t, "GET", url+PathPrefix+sum, nil).status }

	// Nothing known yet: the first request scans.
	if st := get(sha(fake("kubelet", "v1.37.2"))); st != 200 {
		t.Fatalf("a binary present at start: %d, want 200", st)
	}
	version(t, dir, "v1.38.0")
	if st := get(sha(fake("kubelet", "v1.38.0"))); st != 404 {
		t.Errorf("a binary added within the rescan interval: %d, want 404 (rescans are rate-limited)", st)
	}
	s.scanMu.Lock()
	s.lastScan = time.Now().Add(-time.Hour)
	s.scanMu.Unlock()
	if st := get(sha(fake("kubelet", "v1.38.0"))); st != 200 {
		t.Errorf("a binary added, once the rescan interval is over: %d, want 200", st)
	}

	// Replaced in place: the old hash is refused though its entry is still remembered,
	// and the new content is served under its own hash without a rescan.
	old := fake("kubeadm", "v1.38.0")
	if st := get(sha(old)); st != 200 {
		t.Fatalf("kubeadm: %d, want 200", st)
	}
	writeFiles(t, dir, map[string]string{"v1.38.0/linux-amd64/kubeadm": "patched kubeadm"})
	if st := get(sha(old)); st != 404 {
		t.Errorf("the old hash of a replaced file: %d, want 404", st)
	}
	if r := do(t, "GET", url+PathPrefix+sha("patched kubeadm"), nil); r.status != 200 || r.body != "patched kubeadm" {
		t.Errorf("the new hash of a replaced file: %d %q, want 200 with the new content", r.status, r.body)
	}

	// Removed: 404, and forgotten.
	if err := os.Remove(filepath.Join(dir, "v1.38.0/linux-amd64/kubectl")); err != nil {
		t.Fatal(err)
	}
	if st := get(sha(fake("kubectl", "v1.38.0"))); st != 404 {
		t.Errorf("a removed binary: %d, want 404", st)
	}
	s.mu.Lock()
	_, remembered := s.files["v1.38.0/linux-amd64/kubectl"]
	s.mu.Unlock()
	if remembered {
		t.Error("a removed binary is still remembered")
	}
}

// TestHandlerConcurrent: many clients at once, whole files and ranges, while the store
// is also asked for binaries and rescanned (run with -race).
func TestHandlerConcurrent(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	writeFiles(t, dir, map[string]string{
		"v1.38.0/linux-amd64/kubeadm": string(big),
		"v1.38.0/linux-amd64/kubectl": fake("kubectl", "v1.38.0"),
		"v1.38.0/linux-amd64/kubelet": fake("kubelet", "v1.38.0"),
	})
	cfg := DefaultConfig()
	cfg.Dir, cfg.RescanInterval = dir, 0
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := serve(t, s)
	sums := []string{sha(string(big)), sha(fake("kubectl", "v1.38.0")), sha(fake("kubelet", "v1.38.0"))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 10 {
				sum := sums[(i+j)%len(sums)]
				if j%4 == 3 {
					// Unknown: rescans every time (interval 0) while others are served.
					sum = sha(fmt.Sprint(i, j))
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", url+PathPrefix+sum, nil)
				if j%2 == 1 {
					req.Header.Set("Range", "bytes=3-")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := map[bool]int{true: 200, false: 404}[j%4 != 3]
				if want == 200 && j%2 == 1 {
					want = 206
				}
				if err != nil || resp.StatusCode != want {
					t.Errorf("GET %s: %d (%d bytes, %v), want %d", sum, resp.StatusCode, n, err, want)
				}
			}
		})
		wg.Go(func() {
			got, err := s.Binaries("v1.38.0")
			if err != nil || got["kubeadm"].SHA256 != sums[0] {
				t.Errorf("Binaries during serving: %v, %v", got["kubeadm"], err)
			}
		})
	}
	wg.Wait()
	if n := s.reads.Load(); n != 3 {
		t.Errorf("%d files read, want 3: serving reads nothing beyond what it sends", n)
	}
}

// BenchmarkServe: 4 clients downloading a 64 MiB binary at once over loopback.
func BenchmarkServe(b *testing.B) {
	const size = 64 << 20
	const clients = 4
	dir := b.TempDir()
	content := bytes.Repeat([]byte("deployme kubelet"), size/16)
	writeFiles(b, dir, map[string]string{"v1.38.0/linux-amd64/kubelet": string(content)})
	s := newStore(b, dir)
	list, err := s.List()
	if err != nil || len(list) != 1 {
		b.Fatalf("List: %v, %v", list, err)
	}
	url := serve(b, s) + PathPrefix + list[0].SHA256
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	b.SetBytes(size * clients)
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				resp, err := client.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != size || resp.StatusCode != 200 {
					b.Errorf("GET: %d, %d bytes, %v", resp.StatusCode, n, err)
				}
			})
		}
		wg.Wait()
	}
}
