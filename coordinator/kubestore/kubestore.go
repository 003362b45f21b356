// Package kubestore is the coordinator's store of Kubernetes binaries (kubeadm, kubelet,
// kubectl) for every version it can install or upgrade to. Hosts download them from the
// coordinator, never from the internet: many sites have no route out, and a binary pinned
// by its SHA-256 cannot be swapped on the way.
//
// Operators fill a directory laid out as <Dir>/<version>/linux-amd64/{kubeadm,kubelet,kubectl}
// (docs/upgrades.md). The store hashes each file once and remembers the hash under the
// file's identity (size, modification and change times, device and inode), so a file
// replaced in place or renamed over is hashed again and an unchanged one never is. Files are
// served by content (GET /artifacts/sha256/<hex>), only from inside Dir: everything is
// opened through an os.Root, which refuses paths and symbolic links that lead out of it.
package kubestore

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Names are the binaries every version must have, in the order Binaries and List give them.
var Names = []string{"kubeadm", "kubectl", "kubelet"}

// Platform is the one platform directory under each version: hosts are linux/amd64.
const Platform = "linux-amd64"

// PathPrefix is where Handler serves artifacts; the lowercase hex SHA-256 follows it.
const PathPrefix = "/artifacts/sha256/"

// versionRE is deliberately strict: the version becomes a directory name, so anything but
// v<major>.<minor>.<patch> (a pre-release, "..", a slash) is refused before any path is built.
var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

var (
	// ErrBadVersion is a version that is not v<major>.<minor>.<patch>.
	ErrBadVersion = errors.New("malformed Kubernetes version")
	// ErrNotFound is a version or binary the store does not hold.
	ErrNotFound = errors.New("not in the Kubernetes artifact store")
)

// Config configures the store. Start from DefaultConfig.
type Config struct {
	// Dir is the store's root: <Dir>/<version>/linux-amd64/{kubeadm,kubelet,kubectl}.
	Dir string
	// RescanInterval is the least time between two rescans of Dir caused by a request for a
	// hash the store does not know (binaries added since). It bounds what a client asking
	// for made-up hashes can cost; zero rescans on every such request (tests).
	RescanInterval time.Duration
	// Logger receives warnings about files the store cannot read; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Dir has none.
func DefaultConfig() Config {
	return Config{RescanInterval: 10 * time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("kubernetes artifact store: no directory (set --kube-artifacts)")
	case c.RescanInterval < 0:
		return fmt.Errorf("kubernetes artifact store: rescan interval %v is negative", c.RescanInterval)
	}
	return nil
}

// Artifact is one binary of one Kubernetes version.
type Artifact struct {
	// Name is kubeadm, kubelet or kubectl.
	Name    string
	Version string
	// SHA256 is the lowercase hex SHA-256 of the content; the file is served at
	// PathPrefix + SHA256.
	SHA256 string
	Size   int64
}

// Store is the artifact store over one directory. It is safe for concurrent use.
type Store struct {
	cfg    Config
	root   *os.Root
	logger *slog.Logger

	mu sync.Mutex
	// files is the last hash of each file (path relative to Dir, slash-separated), valid
	// while the file's identity is still key.
	files map[string]entry
	// byHash finds the files with a given content.
	byHash map[string]map[string]struct{}
	// hashing holds the hash computations in progress, so that concurrent callers wait
	// for one read of a file instead of each reading it.
	hashing map[string]*hashCall

	// scanMu serialises rescans; lastScan rate-limits them.
	scanMu   sync.Mutex
	lastScan time.Time

	// reads counts files hashed, for tests proving what the cache saves.
	reads atomic.Int64
}

type entry struct {
	key fileKey
	sum string
}

type hashCall struct {
	key  fileKey
	done chan struct{}
	sum  string
	err  error
}

// New opens the store. It reads Dir's listing, so an unreadable or missing directory fails
// here, at start-up, rather than at the first upgrade; it hashes nothing yet.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("kubernetes artifact store: %w", err)
	}
	if _, err := fs.ReadDir(root.FS(), "."); err != nil {
		root.Close()
		return nil, fmt.Errorf("kubernetes artifact store: read %s: %w", cfg.Dir, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{
		cfg: cfg, root: root, logger: logger,
		files: map[string]entry{}, byHash: map[string]map[string]struct{}{}, hashing: map[string]*hashCall{},
	}, nil
}

// Close releases the directory.
func (s *Store) Close() error { return s.root.Close() }

// CheckVersion tells whether v is a version the store can hold (v<major>.<minor>.<patch>).
func CheckVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("%w %q: want v<major>.<minor>.<patch>, e.g. v1.38.0", ErrBadVersion, v)
	}
	return nil
}

// BinaryPath is where a binary of a version lives in a store over dir.
func BinaryPath(dir, version, name string) string {
	return filepath.Join(dir, version, Platform, name)
}

// Binaries returns kubeadm, kubelet and kubectl of a version, keyed by name. A missing
// version or binary is an error wrapping ErrNotFound that names the path expected.
func (s *Store) Binaries(version string) (map[string]Artifact, error) {
	if err := CheckVersion(version); err != nil {
		return nil, err
	}
	fi, err := s.root.Stat(path.Join(version, Platform))
	switch {
	case errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir():
		return nil, fmt.Errorf("version %s is %w: want its binaries in %s",
			version, ErrNotFound, filepath.Join(s.cfg.Dir, version, Platform, "{"+strings.Join(Names, ",")+"}"))
	case err != nil:
		// A link out of the directory, for one.
		return nil, fmt.Errorf("version %s: %w", version, err)
	}
	out := make(map[string]Artifact, len(Names))
	for _, name := range Names {
		a, err := s.artifact(version, name)
		if err != nil {
			return nil, err
		}
		out[name] = a
	}
	return out, nil
}

// List returns every binary present, sorted by version (numerically) then name. Files it
// cannot read (a symbolic link out of the directory, a directory where a binary should be)
// are left out and named in the error, which is then non-nil beside what could be read.
func (s *Store) List() ([]Artifact, error) {
	return s.scan()
}

// artifact hashes (or recalls) one binary.
func (s *Store) artifact(version, name string) (Artifact, error) {
	rel := path.Join(version, Platform, name)
	full := BinaryPath(s.cfg.Dir, version, name)
	f, err := s.root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		s.forget(rel)
		return Artifact{}, fmt.Errorf("%s of Kubernetes %s is %w: want it at %s", name, version, ErrNotFound, full)
	}
	if err != nil {
		s.forget(rel)
		return Artifact{}, fmt.Errorf("%s of Kubernetes %s: %w", name, version, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Artifact{}, fmt.Errorf("%s of Kubernetes %s: %w", name, version, err)
	}
	if !fi.Mode().IsRegular() {
		s.forget(rel)
		return Artifact{}, fmt.Errorf("%s of Kubernetes %s: %s is not a regular file", name, version, full)
	}
	sum, err := s.sum(rel, f, keyOf(fi))
	if err != nil {
		return Artifact{}, fmt.Errorf("%s of Kubernetes %s: hash %s: %w", name, version, full, err)
	}
	return Artifact{Name: name, Version: version, SHA256: sum, Size: fi.Size()}, nil
}

// sum returns the SHA-256 of rel, open as f with identity key: the remembered one while the
// identity is unchanged (no read at all), else the content's, read from f and remembered.
func (s *Store) sum(rel string, f *os.File, key fileKey) (string, error) {
	s.mu.Lock()
	if e, ok := s.files[rel]; ok && e.key == key {
		s.mu.Unlock()
		return e.sum, nil
	}
	if c, ok := s.hashing[rel]; ok && c.key == key {
		s.mu.Unlock()
		<-c.done
		return c.sum, c.err
	}
	c := &hashCall{key: key, done: make(chan struct{})}
	s.hashing[rel] = c
	s.mu.Unlock()

	s.reads.Add(1)
	c.sum, c.err = hashFile(f, key)

	s.mu.Lock()
	if s.hashing[rel] == c {
		delete(s.hashing, rel)
	}
	if c.err == nil {
		s.record(rel, entry{key: key, sum: c.sum})
	}
	s.mu.Unlock()
	close(c.done)
	return c.sum, c.err
}

// errChanged is a file written to while it was being hashed: its hash means nothing.
var errChanged = errors.New("the file changed while it was read")

// hashFile hashes f's first key.size bytes with ReadAt, leaving its offset alone for
// whoever serves it next. The identity is checked again afterwards, so a file rewritten
// during the read is not remembered under a hash of half of each content.
func hashFile(f *os.File, key fileKey) (string, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, key.size))
	if err != nil {
		return "", err
	}
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if n != key.size || keyOf(fi) != key {
		return "", errChanged
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// record remembers rel's hash; s.mu is held.
func (s *Store) record(rel string, e entry) {
	s.unindex(rel)
	s.files[rel] = e
	if s.byHash[e.sum] == nil {
		s.byHash[e.sum] = map[string]struct{}{}
	}
	s.byHash[e.sum][rel] = struct{}{}
}

// forget drops what is remembered of rel (gone, or no longer a file the store may serve).
func (s *Store) forget(rel string) {
	s.mu.Lock()
	s.unindex(rel)
	delete(s.files, rel)
	s.mu.Unlock()
}

func (s *Store) unindex(rel string) {
	old, ok := s.files[rel]
	if !ok {
		return
	}
	delete(s.byHash[old.sum], rel)
	if len(s.byHash[old.sum]) == 0 {
		delete(s.byHash, old.sum)
	}
}

// scan walks the whole directory, hashing what it has not seen (or has seen change) and
// forgetting what is gone.
func (s *Store) scan() ([]Artifact, error) {
	entries, err := fs.ReadDir(s.root.FS(), ".")
	if err != nil {
		return nil, fmt.Errorf("kubernetes artifact store: read %s: %w", s.cfg.Dir, err)
	}
	var out []Artifact
	var errs []error
	present := map[string]bool{}
	for _, e := range entries {
		v := e.Name()
		if CheckVersion(v) != nil {
			continue
		}
		for _, name := range Names {
			a, err := s.artifact(v, name)
			switch {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				errs = append(errs, err)
			default:
				out = append(out, a)
				present[path.Join(v, Platform, name)] = true
			}
		}
	}
	s.mu.Lock()
	for rel := range s.files {
		if !present[rel] {
			s.unindex(rel)
			delete(s.files, rel)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Artifact) int {
		if c := compareVersions(a.Version, b.Version); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, errors.Join(errs...)
}

// compareVersions orders valid versions numerically (v1.9.0 before v1.10.0).
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a[1:], "."), strings.Split(b[1:], ".")
	for i := range pa {
		if c := compareNumbers(pa[i], pb[i]); c != 0 {
			return c
		}
	}
	return 0
}

// compareNumbers compares decimal numbers of any length without parsing them.
func compareNumbers(x, y string) int {
	x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
	if c := cmp.Compare(len(x), len(y)); c != 0 {
		return c
	}
	return strings.Compare(x, y)
}
