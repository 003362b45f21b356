package kubestore

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/logkey"
)

// Handler serves GET and HEAD PathPrefix+<hex>: the file whose content has that SHA-256,
// with Range requests, an ETag naming the hash, and caching forever (the content of a
// hash never changes). Errors have the REST API's body: 400 for a malformed hash (exactly
// 64 lowercase hex digits), 404 for one the store does not hold.
//
// A request costs a stat of the file, no read beyond the one it serves: the file's
// identity is compared with the one its hash was computed for, and only a changed file is
// hashed again (then refused if its content is no longer the one asked for).
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Store) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, v1.Errorf(v1.CodeMethodNotAllowed, "method %s is not allowed here; allowed: GET, HEAD", r.Method))
		return
	}
	sum, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok {
		writeError(w, v1.Errorf(v1.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
		return
	}
	if !validHash(sum) {
		writeError(w, v1.InvalidField("hex", "%q is not a SHA-256: want 64 lowercase hex digits", sum))
		return
	}
	f := s.open(sum)
	if f == nil {
		writeError(w, v1.Errorf(v1.CodeNotFound, "no artifact with SHA-256 %s on this coordinator", sum))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("ETag", `"sha256:`+sum+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	// No modification time: the content is named by its hash, so the ETag says all a
	// conditional request needs, and a file touched on disk must not look new.
	http.ServeContent(w, r, "", time.Time{}, f)
}

// validHash is the one spelling of a SHA-256 the store answers to, so that one content
// has one URL (and one cache entry in every proxy on the way).
func validHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// open returns a file whose content hashes to sum, or nil. An unknown hash rescans the
// directory (binaries added since), at most once per RescanInterval.
func (s *Store) open(sum string) *os.File {
	if f := s.openKnown(sum); f != nil {
		return f
	}
	s.rescan()
	return s.openKnown(sum)
}

// openKnown tries the files remembered with content sum.
func (s *Store) openKnown(sum string) *os.File {
	s.mu.Lock()
	var rels []string
	for rel := range s.byHash[sum] {
		rels = append(rels, rel)
	}
	s.mu.Unlock()
	slices.Sort(rels)
	for _, rel := range rels {
		f, err := s.root.Open(rel)
		if err != nil {
			s.forget(rel)
			continue
		}
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			f.Close()
			s.forget(rel)
			continue
		}
		// Unchanged since hashed: no read. Changed: hashed again from this very open
		// file, so what is checked is what is served.
		got, err := s.sum(rel, f, keyOf(fi))
		if err == nil && got == sum {
			return f
		}
		f.Close()
	}
	return nil
}

// rescan scans the directory unless it was scanned less than RescanInterval ago.
// Concurrent callers wait for the scan in progress and then share it.
func (s *Store) rescan() {
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	if !s.lastScan.IsZero() && time.Since(s.lastScan) < s.cfg.RescanInterval {
		return
	}
	if _, err := s.scan(); err != nil {
		s.logger.Warn("some kubernetes artifacts cannot be served", logkey.Path, s.cfg.Dir, logkey.Err, err)
	}
	s.lastScan = time.Now()
}

func writeError(w http.ResponseWriter, e *v1.Error) {
	body, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status())
	_, _ = w.Write(append(body, '\n'))
}
