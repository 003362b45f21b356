package vip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/deployme/deployme/internal/logkey"
)

// Reasons a Status gives.
const (
	// ReasonAPIServerUnready: the holder gave the VIP up at this epoch because its API server
	// stopped answering.
	ReasonAPIServerUnready = "apiserver_unready"
	// ReasonNoLink: no local link has an address in the VIP's subnet, so the VIP cannot be
	// added. Retried every CheckInterval (the network may be configured later).
	ReasonNoLink = "no_link_for_address"
	// ReasonUnsupportedAddress: the assignment's address is not an IPv4 unicast address
	// with a subnet.
	ReasonUnsupportedAddress = "unsupported_address"
	// ReasonForeignAddress: the VIP is on a local link without our label (set by someone
	// else); it is never removed by this package.
	ReasonForeignAddress = "foreign_address"
	// ReasonAddressError: adding or removing the address failed; retried every
	// CheckInterval.
	ReasonAddressError = "address_error"
)

// ErrRunning is returned by a second concurrent call of Run.
var ErrRunning = errors.New("vip: manager already running")

// Assignment is the coordinator's decision for one cluster at one fencing epoch.
type Assignment struct {
	ClusterID string
	// Address is the VIP with the prefix length of its subnet, e.g. 10.50.0.100/24.
	Address netip.Prefix
	// Epoch only grows; an assignment older than one already seen is ignored.
	Epoch uint64
	// Holder: this host must hold the VIP at Epoch.
	Holder bool
}

// Status is what the agent reports back for one cluster, on change.
type Status struct {
	ClusterID string
	// Epoch is the epoch of the assignment the status refers to.
	Epoch uint64
	// Holding: the address is on a local link now.
	Holding bool
	// Ready: the local API server answered its last readiness check.
	Ready bool
	// Released: this host gave the VIP up at Epoch because its API server stopped
	// answering; it takes it again only at a higher epoch.
	Released bool
	// Reason is one of the Reason constants, "" when all is as assigned.
	Reason string
}

// Manager makes the kernel hold, or not hold, the VIP of each cluster it gets assignments
// for. Create it with New, feed it with Set, and Run it once.
type Manager struct {
	cfg Config
	k   kernel
	log *slog.Logger

	mu sync.Mutex
	// pending holds assignments not yet applied, at most one per cluster, in arrival order.
	pending []Assignment
	// highest is the highest epoch Set accepted per cluster: the fence.
	highest map[string]uint64
	wake    chan struct{}

	running atomic.Bool

	// Owned by Run's goroutine.
	clusters map[string]*cluster
	order    []string // cluster IDs in arrival order, so reports come in a stable order
	ready    bool     // outcome of the last readiness check
}

// cluster is the Manager's state for one cluster.
type cluster struct {
	a Assignment
	// released: gave the VIP up at a.Epoch; cleared only by a higher epoch.
	released bool
	// seenReady: a readiness check succeeded since a.Epoch began. Until then failures do
	// not count: before kubeadm init there is no API server, and the first control plane
	// must keep the VIP through init.
	seenReady bool
	// fails counts consecutive failed checks.
	fails int
	// announced: the gratuitous ARPs for the address now on the link were started.
	announced bool
	garp      *announcement
	last      Status
	reported  bool
}

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger,
		highest:  map[string]uint64{},
		wake:     make(chan struct{}, 1),
		clusters: map[string]*cluster{},
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m.k = kernel{h: cfg.Handle, do: cfg.Do}
	if m.k.h == nil {
		// The zero Handle is netlink's own for the current namespace, with nothing to close.
		m.k.h = &netlink.Handle{}
	}
	if m.k.do == nil {
		m.k.do = func(fn func() error) error { return fn() }
	}
	return m, nil
}

// Set hands the Manager an assignment. It never blocks; Run applies it within
// milliseconds. For one cluster the latest assignment wins, except one with an epoch lower
// than the highest already seen, which is ignored: the fence is checked here, so that a
// stale assignment can never overtake a newer one still waiting to be applied.
func (m *Manager) Set(a Assignment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.highest[a.ClusterID]; ok && a.Epoch < h {
		m.log.Info("stale vip assignment ignored", logkey.ClusterID, a.ClusterID,
			logkey.Epoch, a.Epoch, logkey.HighestEpoch, h)
		return
	}
	m.highest[a.ClusterID] = a.Epoch
	i := -1
	for j, p := range m.pending {
		if p.ClusterID == a.ClusterID {
			i = j
		}
	}
	if i >= 0 {
		m.pending[i] = a
	} else {
		m.pending = append(m.pending, a)
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run applies assignments and watches the local API server until ctx ends. Then it
// removes every VIP it holds (a stopped agent must not keep answering for an address the
// coordinator may give to another host) and returns nil; no Status is reported after ctx
// ended, since whoever listens is stopping too.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer m.running.Store(false)

	// The check runs in a goroutine of its own so that a slow API server delays no
	// assignment; results come back here, where all state lives.
	results := make(chan error)
	checkDone := make(chan struct{})
	go func() {
		defer close(checkDone)
		m.check(ctx, results)
	}()

	for {
		select {
		case <-ctx.Done():
			<-checkDone
			m.shutdown()
			return nil
		case <-m.wake:
			m.mu.Lock()
			batch := m.pending
			m.pending = nil
			m.mu.Unlock()
			for _, a := range batch {
				m.apply(ctx, a)
			}
		case err := <-results:
			m.checked(ctx, err)
		}
	}
}

// check calls Readyz every CheckInterval, counted from the end of the previous call, so
// that calls never overlap.
func (m *Manager) check(ctx context.Context, results chan<- error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.checkTimeout())
		err := m.cfg.Readyz(cctx)
		cancel()
		select {
		case results <- err:
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(m.cfg.CheckInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// apply takes a new assignment for one cluster.
func (m *Manager) apply(ctx context.Context, a Assignment) {
	c, ok := m.clusters[a.ClusterID]
	if !ok {
		c = &cluster{}
		m.clusters[a.ClusterID] = c
		m.order = append(m.order, a.ClusterID)
	} else {
		if a.Epoch < c.a.Epoch {
			return // Set fences already; kept so that apply is safe on its own
		}
		if a == c.a {
			return // repeated: nothing to do, and above all no second round of GARPs
		}
	}
	old := c.a
	if ok && old.Address != a.Address && supported(old.Address) {
		// The cluster's VIP changed: the old one must not stay behind.
		c.garp.stop()
		c.garp, c.announced = nil, false
		if _, err := m.k.removeOurs(old.Address.Addr()); err != nil {
			m.log.Warn("cannot remove previous vip", logkey.ClusterID, a.ClusterID,
				logkey.Addr, old.Address.String(), logkey.Err, err)
		}
	}
	if !ok || a.Epoch > old.Epoch {
		c.released, c.seenReady, c.fails, c.announced = false, false, 0, false
	}
	c.a = a
	m.log.Info("vip assignment", logkey.ClusterID, a.ClusterID, logkey.Addr, a.Address.String(),
		logkey.Epoch, a.Epoch, logkey.Holder, a.Holder)
	m.reconcile(ctx, c)
}

// checked takes the outcome of a readiness check.
func (m *Manager) checked(ctx context.Context, err error) {
	m.ready = err == nil
	for _, id := range m.order {
		c := m.clusters[id]
		if err == nil {
			c.seenReady, c.fails = true, 0
		} else {
			c.fails++
		}
		if err != nil && c.a.Holder && !c.released && c.seenReady && c.fails >= m.cfg.FailAfter {
			c.released = true
			m.log.Warn("api server unready: giving the vip up", logkey.ClusterID, id,
				logkey.Addr, c.a.Address.String(), logkey.Epoch, c.a.Epoch, logkey.Err, err)
		}
		// Every check is also a chance to repair drift (the address removed by hand, the
		// link appearing late) in either direction.
		m.reconcile(ctx, c)
	}
}

// reconcile makes the kernel match c and reports the resulting Status if it changed.
func (m *Manager) reconcile(ctx context.Context, c *cluster) {
	holding, reason := m.converge(ctx, c)
	if c.released && reason == "" {
		reason = ReasonAPIServerUnready
	}
	st := Status{
		ClusterID: c.a.ClusterID,
		Epoch:     c.a.Epoch,
		Holding:   holding,
		Ready:     m.ready,
		Released:  c.released,
		Reason:    reason,
	}
	if c.reported && st == c.last {
		return
	}
	c.last, c.reported = st, true
	if m.cfg.Report != nil {
		m.cfg.Report(st)
	}
}

// converge adds or removes the address as c wants, and tells whether it is on a link now.
func (m *Manager) converge(ctx context.Context, c *cluster) (holding bool, reason string) {
	vip := c.a.Address
	if !supported(vip) {
		return false, ReasonUnsupportedAddress
	}
	attrs := []any{logkey.ClusterID, c.a.ClusterID, logkey.Addr, vip.String(), logkey.Epoch, c.a.Epoch}
	if !c.a.Holder || c.released {
		c.garp.stop()
		c.garp, c.announced = nil, false
		found, err := m.k.find(vip.Addr())
		if err != nil {
			m.warnOnce(c, ReasonAddressError, "cannot list addresses", append(attrs, logkey.Err, err)...)
			return c.last.Holding, ReasonAddressError
		}
		foreign := false
		for _, a := range found {
			if !ours(a) {
				foreign = true
				continue
			}
			if err := m.k.remove(a); err != nil {
				m.warnOnce(c, ReasonAddressError, "cannot remove vip", append(attrs, logkey.Err, err)...)
				return true, ReasonAddressError
			}
			m.log.Info("vip removed", append(attrs, logkey.Label, a.Label)...)
		}
		if foreign {
			m.warnOnce(c, ReasonForeignAddress, "vip is on a link but was not added by us; left alone", attrs...)
			return true, ReasonForeignAddress
		}
		return false, ""
	}

	found, err := m.k.find(vip.Addr())
	if err != nil {
		m.warnOnce(c, ReasonAddressError, "cannot list addresses", append(attrs, logkey.Err, err)...)
		return c.last.Holding, ReasonAddressError
	}
	if len(found) > 0 {
		// Already there: from a previous assignment, or left by an agent that crashed.
		// Announce once per assignment all the same: while we were not looking, the
		// neighbours may have learnt another holder's MAC.
		if !c.announced {
			m.announce(ctx, c, found[0].LinkIndex)
		}
		if !slices.ContainsFunc(found, ours) {
			m.warnOnce(c, ReasonForeignAddress, "vip is on a link but was not added by us", attrs...)
			return true, ReasonForeignAddress
		}
		return true, ""
	}
	// Not (or no longer) on any link: a new round of announcements goes with the new address.
	c.garp.stop()
	c.garp, c.announced = nil, false
	link, err := m.k.linkFor(vip)
	if errors.Is(err, errNoLink) {
		m.warnOnce(c, ReasonNoLink, "no link for the vip", attrs...)
		return false, ReasonNoLink
	}
	if err == nil {
		err = m.k.add(link, vip)
	}
	if err != nil {
		m.warnOnce(c, ReasonAddressError, "cannot add vip", append(attrs, logkey.Err, err)...)
		return false, ReasonAddressError
	}
	m.log.Info("vip added", append(attrs, logkey.Link, link.Attrs().Name)...)
	m.announce(ctx, c, link.Attrs().Index)
	return true, ""
}

// announce starts the gratuitous ARPs for c's VIP on the link ifindex, in a goroutine:
// they take GARPCount*GARPInterval, during which assignments must still be applied.
func (m *Manager) announce(ctx context.Context, c *cluster, ifindex int) {
	// A round still running (from the previous epoch) ends first: every round is waited
	// for, so none outlives Run.
	c.garp.stop()
	c.garp, c.announced = nil, true
	if m.cfg.GARPCount == 0 {
		return
	}
	actx, cancel := context.WithCancel(ctx)
	an := &announcement{cancel: cancel, done: make(chan struct{})}
	c.garp = an
	vip, id := c.a.Address.Addr(), c.a.ClusterID
	go func() {
		defer close(an.done)
		defer cancel()
		if err := m.k.garp(actx, ifindex, vip, m.cfg.GARPCount, m.cfg.GARPInterval); err != nil {
			m.log.Warn("gratuitous arp failed", logkey.ClusterID, id, logkey.Addr, vip.String(), logkey.Err, err)
		}
	}()
}

// shutdown removes every VIP this Manager holds; Run's context is over, so nothing is
// reported.
func (m *Manager) shutdown() {
	for _, id := range m.order {
		c := m.clusters[id]
		c.garp.stop()
		c.garp = nil
		if !supported(c.a.Address) {
			continue
		}
		if _, err := m.k.removeOurs(c.a.Address.Addr()); err != nil {
			m.log.Error("cannot remove vip on shutdown", logkey.ClusterID, id,
				logkey.Addr, c.a.Address.String(), logkey.Err, err)
			continue
		}
		if c.last.Holding {
			m.log.Info("vip removed on shutdown", logkey.ClusterID, id, logkey.Addr, c.a.Address.String())
		}
	}
}

// warnOnce logs a problem when the cluster's reason changes to it, not at every retry.
func (m *Manager) warnOnce(c *cluster, reason, msg string, attrs ...any) {
	if c.reported && c.last.Reason == reason {
		m.log.Debug(msg, attrs...)
		return
	}
	m.log.Warn(msg, attrs...)
}
