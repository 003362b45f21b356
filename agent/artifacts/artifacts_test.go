package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/internal/poll"
)

const content = "fake-kube-binary\nname=kubeadm\nversion=v1.38.0\n"

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

var want = Want{Name: "kubeadm", SHA256: sha(content), Size: int64(len(content))}

// server is a coordinator's artifact store on a loopback listener, answering with h.
type server struct {
	url      string
	requests atomic.Int64
}

func serve(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// good serves body at its hash's path, as the store does.
func good(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != pathPrefix+sha(body) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write([]byte(body))
	}
}

// chunked sends body without a Content-Length, so only the byte count can tell its size.
func chunked(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
		w.(http.Flusher).Flush()
	}
}

func notFound(w http.ResponseWriter, r *http.Request) {
	http.Error(w, `{"error":"not_found","message":"no artifact"}`, http.StatusNotFound)
}

// down is the URL of a port nothing listens on.
func down(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// entries lists dir, to show nothing but the destination is left there.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// dest is where a test installs a binary: <root>/usr/bin/<name> in a fresh root.
func dest(t *testing.T, name string) string {
	return filepath.Join(t.TempDir(), "usr", "bin", name)
}

func TestInstall(t *testing.T) {
	corrupt := strings.Replace(content, "kubeadm", "kubeadX", 1)
	tests := []struct {
		name string
		// first is what the first base URL does; the second always serves the binary.
		first func(t *testing.T) string
	}{
		{"only one coordinator", nil},
		{"first down", down},
		{"first 404", func(t *testing.T) string { return serve(t, notFound).url }},
		{"first corrupt", func(t *testing.T) string {
			return serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(corrupt)) }).url
		}},
		{"first truncated", func(t *testing.T) string { return serve(t, chunked(content[:10])).url }},
		{"first oversize", func(t *testing.T) string { return serve(t, chunked(content+"more")).url }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := dest(t, "kubeadm")
			var urls []string
			if tc.first != nil {
				urls = append(urls, tc.first(t))
			}
			second := serve(t, good(content))
			urls = append(urls, second.url+"/")
			f := &Fetcher{BaseURLs: urls}
			changed, err := f.Install(context.Background(), want, d)
			if err != nil || !changed {
				t.Fatalf("Install = %v, %v; want changed", changed, err)
			}
			b, err := os.ReadFile(d)
			if err != nil || string(b) != content {
				t.Fatalf("installed %q, %v; want %q", b, err, content)
			}
			fi, _ := os.Stat(d)
			if fi.Mode().Perm() != 0o755 {
				t.Errorf("mode %v, want 0755", fi.Mode().Perm())
			}
			if diff := cmp.Diff([]string{"kubeadm"}, entries(t, filepath.Dir(d))); diff != "" {
				t.Errorf("directory (-want +got):\n%s", diff)
			}
			if n := second.requests.Load(); n != 1 {
				t.Errorf("%d requests to the good coordinator, want 1", n)
			}
		})
	}
}

// TestInstallAlreadyThere: the right content at the destination is left alone, without a
// request; the wrong content is replaced by a new file, so a process running the old one
// keeps it.
func TestInstallAlreadyThere(t *testing.T) {
	srv := serve(t, good(content))
	f := &Fetcher{BaseURLs: []string{srv.url}}
	d := dest(t, "kubeadm")
	if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name        string
		old         string
		mode        os.FileMode
		wantChanged bool
		wantReqs    int64
	}{
		{"same content", content, 0o755, false, 0},
		{"same content, not executable", content, 0o644, true, 0},
		{"other content, same size", strings.ToUpper(content), 0o755, true, 1},
		{"other content", "old kubeadm", 0o755, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(d)
			if err := os.WriteFile(d, []byte(tc.old), tc.mode); err != nil {
				t.Fatal(err)
			}
			running, err := os.Open(d) // stands for the old binary being executed
			if err != nil {
				t.Fatal(err)
			}
			defer running.Close()
			before := srv.requests.Load()
			changed, err := f.Install(context.Background(), want, d)
			if err != nil || changed != tc.wantChanged {
				t.Fatalf("Install = %v, %v; want changed=%v", changed, err, tc.wantChanged)
			}
			if n := srv.requests.Load() - before; n != tc.wantReqs {
				t.Errorf("%d requests, want %d", n, tc.wantReqs)
			}
			if b, _ := os.ReadFile(d); string(b) != content {
				t.Errorf("content %q, want %q", b, content)
			}
			if fi, _ := os.Stat(d); fi.Mode().Perm() != 0o755 {
				t.Errorf("mode %v, want 0755", fi.Mode().Perm())
			}
			old := make([]byte, len(tc.old))
			if _, err := running.ReadAt(old, 0); err != nil || string(old) != tc.old {
				t.Errorf("the running binary reads %q, %v; want its old content %q (replaced, never overwritten)", old, err, tc.old)
			}
		})
	}
}

// TestInstallAllFail: when no coordinator gives the binary, the error says what each one did,
// and nothing is left behind.
func TestInstallAllFail(t *testing.T) {
	corrupt := strings.Replace(content, "kubeadm", "kubeadX", 1)
	n := len(content)
	sources := []struct {
		url     string
		wantMsg string
		wantErr error
	}{
		{url: down(t), wantMsg: "connection refused"},
		{url: serve(t, notFound).url, wantMsg: "404 Not Found: {\"error\":\"not_found\""},
		{url: serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(corrupt)) }).url,
			wantMsg: "sha256 mismatch from %URL%" + pathPrefix + want.SHA256 + ": got " + sha(corrupt) + ", want " + want.SHA256},
		{url: serve(t, chunked(content[:10])).url, wantMsg: fmt.Sprintf("wrong size: 10 bytes, want %d", n), wantErr: ErrSize},
		{url: serve(t, chunked(content+"more")).url, wantMsg: fmt.Sprintf("wrong size: more than %d bytes", n), wantErr: ErrSize},
		{url: serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(n+1))
			w.Write([]byte(content + "x"))
		}).url, wantMsg: fmt.Sprintf("the server announces %d bytes, want %d", n+1, n), wantErr: ErrSize},
		// Announces the right length and stops short: the connection is cut.
		{url: serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write([]byte(content[:20]))
		}).url, wantMsg: fmt.Sprintf("after 20 of %d bytes: unexpected EOF", n)},
	}
	var urls []string
	for _, s := range sources {
		urls = append(urls, s.url)
	}
	d := dest(t, "kubeadm")
	f := &Fetcher{BaseURLs: urls}
	changed, err := f.Install(context.Background(), want, d)
	if err == nil || changed {
		t.Fatalf("Install = %v, %v; want an error", changed, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "install kubeadm (sha256 "+want.SHA256+")") {
		t.Errorf("error %q does not name the binary and its hash", msg)
	}
	for _, s := range sources {
		wantMsg := strings.ReplaceAll(s.wantMsg, "%URL%", s.url)
		if !strings.Contains(msg, s.url) || !strings.Contains(msg, wantMsg) {
			t.Errorf("error does not say %q for %s:\n%s", wantMsg, s.url, msg)
		}
		if s.wantErr != nil && !errors.Is(err, s.wantErr) {
			t.Errorf("error is not %v", s.wantErr)
		}
	}
	var mismatch *HashMismatchError
	if !errors.As(err, &mismatch) || mismatch.Got != sha(corrupt) || mismatch.Want != want.SHA256 {
		t.Errorf("error %v holds no HashMismatchError with both hashes", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Error("error is not ECONNREFUSED")
	}
	if got := entries(t, filepath.Dir(d)); len(got) != 0 {
		t.Errorf("left in the directory: %v", got)
	}
}

func TestInstallBadRequest(t *testing.T) {
	d := dest(t, "kubeadm")
	for _, tc := range []struct {
		name string
		f    Fetcher
		want Want
		dest string
	}{
		{"uppercase hash", Fetcher{BaseURLs: []string{"http://127.0.0.1:1"}}, Want{Name: "kubeadm", SHA256: strings.ToUpper(want.SHA256), Size: 1}, d},
		{"short hash", Fetcher{BaseURLs: []string{"http://127.0.0.1:1"}}, Want{Name: "kubeadm", SHA256: want.SHA256[1:], Size: 1}, d},
		{"negative size", Fetcher{BaseURLs: []string{"http://127.0.0.1:1"}}, Want{Name: "kubeadm", SHA256: want.SHA256, Size: -1}, d},
		{"no destination", Fetcher{BaseURLs: []string{"http://127.0.0.1:1"}}, want, ""},
		{"no coordinator", Fetcher{}, want, d},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if changed, err := tc.f.Install(context.Background(), tc.want, tc.dest); err == nil || changed {
				t.Errorf("Install = %v, %v; want an error", changed, err)
			}
		})
	}
}

// TestInstallCancel: a download cancelled half-way leaves the old binary and no temporary
// file, and does not go on to the next coordinator.
func TestInstallCancel(t *testing.T) {
	big := strings.Repeat("k", 1<<20)
	w := Want{Name: "kubelet", SHA256: sha(big), Size: int64(len(big))}
	halfway := make(chan struct{})
	release := make(chan struct{})
	stalls := serve(t, func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Length", strconv.Itoa(len(big)))
		rw.Write([]byte(big[:len(big)/2]))
		rw.(http.Flusher).Flush()
		close(halfway)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	next := serve(t, good(big))
	d := dest(t, "kubelet")
	if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d, []byte("old kubelet"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-halfway
		// Cancel once the client is writing what it got into its temporary file.
		wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		_ = poll.Until(wait, time.Millisecond, func() (bool, error) { return hasTemp(filepath.Dir(d)), nil })
		cancel()
	}()
	changed, err := (&Fetcher{BaseURLs: []string{stalls.url, next.url}}).Install(ctx, w, d)
	if !errors.Is(err, context.Canceled) || changed {
		t.Fatalf("Install = %v, %v; want context.Canceled", changed, err)
	}
	if b, _ := os.ReadFile(d); string(b) != "old kubelet" {
		t.Errorf("destination %q, want it untouched", b)
	}
	if diff := cmp.Diff([]string{"kubelet"}, entries(t, filepath.Dir(d))); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
	if n := next.requests.Load(); n != 0 {
		t.Errorf("%d requests to the next coordinator after the cancellation, want 0", n)
	}
}

func hasTemp(dir string) bool {
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".kubelet.download-") {
			return true
		}
	}
	return false
}
