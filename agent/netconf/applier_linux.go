package netconf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/deployme/deployme/internal/logkey"
)

// ApplierConfig configures an Applier. Start from DefaultConfig.
type ApplierConfig struct {
	// Handle is the netlink handle every change goes through; nil means the namespace the
	// agent runs in (tests pass a handle into a namespace of their own).
	Handle *netlink.Handle
	// StateFile records what Apply created or changed, so that only that is ever undone.
	// It must survive reboots of the agent: losing it makes everything we created look
	// pre-existing, hence never removed.
	StateFile string
	// ProbeInterval is how long ApplyChecked waits between two failed probes.
	ProbeInterval time.Duration
	// Logger gets one Info line per change; nil discards.
	Logger *slog.Logger
}

const (
	defaultStateFile     = "/var/lib/deployme-agent/netconf.json"
	defaultProbeInterval = 200 * time.Millisecond
)

// DefaultConfig returns the configuration of an agent managing the host it runs on.
func DefaultConfig() ApplierConfig {
	return ApplierConfig{StateFile: defaultStateFile, ProbeInterval: defaultProbeInterval}
}

// Validate reports the first field that cannot work.
func (c ApplierConfig) Validate() error {
	if c.StateFile == "" || !filepath.IsAbs(c.StateFile) {
		return fmt.Errorf("netconf: state file %q is not an absolute path", c.StateFile)
	}
	if c.ProbeInterval <= 0 {
		return fmt.Errorf("netconf: probe interval %s is not positive", c.ProbeInterval)
	}
	return nil
}

// Applier makes the host's network match a Config. Its methods are safe for concurrent use;
// applies are serialized, since two interleaved would each undo the other's work.
type Applier struct {
	cfg       ApplierConfig
	h         *netlink.Handle
	ownHandle bool
	log       *slog.Logger

	mu sync.Mutex
}

// New returns an Applier. It reads the state file once so that a corrupt one is reported
// now rather than at the first Apply.
func New(cfg ApplierConfig) (*Applier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := loadState(cfg.StateFile); err != nil {
		return nil, err
	}
	a := &Applier{cfg: cfg, h: cfg.Handle, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if a.h == nil {
		// Route only: a handle for every family also opens XFRM and netfilter sockets,
		// which fail on kernels without those modules and are of no use here.
		h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("netconf: netlink: %w", err)
		}
		a.h, a.ownHandle = h, true
	}
	return a, nil
}

// Close releases the netlink handle New opened; a handle passed in ApplierConfig stays open.
func (a *Applier) Close() {
	if a.ownHandle {
		a.h.Close()
	}
}

// Apply makes the kernel match c and returns what it changed: first it undoes what it owns
// and c no longer wants (routes, addresses, enslavements, links, MTUs, up states), then it
// creates and sets what c wants and the host lacks. Applying the same c again changes
// nothing. On error the host is in between; the state file still records what is ours, and
// Apply can be called again. c must be valid (Validate); nothing changes otherwise.
func (a *Applier) Apply(ctx context.Context, c Config) (Changes, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return a.apply(ctx, c, "")
}

// ApplyChecked applies c and then calls probe, every ProbeInterval, until it returns nil or
// within has passed since the apply finished. If it never succeeds, or the apply fails half
// way, the previously applied config (the state file's) is applied again, and the error
// wraps ErrRolledBack (or ErrRollbackFailed) and the cause. The changes returned include
// those of the rollback, prefixed "rollback: ". An invalid c is refused before anything
// changes. If ctx ends during the probe, the change is rolled back too: an unconfirmed
// network change is not kept. An apply that changes nothing is not probed: the network is
// as it was, and a failing probe would not be ours to fix.
func (a *Applier) ApplyChecked(ctx context.Context, c Config, probe func(context.Context) error, within time.Duration) (Changes, error) {
	if probe == nil || within <= 0 {
		return nil, fmt.Errorf("netconf: ApplyChecked needs a probe and a positive duration: %w", ErrInvalid)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	st, err := loadState(a.cfg.StateFile)
	if err != nil {
		return nil, err
	}
	var prev Config
	if st.Applied != nil {
		prev = *st.Applied
	}
	if err := prev.Validate(); err != nil {
		// Only a state file edited by hand gets here; without a valid way back, no change.
		return nil, fmt.Errorf("netconf: the applied config in %s cannot be rolled back to: %w", a.cfg.StateFile, err)
	}
	changes, cause := a.apply(ctx, c, "")
	if cause == nil && len(changes) == 0 {
		return changes, nil
	}
	if cause == nil {
		if cause = a.probe(ctx, probe, within); cause == nil {
			return changes, nil
		}
		cause = fmt.Errorf("probe: %w", cause)
	}
	a.log.Warn("network change failed its check; rolling back", logkey.Err, cause)
	// The rollback must run even when ctx has ended: leaving the host on an unconfirmed
	// network config is what this function exists to avoid.
	back, err := a.apply(context.WithoutCancel(ctx), prev, "rollback: ")
	changes = append(changes, back...)
	if err != nil {
		return changes, fmt.Errorf("%w: %w (rolling back: %w)", ErrRollbackFailed, cause, err)
	}
	return changes, fmt.Errorf("%w: %w", ErrRolledBack, cause)
}

func (a *Applier) probe(ctx context.Context, probe func(context.Context) error, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(a.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// apply runs one reconciliation of a valid c; prefix is put before every change reported.
func (a *Applier) apply(ctx context.Context, c Config, prefix string) (Changes, error) {
	st, err := loadState(a.cfg.StateFile)
	if err != nil {
		return nil, err
	}
	r := &reconciler{
		ctx: ctx, h: a.h, st: st, path: a.cfg.StateFile, log: a.log, prefix: prefix,
		want: newPlan(c),
	}
	err = r.preflight()
	if err == nil {
		err = r.undo()
	}
	if err == nil {
		err = r.ensure()
	}
	if err == nil && !sameConfig(st.Applied, &c) {
		st.Applied = &c
		r.dirty = true
	}
	if r.dirty {
		// Also after an error: the entries dropped so far must not be undone again.
		if serr := saveState(r.path, st); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	return r.changes, err
}

// sameConfig compares configs as the state file stores them, where a nil and an empty list
// are the same.
func sameConfig(a, b *Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
