// Package hostnet applies the host network config coordinators send (an infra's template
// made concrete for this host) with agent/netconf, one at a time, newest first, and checks
// afterwards that a coordinator is still reachable: if not, netconf rolls the change back,
// because a host that lost its path to the coordinators can no longer be told the fix.
package hostnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/deployme/deployme/agent/netconf"
	"github.com/deployme/deployme/internal/atomicfile"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Applier is what hostnet needs of agent/netconf.
type Applier interface {
	ApplyChecked(ctx context.Context, c netconf.Config, probe func(context.Context) error, within time.Duration) (netconf.Changes, error)
}

// Config configures a Handler.
type Config struct {
	Applier Applier
	// Coordinators are dialled (TCP) by the probe after a change; one answering is enough.
	Coordinators []string
	// StateDir keeps the revision last applied (network-revision).
	StateDir string
	// Within is how long the probe may take to succeed before the change is rolled back.
	Within time.Duration
	Logger *slog.Logger
}

// Handler implements coordclient.NetworkHandler.
type Handler struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	pending *agentv1.NetworkConfig
	send    func(*agentv1.NetworkResult)
	running bool
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Applier == nil || cfg.StateDir == "" || len(cfg.Coordinators) == 0 {
		return nil, errors.New("hostnet: an applier, a state directory and coordinators are required")
	}
	if cfg.Within <= 0 {
		cfg.Within = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log}, nil
}

// ApplyNetwork queues c; one goroutine applies the newest queued config at a time.
func (h *Handler) ApplyNetwork(ctx context.Context, c *agentv1.NetworkConfig, send func(*agentv1.NetworkResult)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending, h.send = c, send
	if h.running {
		return
	}
	h.running = true
	go h.loop(ctx)
}

func (h *Handler) loop(ctx context.Context) {
	for {
		h.mu.Lock()
		c, send := h.pending, h.send
		h.pending = nil
		if c == nil || ctx.Err() != nil {
			h.running = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		send(h.apply(ctx, c))
	}
}

func (h *Handler) revisionFile() string { return filepath.Join(h.cfg.StateDir, "network-revision") }

// apply applies one config. A revision already applied is not applied again (the
// coordinators send it on every new stream) and reported applied without changes.
func (h *Handler) apply(ctx context.Context, c *agentv1.NetworkConfig) *agentv1.NetworkResult {
	res := &agentv1.NetworkResult{Revision: c.GetRevision()}
	if b, err := os.ReadFile(h.revisionFile()); err == nil && strings.TrimSpace(string(b)) == c.GetRevision() {
		res.State = "applied"
		return res
	}
	var cfg netconf.Config
	dec := json.NewDecoder(strings.NewReader(string(c.GetJson())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		res.State, res.Error = "failed", fmt.Sprintf("decode: %v", err)
		return res
	}
	if err := cfg.Validate(); err != nil {
		res.State, res.Error = "failed", err.Error()
		return res
	}
	changes, err := h.cfg.Applier.ApplyChecked(ctx, cfg, h.probe, h.cfg.Within)
	res.Changes = changes
	switch {
	case errors.Is(err, netconf.ErrRolledBack):
		res.State, res.Error = "rolled_back", err.Error()
		h.log.Error("network change rolled back", "revision", c.GetRevision(), "err", err)
	case err != nil:
		res.State, res.Error = "failed", err.Error()
		h.log.Error("network change failed", "revision", c.GetRevision(), "err", err)
	default:
		res.State = "applied"
		h.log.Info("network applied", "revision", c.GetRevision(), "changes", len(changes))
		if err := atomicfile.Write(h.revisionFile(), []byte(c.GetRevision()+"\n"), 0o600); err != nil {
			h.log.Warn("cannot record the network revision", "err", err)
		}
	}
	return res
}

// probe succeeds once a TCP connection to any coordinator opens.
func (h *Handler) probe(ctx context.Context) error {
	var errs []error
	for _, addr := range h.cfg.Coordinators {
		d := net.Dialer{Timeout: 2 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
