// Package artifacts serves what a host downloads to install the agent: the install script
// (a template with this coordinator's address and the agent's systemd unit baked in) and
// the agent binary with its SHA-256. It implements the REST layer's rest.Installer.
package artifacts

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"

	"github.com/deployme/deployme/api/rest"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/units"
)

// AgentName is the agent binary's name on a host (/usr/local/bin/deployme-agent) and in
// downloads.
const AgentName = "deployme-agent"

// Platforms with an agent binary. One binary, one platform, for now.
const (
	agentOS   = "linux"
	agentArch = "amd64"
)

//go:embed install.sh
var scriptTemplate string

// unitEnd ends the here-document that carries the unit inside the script.
const unitEnd = "DEPLOYME_UNIT_END"

var script = template.Must(template.New("install.sh").Funcs(template.FuncMap{
	"shquote": shquote,
}).Parse(scriptTemplate))

// Config configures the artifacts.
type Config struct {
	// AgentBinary is the path of the linux/amd64 agent binary; empty serves none (503).
	AgentBinary string
	// AdvertiseHTTP is the host:port hosts reach this coordinator's HTTP at: the script
	// downloads the binary from there.
	AdvertiseHTTP string
}

// Store serves the artifacts. It is safe for concurrent use.
type Store struct {
	cfg    Config
	script []byte

	mu     sync.Mutex
	cached *digest
	// hashes counts how many times the binary was read to hash it (tests).
	hashes atomic.Int64
}

// digest is the SHA-256 of one version of the binary, told apart from the next by the
// file's identity, size and modification time.
type digest struct {
	info fs.FileInfo
	sum  string
}

// New renders the install script.
func New(cfg Config) (*Store, error) {
	if _, port, err := net.SplitHostPort(cfg.AdvertiseHTTP); err != nil || port == "" || port == "0" {
		return nil, fmt.Errorf("install script: advertised HTTP address %q must be host:port with a fixed port", cfg.AdvertiseHTTP)
	}
	// The unit travels in a quoted here-document: a line equal to its end marker would
	// end it early and run the rest of the unit as shell.
	for _, line := range strings.Split(units.Agent, "\n") {
		if line == unitEnd {
			return nil, fmt.Errorf("install script: the agent unit contains the line %q", unitEnd)
		}
	}
	var b bytes.Buffer
	err := script.Execute(&b, map[string]string{
		"URL":     "http://" + cfg.AdvertiseHTTP,
		"Unit":    strings.TrimSuffix(units.Agent, "\n"),
		"UnitEnd": unitEnd,
		"Name":    AgentName,
	})
	if err != nil {
		return nil, fmt.Errorf("install script: %w", err)
	}
	return &Store{cfg: cfg, script: b.Bytes()}, nil
}

// shquote quotes s for the shell: inside single quotes nothing is special but the quote.
func shquote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// InstallScript is the rendered install script.
func (s *Store) InstallScript() []byte { return s.script }

// AgentBinary opens the agent binary for a platform and returns it with its SHA-256.
func (s *Store) AgentBinary(goos, goarch string) (*rest.AgentBinary, error) {
	if goos != agentOS || goarch != agentArch {
		return nil, v1.Errorf(v1.CodeNotFound, "no agent binary for %s/%s; available: %s/%s", goos, goarch, agentOS, agentArch)
	}
	path := s.cfg.AgentBinary
	if path == "" {
		return nil, v1.Errorf(v1.CodeUnavailable, "no agent binary is configured on this coordinator (--agent-binary)")
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, v1.Errorf(v1.CodeUnavailable, "agent binary not found at %s", path)
	}
	if err != nil {
		return nil, v1.Errorf(v1.CodeUnavailable, "cannot read the agent binary: %v", err)
	}
	// The digest and the content come from the same open file: a binary replaced by a
	// rename (as packages and `install` do) while this answer is sent is a new file, and
	// this one keeps its bytes and its digest.
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	var sum string
	if err == nil {
		sum, err = s.sum(f, info)
	}
	if err != nil {
		f.Close()
		return nil, v1.Errorf(v1.CodeUnavailable, "cannot read the agent binary: %v", err)
	}
	return &rest.AgentBinary{Name: AgentName, ModTime: info.ModTime(), SHA256: sum, Content: f}, nil
}

// sum returns the file's SHA-256, hashing it only when it is not the file last hashed, or
// that file's size or modification time changed (rewritten in place). Hashing holds the
// lock, so a new binary is read once however many hosts ask for it at the same time.
func (s *Store) sum(f *os.File, info fs.FileInfo) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cached; c != nil && os.SameFile(c.info, info) && c.info.Size() == info.Size() && c.info.ModTime().Equal(info.ModTime()) {
		return c.sum, nil
	}
	s.hashes.Add(1)
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if n != info.Size() {
		// Being written right now: neither this digest nor these bytes are worth serving.
		return "", fmt.Errorf("%s changed while it was read; retry", f.Name())
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.cached = &digest{info: info, sum: sum}
	return sum, nil
}
