// Package tftp serves the iPXE first-stage binaries (undionly.kpxe, ipxe.efi, snponly.efi)
// over read-only TFTP, on top of github.com/pin/tftp/v3. Only the first stage travels over
// TFTP; the kernel and initrd go over HTTP (package httpboot), since lock-step TFTP through
// a PXE ROM's UNDI driver is slow (FACTS.md §3: an 8 MB kernel took 15 s over UNDI).
//
// # Confinement
//
// A request names a file; the name must be in canonical form (one leading "/" is dropped),
// free of control bytes and backslashes, at most 255 bytes, and in Config.Files. The file is
// then opened through os.Root, which refuses symbolic links that lead out of Config.Assets
// (and absolute symbolic links: link assets with relative targets, or copy them from
// /usr/lib/ipxe). pin/tftp sends every handler error as TFTP error code 1; the message says
// "access violation" for malformed or escaping names and "file not found" for unlisted or
// missing ones, and never carries a path or an OS error.
//
// # Transfer options, measured
//
// BenchmarkTFTP: loopback, a 16 MiB file, pin's own Go client in the same process (lock-step,
// acknowledging every block, like iPXE); median of `-benchtime 5x -count 7` on a 2-vCPU VM
// shared with other jobs (load ~2; single runs vary by up to 35%):
//
//	blksize  512, lock-step                  36.8 MB/s
//	blksize 1432, lock-step (what iPXE asks)  98.3 MB/s   <- DefaultConfig
//	blksize 1468, lock-step                 103.3 MB/s
//	blksize 8192, lock-step                 517   MB/s   (loopback only: fragments on Ethernet)
//	blksize 1432, anticipate 8              130.9 MB/s
//	blksize 1432, anticipate 16             136.3 MB/s
//
// BenchmarkRetransmit: a 1 MiB file through a relay on 127.0.0.1 that drops 2% of the data
// datagrams (fixed seed: 17 drops), blksize 1432, pin's client left at its 5 s timeout so that
// the server's retransmission drives recovery, as with iPXE (iPXE re-acknowledges the last
// block it has, and pin ignores such duplicate ACKs until its own timer fires):
//
//	pin defaults: timeout 5 s + random 0-1 s backoff   95.7-96.8 s (two runs; 5.7 s per loss)
//	timeout 1 s, no backoff                            17.1 s
//	timeout 500 ms, no backoff                          8.5 s   <- DefaultConfig
//
// Decisions (DefaultConfig):
//   - MaxBlockSize 1468 = 1500 (Ethernet MTU) - 20 (IPv4) - 8 (UDP) - 4 (TFTP header). pin
//     clamps blksize to the interface MTU - 28, forgetting the TFTP header, so a client
//     asking for 1472 on a 1500-byte link would get fragmented datagrams; the cap also
//     protects clients behind 1500-byte links when the server's interface has jumbo frames.
//     iPXE asks for 1432. At the sizes served (undionly.kpxe 74 KB = 53 blocks, ipxe.efi
//     ~1 MB = ~730 blocks) a LAN transfer takes milliseconds either way.
//   - Anticipate (pin's non-standard sender window) off: 1.3-1.4x here (FACTS.md measured 4x
//     with external clients on 30 MiB), but it relies on the client acknowledging every block
//     in order, is untested with firmware TFTP clients (UEFI MTFTP, NIC ROMs), and saves
//     nothing measurable on a 74 KB file.
//   - Timeout 500 ms, no backoff, Retries 10: a lost data block costs one Timeout, so pin's
//     defaults make 2% loss 11x slower than this. Premature retransmissions are harmless
//     (pin ignores the duplicate ACKs they cause, so there is no Sorcerer's Apprentice
//     storm) and 500 ms is still ~200x the 2.7 ms per block of the slowest client seen (UNDI
//     under emulation, FACTS.md §3). Ten retries abandon a client after 5.5 s of silence on
//     one block, freeing its socket and goroutine (pin's defaults: 6 x (5 s + backoff), ~33 s).
//   - No single-port mode: every transfer is served from an ephemeral port (firewalls must
//     allow replies from it; conntrack's tftp helper does), because pin's single-port mode
//     is experimental and measured 3-8x slower.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deployme/deployme/internal/logkey"
)

// The errors a refused request reports; their text is the TFTP error message the client
// sees. OnTransfer receives errors wrapping them (errors.Is), with the reason attached.
var (
	// ErrNotFound: the name is not in Config.Files, or the file is missing from Assets.
	ErrNotFound = errors.New("file not found")
	// ErrAccessViolation: the name is malformed or leads outside Assets, or the listed
	// name is not a regular file.
	ErrAccessViolation = errors.New("access violation")
)

// Limits of the blksize option (RFC 2348) as pin/tftp applies them: its SetBlockSize
// ignores 512 and below (512 is TFTP's base size, always allowed).
const (
	minMaxBlockSize = 513
	maxMaxBlockSize = 65464
	// maxAnticipate is pin's largest sender window; it silently caps larger values.
	maxAnticipate = 60
)

// Config configures the server. Start from DefaultConfig.
type Config struct {
	// Assets is the directory holding the files.
	Assets string
	// Files are the only names served, relative to Assets, in canonical form.
	Files []string
	// OnTransfer, when set, is called after every read request, refused ones included: the
	// coordinator maps the address to a machine for its boot history. file is the canonical
	// name when the request named a listed file, else the name as received (untrusted).
	// bytes counts file bytes handed to the transfer. err is nil on success, wraps
	// ErrNotFound or ErrAccessViolation on refusal, or is the transfer's failure.
	OnTransfer func(remote netip.AddrPort, file string, bytes int64, err error)
	// Metrics receives deployme_tftp_transfers_total{file,result} and
	// deployme_tftp_bytes_total{file}; nil registers nothing.
	Metrics prometheus.Registerer
	Logger  *slog.Logger

	// MaxBlockSize caps the blksize option a client may negotiate (see the package comment).
	MaxBlockSize int
	// Timeout is how long the server waits for an acknowledgement before retransmitting.
	Timeout time.Duration
	// Retries is how many times an unacknowledged datagram is sent again before the
	// transfer is abandoned, after (Retries+1) x Timeout of silence.
	Retries int
	// Anticipate, above 1, enables pin/tftp's experimental sender window of that many
	// blocks; 0 or 1 is standard lock-step TFTP.
	Anticipate uint
}

// DefaultConfig returns the defaults measured in the package comment. Assets is left empty.
func DefaultConfig() Config {
	return Config{
		Files:        []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"},
		MaxBlockSize: 1468,
		Timeout:      500 * time.Millisecond,
		Retries:      10,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Assets == "":
		return errors.New("tftp: assets directory is empty")
	case len(c.Files) == 0:
		return errors.New("tftp: no files to serve")
	case c.MaxBlockSize < minMaxBlockSize || c.MaxBlockSize > maxMaxBlockSize:
		return fmt.Errorf("tftp: max block size %d outside %d..%d", c.MaxBlockSize, minMaxBlockSize, maxMaxBlockSize)
	case c.Timeout <= 0:
		return errors.New("tftp: timeout must be positive")
	case c.Retries < 1:
		return errors.New("tftp: retries must be at least 1")
	case c.Anticipate > maxAnticipate:
		return fmt.Errorf("tftp: anticipate window %d above pin/tftp's maximum %d", c.Anticipate, maxAnticipate)
	}
	for i, f := range c.Files {
		rel, err := cleanPath(f)
		if err != nil || rel != f {
			return fmt.Errorf("tftp: file %q must be a canonical relative name inside the assets directory", f)
		}
		if slices.Contains(c.Files[:i], f) {
			return fmt.Errorf("tftp: file %q listed twice", f)
		}
	}
	return nil
}

// Transfer results, the "result" label of deployme_tftp_transfers_total.
const (
	resultOK       = "ok"
	resultNotFound = "not_found"
	resultDenied   = "denied"
	resultFailed   = "failed"
)

// otherFile labels requests for unlisted names, so clients cannot grow the label set.
const otherFile = "other"

// Server is a read-only TFTP server for the listed files.
type Server struct {
	cfg       Config
	logger    *slog.Logger
	files     map[string]bool
	transfers *prometheus.CounterVec
	bytes     *prometheus.CounterVec
}

// New checks cfg and builds a server. A missing assets directory is an error; a missing
// listed file is only logged, since it may be installed later and is looked up per request.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := os.Stat(cfg.Assets)
	if err != nil {
		return nil, fmt.Errorf("tftp: assets directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("tftp: assets %s is not a directory", cfg.Assets)
	}
	s := &Server{cfg: cfg, logger: cfg.Logger, files: make(map[string]bool, len(cfg.Files))}
	for _, name := range cfg.Files {
		s.files[name] = true
		if f, _, err := openAsset(cfg.Assets, name); err != nil {
			s.logger.Warn("tftp file not servable yet", logkey.Path, name, logkey.Err, err)
		} else {
			f.Close()
		}
	}
	s.transfers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployme_tftp_transfers_total", Help: "TFTP read requests by file and result (ok, not_found, denied, failed).",
	}, []string{"file", "result"})
	s.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployme_tftp_bytes_total", Help: "File bytes handed to TFTP transfers, by file.",
	}, []string{"file"})
	if cfg.Metrics != nil {
		if s.transfers, err = register(cfg.Metrics, s.transfers); err != nil {
			return nil, err
		}
		if s.bytes, err = register(cfg.Metrics, s.bytes); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// register adopts an identical collector already registered, so a restarted server (a new
// Server on the same registry) keeps counting instead of failing.
func register(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("tftp: metrics: %w", err)
	}
	return c, nil
}

// Serve answers read requests arriving on conn until ctx ends, then returns nil; it closes
// conn. Each transfer runs from its own ephemeral port. On cancellation Serve waits for
// running transfers, each bounded by (Retries+1) x Timeout of silence.
//
// pin sizes blocks from the receiving interface's MTU, learnt through IP_PKTINFO, which it
// enables when Serve starts: a request already queued on conn by then is served with
// 512-byte blocks (it still succeeds).
func (s *Server) Serve(ctx context.Context, conn *net.UDPConn) error {
	if conn == nil {
		return errors.New("tftp: no connection")
	}
	srv := tftp.NewServer(s.read, nil) // nil write handler: write requests are refused
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetBlockSize(s.cfg.MaxBlockSize)
	srv.SetAnticipate(s.cfg.Anticipate)
	// pin sleeps a random 0-1 s before each retransmission by default; the timeout already
	// paces retries, and on a LAN the extra sleep only delays recovery (package comment).
	srv.SetBackoff(func(int) time.Duration { return 0 })
	srv.SetHook(hook{s.logger})

	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	s.logger.Info("tftp serving", logkey.Addr, conn.LocalAddr().String())
	select {
	case <-ctx.Done():
		srv.Shutdown() // closes conn, then waits for the running transfers
		<-done
		return nil
	case err := <-done:
		// pin's Serve only returns by itself when it cannot classify the local address.
		conn.Close()
		return fmt.Errorf("tftp: serve: %w", err)
	}
}

// read is pin's read handler: it runs once per read request, in that request's goroutine,
// so it sees the whole transfer and does the logging, counting and reporting.
func (s *Server) read(name string, rf io.ReaderFrom) error {
	start := time.Now()
	var remote netip.AddrPort
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ua := ot.RemoteAddr()
		remote = ua.AddrPort()
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	}
	file, n, err := s.send(name, rf)
	label := otherFile
	if s.files[file] {
		label = file
	}
	result := resultOK
	switch {
	case errors.Is(err, ErrNotFound):
		result = resultNotFound
	case errors.Is(err, ErrAccessViolation):
		result = resultDenied
	case err != nil:
		result = resultFailed
	}
	s.transfers.WithLabelValues(label, result).Inc()
	s.bytes.WithLabelValues(label).Add(float64(n))
	attrs := []any{logkey.RemoteAddr, remote.String(), logkey.Path, file, logkey.Bytes, n,
		logkey.Duration, time.Since(start)}
	if err != nil {
		s.logger.Warn("tftp transfer failed", append(attrs, logkey.Result, result, logkey.Err, err)...)
	} else {
		s.logger.Info("tftp transfer done", attrs...)
	}
	if s.cfg.OnTransfer != nil {
		s.cfg.OnTransfer(remote, file, n, err)
	}
	if err != nil && result != resultFailed {
		// Only the bare sentinel goes on the wire: the detail stays in the log.
		if result == resultDenied {
			return ErrAccessViolation
		}
		return ErrNotFound
	}
	// A failed transfer was already aborted by pin (which then ignores the returned error).
	return err
}

// send checks name and streams the file. It returns the canonical name when name is valid,
// else name itself, for logs and metrics.
func (s *Server) send(name string, rf io.ReaderFrom) (string, int64, error) {
	rel, err := cleanPath(name)
	if err != nil {
		return name, 0, err
	}
	if !s.files[rel] {
		return rel, 0, fmt.Errorf("%w: %q is not served", ErrNotFound, rel)
	}
	f, st, err := openAsset(s.cfg.Assets, rel)
	if err != nil {
		return rel, 0, err
	}
	defer f.Close()
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		// Announce the size from the same descriptor that is sent (tsize, RFC 2349), so a
		// file replaced meanwhile cannot make the announced size and the content disagree.
		ot.SetSize(st.Size())
	}
	n, err := rf.ReadFrom(f)
	if err != nil {
		return rel, n, fmt.Errorf("transfer: %w", err)
	}
	return rel, n, nil
}

// hook receives pin's per-transfer callbacks. pin calls it for reads too, which the read
// handler already reports at Info/Warn; the hook adds, at Debug, the negotiated options and
// what the handler never sees (malformed packets, write requests), per-packet events all.
type hook struct{ logger *slog.Logger }

func (h hook) OnSuccess(st tftp.TransferStats) {
	h.logger.Debug("tftp transfer stats", logkey.RemoteAddr, st.RemoteAddr.String(), logkey.Path, st.Filename,
		logkey.TFTPOptions, fmt.Sprint(st.Opts), logkey.Duration, st.Duration)
}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	h.logger.Debug("tftp request failed", logkey.RemoteAddr, st.RemoteAddr.String(), logkey.Path, st.Filename,
		logkey.Err, err)
}
