// Package httpboot is the HTTP side of the PXE boot chain, mounted in the coordinator's HTTP
// server: iPXE fetches a per-machine script from /boot/ipxe?mac=..., then the kernel and
// initrd from /boot/vmlinuz and /boot/initrd.img.
//
// # Script safety
//
// Machine fields come from the inventory and may hold anything. The script template never
// sees them raw: kernel command-line values and the echoed hostname are percent-encoded
// (every byte outside A-Z a-z 0-9 - . _ ~ : [ ] becomes %XX, "%" included), so a value with a
// newline, a space, quotes, "${...}", ";" or "||" stays one inert argument instead of
// becoming another iPXE command, a settings expansion or another kernel argument. Encoding
// rather than refusing keeps a machine bootable whatever its hostname. URLs that must appear
// verbatim (BaseURL, checked by New; DiskChain, per request) are refused when they hold a
// byte outside a URL allowlist; so are an unknown Next or DiskExit, a missing coordinator or
// join token, and a command line over the kernel's 2047 bytes: the request fails with 500
// and the reason is logged, never sent.
//
// # Kernel command line (the contract with the netboot /init)
//
//	initrd=initrd.img console=tty0 console=ttyS0
//	deployme.coordinator=<enc>[,<enc>...]  gRPC host:port of each coordinator
//	deployme.join_token=<enc>
//	deployme.ca_hash=<enc>                  "sha256:<hex>", or empty
//	deployme.initrd_sha256=<hex>            SHA-256 of initrd.img as this server serves it
//	deployme.boot_mac=<mac>                 the MAC that fetched the script (the boot NIC)
//	deployme.hostname=<enc>                 may be empty
//
// /init splits deployme.coordinator on "," and percent-decodes every value (RFC 3986; values
// without "%" decode to themselves).
//
// # Integrity without HTTPS
//
// Debian's iPXE (2019) has no HTTPS, so the files travel in clear. Each file response carries
// ETag (the quoted hex SHA-256, computed once per file version and cached) and Digest
// (sha-256=<base64>, RFC 3230); the initrd's digest is also on the kernel command line so
// /init can check the image it was given (e.g. via retain_initrd where the kernel exposes
// /sys/firmware/initrd). This detects truncation and version skew (an initrd replaced
// between script and download), not tampering: whoever can alter the initrd on the wire can
// alter the script too. Protection against that needs HTTPS in iPXE or signed images.
package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/deployme/deployme/internal/logkey"
)

// Machine is what one machine boots next.
type Machine struct {
	MAC net.HardwareAddr
	// Hostname comes from the inventory and may contain anything; it is only ever placed in
	// the script percent-encoded.
	Hostname string
	// Next is NextAgent (the live image) or NextDisk.
	Next string
	// DiskExit says how a disk boot leaves iPXE: DiskExitExit (the default, back to the
	// firmware's next boot device), DiskExitSanboot (sanboot --no-describe --drive 0x80,
	// for BIOSes that do not fall through) or DiskExitChain (chain to DiskChain).
	DiskExit string
	// DiskChain is the http, https or tftp URL chained to for DiskExitChain.
	DiskChain string
	// The kernel command-line values the netboot /init reads (package comment).
	Coordinators []string // gRPC host:port list
	JoinToken    string
	CAHash       string // "sha256:<hex>"
}

// Backend is what the handler needs from the coordinator.
type Backend interface {
	// Machine returns what this MAC must boot (unknown machines get the live agent image
	// with the infra's join token: the backend decides).
	Machine(ctx context.Context, mac net.HardwareAddr) (Machine, error)
	// Event records a step of a machine's boot for its history: kind is EventScript,
	// EventKernel or EventInitrd.
	Event(mac net.HardwareAddr, kind, detail string)
}

// Event kinds passed to Backend.Event.
const (
	// EventScript: a script was served; detail is "agent", "disk exit", "disk sanboot" or
	// "disk chain".
	EventScript = "boot.script"
	// EventKernel and EventInitrd: a file was requested with ?mac=; detail is
	// "status=<code> bytes=<n>".
	EventKernel = "boot.kernel"
	EventInitrd = "boot.initrd"
)

// Config configures the handler. Start from DefaultConfig.
type Config struct {
	Backend Backend
	// Assets holds vmlinuz and initrd.img.
	Assets string
	// BaseURL is how iPXE reaches this server, e.g. "http://10.0.0.1:8080" (http or https,
	// no query; a trailing "/" is ignored).
	BaseURL string
	Logger  *slog.Logger
	// BackendTimeout bounds Backend.Machine for one script request: iPXE retries a failed
	// fetch, so a slow backend should fail fast rather than hold the connection.
	BackendTimeout time.Duration
}

// DefaultConfig returns the defaults; Backend, Assets and BaseURL are left to the caller.
func DefaultConfig() Config {
	return Config{BackendTimeout: 5 * time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Backend == nil:
		return errors.New("httpboot: no backend")
	case c.Assets == "":
		return errors.New("httpboot: assets directory is empty")
	case c.BackendTimeout <= 0:
		return errors.New("httpboot: backend timeout must be positive")
	}
	u, err := checkURL(c.BaseURL, "http", "https")
	if err != nil {
		return fmt.Errorf("httpboot: base URL %q: %w", c.BaseURL, err)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("httpboot: base URL %q must not have a query", c.BaseURL)
	}
	return nil
}

// Handler serves GET and HEAD for /boot/ipxe, /boot/vmlinuz and /boot/initrd.img.
type Handler struct {
	cfg     Config
	logger  *slog.Logger
	baseURL string
	kernel  *asset
	initrd  *asset
}

// New checks cfg and builds the handler. The files are looked up per request, so they may
// appear or change after New.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		cfg:     cfg,
		logger:  cfg.Logger,
		baseURL: strings.TrimRight(cfg.BaseURL, "/"),
		kernel:  &asset{path: filepath.Join(cfg.Assets, "vmlinuz")},
		initrd:  &asset{path: filepath.Join(cfg.Assets, "initrd.img")},
	}, nil
}

// ServeHTTP routes the three paths; anything else under the mount point is 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case "/boot/ipxe":
		serve = h.script
	case "/boot/vmlinuz":
		serve = func(w http.ResponseWriter, r *http.Request) { h.file(w, r, h.kernel, EventKernel) }
	case "/boot/initrd.img":
		serve = func(w http.ResponseWriter, r *http.Request) { h.file(w, r, h.initrd, EventInitrd) }
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	serve(w, r)
}

// parseMAC reads the mac query parameter; iPXE sends ${net0/mac}, colon-separated.
func parseMAC(r *http.Request) (net.HardwareAddr, bool) {
	s := r.URL.Query().Get("mac")
	if s == "" || len(s) > 64 {
		return nil, false
	}
	mac, err := net.ParseMAC(s)
	return mac, err == nil
}

func (h *Handler) script(w http.ResponseWriter, r *http.Request) {
	mac, ok := parseMAC(r)
	if !ok {
		http.Error(w, "missing or invalid mac parameter", http.StatusBadRequest)
		return
	}
	log := h.logger.With(logkey.RemoteAddr, r.RemoteAddr, logkey.MAC, mac.String())
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.BackendTimeout)
	defer cancel()
	m, err := h.cfg.Backend.Machine(ctx, mac)
	if err != nil {
		h.internalError(w, log, "boot backend failed", err)
		return
	}
	var initrdSum string
	if m.Next == NextAgent {
		// The agent's script pins the initrd it will fetch: a missing initrd is an error
		// now rather than a failed boot later.
		if initrdSum, err = h.initrd.sha256(); err != nil {
			h.internalError(w, log, "initrd unavailable", err)
			return
		}
	}
	body, detail, err := render(m, mac, h.baseURL, initrdSum)
	if err != nil {
		h.internalError(w, log, "boot script refused", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// The script carries the join token: no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	h.cfg.Backend.Event(mac, EventScript, detail)
	log.Info("boot script served", logkey.BootNext, detail)
}

// internalError logs err and answers 500 without detail: the reason may name inventory
// values or internal state that an unauthenticated boot client must not learn.
func (h *Handler) internalError(w http.ResponseWriter, log *slog.Logger, msg string, err error) {
	log.Error(msg, logkey.Err, err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// file serves an asset with Range, conditional requests and HEAD (http.ServeContent), and
// its digest in ETag and Digest.
func (h *Handler) file(w http.ResponseWriter, r *http.Request, a *asset, kind string) {
	o, err := a.open()
	if err != nil {
		h.logger.Error("boot file unavailable", logkey.Path, r.URL.Path, logkey.Err, err)
		if errors.Is(err, os.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer o.f.Close()
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("ETag", o.etag())
	hdr.Set("Digest", o.digest())
	// Revalidate every time (cheap with the ETag): the file may be replaced at any moment.
	hdr.Set("Cache-Control", "no-cache")
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	http.ServeContent(cw, r, "", o.info.ModTime(), o.f)

	mac, ok := parseMAC(r)
	attrs := []any{logkey.RemoteAddr, r.RemoteAddr, logkey.Path, r.URL.Path, logkey.Status, cw.status, logkey.Bytes, cw.n}
	if ok {
		attrs = append(attrs, logkey.MAC, mac.String())
		h.cfg.Backend.Event(mac, kind, fmt.Sprintf("status=%d bytes=%d", cw.status, cw.n))
	}
	h.logger.Info("boot file served", attrs...)
}

// countingWriter records the status and body bytes ServeContent produced, for the event.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps ServeContent's copy on the server's own ReadFrom (sendfile), which the
// wrapper would otherwise hide.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.ResponseWriter, r)
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
