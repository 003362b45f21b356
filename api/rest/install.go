package rest

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
)

// Installer is what a host downloads to install the agent: the install script and the
// agent binary. Like Backend, it returns *v1.Error for anything the client should see
// (not_found for a platform without a binary, unavailable when the binary is missing).
type Installer interface {
	// InstallScript is the script served at /install.sh, this coordinator's address in it.
	InstallScript() []byte
	// AgentBinary opens the agent binary for a platform (Go's GOOS and GOARCH names);
	// the caller closes its Content.
	AgentBinary(goos, goarch string) (*AgentBinary, error)
}

// AgentBinary is an opened agent binary and what describes it.
type AgentBinary struct {
	// Name is the file name a client saves it under (deployme-agent).
	Name    string
	ModTime time.Time
	// SHA256 is the lowercase hex SHA-256 of Content.
	SHA256  string
	Content io.ReadSeekCloser
}

// platformValue is what ?os= and ?arch= may hold: Go's GOOS and GOARCH names.
var platformValue = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// platform reads ?os= and ?arch=, both required. It only checks their form: which
// platforms have a binary is the installer's business (404).
func platform(r *http.Request) (goos, goarch string, err error) {
	q := newQuery(r.URL, "os", "arch")
	goos, goarch = q.str("os"), q.str("arch")
	if q.err != nil {
		return "", "", q.err
	}
	for _, p := range [][2]string{{"os", goos}, {"arch", goarch}} {
		switch {
		case p[1] == "":
			return "", "", v1.InvalidField(p[0], "%s is required (e.g. ?os=linux&arch=amd64)", p[0])
		case !platformValue.MatchString(p[1]):
			return "", "", v1.InvalidField(p[0], "%s must be 1-32 lowercase letters, digits or underscores (Go's names: linux, amd64)", p[0])
		}
	}
	return goos, goarch, nil
}

func (h *Handler) installer() (Installer, error) {
	if h.cfg.Installer == nil {
		return nil, v1.Errorf(v1.CodeUnavailable, "this coordinator does not serve agent installation")
	}
	return h.cfg.Installer, nil
}

func (h *Handler) installScript(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	in, err := h.installer()
	if err != nil {
		return err
	}
	body := in.InstallScript()
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
	return nil
}

func (h *Handler) openAgent(r *http.Request) (*AgentBinary, error) {
	goos, goarch, err := platform(r)
	if err != nil {
		return nil, err
	}
	in, err := h.installer()
	if err != nil {
		return nil, err
	}
	return in.AgentBinary(goos, goarch)
}

func (h *Handler) agentDownload(w http.ResponseWriter, r *http.Request, _ *principal) error {
	bin, err := h.openAgent(r)
	if err != nil {
		return err
	}
	defer bin.Content.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+bin.Name+`"`)
	w.Header().Set("X-Checksum-Sha256", bin.SHA256)
	// The digest names the content exactly, so a cache revalidates with If-None-Match.
	w.Header().Set("ETag", `"sha256:`+bin.SHA256+`"`)
	// The answer is always the whole file, or 304 to a cache that has it: a range (206) or
	// a failed precondition (412) would be answers the contract does not list, and the
	// script never asks for them. RFC 9110 lets a server ignore Range.
	r = r.Clone(r.Context())
	for _, hd := range []string{"Range", "If-Range", "If-Match", "If-Unmodified-Since"} {
		r.Header.Del(hd)
	}
	http.ServeContent(w, r, bin.Name, bin.ModTime, bin.Content)
	return nil
}

func (h *Handler) agentChecksum(w http.ResponseWriter, r *http.Request, _ *principal) error {
	bin, err := h.openAgent(r)
	if err != nil {
		return err
	}
	bin.Content.Close()
	// The format of sha256sum, so `sha256sum -c` checks a download saved under its name.
	body := bin.SHA256 + "  " + bin.Name + "\n"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
	return nil
}
