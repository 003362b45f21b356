package coordclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/internal/logkey"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Client is the agent's connection to the coordinators. Its state is owned by the
// goroutine running Run.
type Client struct {
	cfg Config
	log *slog.Logger
	dir stateDir
	pin []byte // nil: trust on first use

	id   *identity
	key  *ecdsa.PrivateKey
	cert tls.Certificate
	leaf *x509.Certificate
	ca   *x509.Certificate

	// addrs is every known coordinator; next indexes the one to try next, which is the
	// last good one until it fails.
	addrs []string
	next  int
	// seq numbers heartbeats across streams, so the coordinator sees it only grow.
	seq uint64
	// updates carries step updates to the current (or next) stream.
	updates chan *agentv1.StepUpdate
	// netResults carries network results the same way.
	netResults chan *agentv1.NetworkResult

	// vip holds the latest VIP status per cluster; dirty ones go out on the current stream
	// and all of them on every new one (the coordinator may have missed any).
	vipMu    sync.Mutex
	vip      map[string]*agentv1.VIPStatus
	vipDirty map[string]bool
	vipPoke  chan struct{}
}

// New checks cfg and returns a Client; nothing is read or dialled before Run.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.logger(), dir: stateDir(cfg.StateDir), updates: make(chan *agentv1.StepUpdate, 1024), netResults: make(chan *agentv1.NetworkResult, 16),
		vip: map[string]*agentv1.VIPStatus{}, vipDirty: map[string]bool{}, vipPoke: make(chan struct{}, 1)}
	if cfg.CAHash != "" {
		c.pin, _ = parseCAHash(cfg.CAHash) // checked by Validate
	}
	c.setAddrs(nil)
	return c, nil
}

// Run registers the host if the state directory holds no identity, then keeps a stream to
// some coordinator until ctx ends (nil) or a permanent error occurs (a refused
// registration, a CA that does not match the pin, an unreadable state directory).
func (c *Client) Run(ctx context.Context) error {
	if err := c.dir.ensure(); err != nil {
		return err
	}
	id, err := c.dir.loadIdentity()
	if err != nil {
		return err
	}
	if id == nil {
		if err := c.register(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	} else if err := c.loadCredentials(id); err != nil {
		return err
	}
	return c.stream(ctx)
}

func (c *Client) loadCredentials(id *identity) error {
	key, err := c.dir.loadKey()
	if err != nil {
		return fmt.Errorf("state directory has an identity but no usable key: %w", err)
	}
	leaf, err := c.dir.loadCert(certFile)
	if err != nil {
		return fmt.Errorf("state directory has an identity but no usable certificate: %w", err)
	}
	ca, err := c.dir.loadCert(caFile)
	if err != nil {
		return fmt.Errorf("state directory has an identity but no usable CA: %w", err)
	}
	c.id, c.key, c.ca = id, key, ca
	c.setCert(leaf)
	c.setAddrs(id.Coordinators)
	c.log.Info("loaded agent identity", logkey.HostID, id.HostID, logkey.DataDir, c.cfg.StateDir)
	return nil
}

func (c *Client) setCert(leaf *x509.Certificate) {
	c.leaf = leaf
	c.cert = tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: c.key, Leaf: leaf}
}

// setAddrs makes the known addresses learnt plus configured (deduplicated), keeping the
// current one current.
func (c *Client) setAddrs(learnt []string) {
	cur := ""
	if len(c.addrs) > 0 {
		cur = c.addrs[c.next%len(c.addrs)]
	}
	var addrs []string
	for _, a := range slices.Concat(learnt, c.cfg.Coordinators) {
		if a != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	c.addrs, c.next = addrs, 0
	if i := slices.Index(addrs, cur); i >= 0 {
		c.next = i
	}
}

func (c *Client) current() string { return c.addrs[c.next%len(c.addrs)] }
func (c *Client) advance()        { c.next = (c.next + 1) % len(c.addrs) }

// prefer makes addr the next one tried (a Redirect's target).
func (c *Client) prefer(addr string) {
	if i := slices.Index(c.addrs, addr); i >= 0 {
		c.next = i
		return
	}
	c.addrs = append(c.addrs, addr)
	c.next = len(c.addrs) - 1
}

// backoff is full jitter over an exponential ceiling: uniformly random in [0, ceiling).
func (c *Client) backoff(attempt int) time.Duration {
	ceil := c.cfg.BackoffMax
	if attempt < 32 {
		if d := c.cfg.BackoffMin << attempt; d > 0 && d < ceil {
			ceil = d
		}
	}
	return rand.N(ceil) + 1
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// permanent tells whether a registration error is the coordinator's final word.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.Unauthenticated, codes.InvalidArgument, codes.PermissionDenied:
		return true
	}
	return false
}

// register obtains an identity with the join token, retrying across coordinators while
// they are unreachable.
func (c *Client) register(ctx context.Context) error {
	if c.cfg.JoinToken == "" {
		return ErrNoJoinToken
	}
	key, err := c.dir.loadOrCreateKey()
	if err != nil {
		return fmt.Errorf("agent key: %w", err)
	}
	c.key = key
	csr, err := newCSR(key)
	if err != nil {
		return fmt.Errorf("certificate request: %w", err)
	}
	inv, err := c.inventory(ctx)
	if err != nil {
		return err
	}
	if c.pin == nil {
		c.log.Warn("no --ca-hash given: the coordinator's CA will be trusted on first use; anyone able to intercept this connection could impersonate the coordinator")
	}
	for attempt := 0; ; attempt++ {
		addr := c.current()
		err := c.registerOnce(ctx, addr, &agentv1.RegisterRequest{JoinToken: c.cfg.JoinToken, Inventory: inv, CsrDer: csr})
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrCAMismatch) || errors.Is(err, ErrRegistrationRefused) || errors.Is(err, errState) || ctx.Err() != nil {
			return err
		}
		d := c.backoff(attempt)
		c.log.Warn("registration failed, retrying", logkey.Addr, addr, logkey.Err, err, "retry_in", d)
		c.advance()
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func (c *Client) registerOnce(ctx context.Context, addr string, req *agentv1.RegisterRequest) error {
	var seen atomic.Pointer[[]byte]
	var pinFailed atomic.Bool
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(registerTLS(c.pin, &seen, &pinFailed))))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	resp, err := agentv1.NewAgentClient(conn).Register(cctx, req)
	if pinFailed.Load() {
		return fmt.Errorf("%s: %w", addr, ErrCAMismatch)
	}
	if err != nil {
		if permanent(err) {
			return fmt.Errorf("%w by %s: %w", ErrRegistrationRefused, addr, err)
		}
		return err
	}
	if resp.GetHostId() == "" {
		return fmt.Errorf("%w: %s answered without a host id", ErrRegistrationRefused, addr)
	}
	caDER := resp.GetCaDer()
	if c.pin != nil {
		if CAHash(caDER) != c.cfg.CAHash {
			return fmt.Errorf("%s returned another CA: %w", addr, ErrCAMismatch)
		}
	} else if s := seen.Load(); s == nil || !slices.Equal(*s, caDER) {
		return fmt.Errorf("%w: %s returned a CA other than the one its TLS chain ends with", ErrRegistrationRefused, addr)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("%w: CA from %s: %w", ErrRegistrationRefused, addr, err)
	}
	leaf, err := checkIssued(resp.GetCertificateDer(), c.key, ca)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrRegistrationRefused, addr, err)
	}
	id := &identity{HostID: resp.GetHostId(), InfraID: resp.GetInfraId(), Coordinators: resp.GetCoordinators()}
	if len(id.Coordinators) == 0 {
		id.Coordinators = slices.Clone(c.cfg.Coordinators)
	}
	// identity.json goes last: it marks the other files complete.
	if err := c.dir.saveCert(caFile, caDER, 0o644); err != nil {
		return fmt.Errorf("%w: %w", errState, err)
	}
	if err := c.dir.saveCert(certFile, leaf.Raw, 0o600); err != nil {
		return fmt.Errorf("%w: %w", errState, err)
	}
	if err := c.dir.saveIdentity(id); err != nil {
		return fmt.Errorf("%w: %w", errState, err)
	}
	c.id, c.ca = id, ca
	c.setCert(leaf)
	c.setAddrs(id.Coordinators)
	c.log.Info("registered", logkey.HostID, id.HostID, "infra_id", id.InfraID, logkey.Addr, addr, "ca_hash", CAHash(caDER))
	return nil
}

// errState marks a failure to write the state directory: no coordinator can fix it.
var errState = errors.New("writing the state directory")

// inventory collects the host inventory with the configured labels on top.
func (c *Client) inventory(ctx context.Context) (*agentv1.Inventory, error) {
	inv, err := c.cfg.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return c.toProto(inv), nil
}

func (c *Client) toProto(inv *inventory.Inventory) *agentv1.Inventory {
	return toProto(inv, c.cfg.Labels, c.cfg.AgentVersion)
}

func toProto(inv *inventory.Inventory, labels map[string]string, version string) *agentv1.Inventory {
	p := &agentv1.Inventory{
		Hostname:     inv.Hostname,
		OsRelease:    inv.OSRelease,
		Kernel:       inv.Kernel,
		Cpus:         int32(inv.CPUs),
		CpuModel:     inv.CPUModel,
		MemoryBytes:  inv.MemoryBytes,
		Product:      inv.Product,
		Serial:       inv.Serial,
		Versions:     map[string]string{},
		Labels:       map[string]string{},
		AgentVersion: version,
	}
	for _, d := range inv.Disks {
		p.Disks = append(p.Disks, &agentv1.Disk{Name: d.Name, SizeBytes: d.SizeBytes, Rotational: d.Rotational, Serial: d.Serial})
	}
	for _, n := range inv.NICs {
		p.Nics = append(p.Nics, &agentv1.NIC{Name: n.Name, Mac: n.MAC, SpeedMbps: int32(n.SpeedMbps), Addresses: slices.Clone(n.Addresses), Up: n.Up})
	}
	for k, v := range inv.Versions {
		p.Versions[k] = v
	}
	for k, v := range inv.Labels {
		p.Labels[k] = v
	}
	for k, v := range labels {
		p.Labels[k] = v
	}
	return p
}

// ReportVIP queues a VIP status for the coordinators; only the latest per cluster is kept.
// Safe from any goroutine; never blocks.
func (c *Client) ReportVIP(st *agentv1.VIPStatus) {
	c.vipMu.Lock()
	c.vip[st.GetClusterId()] = st
	c.vipDirty[st.GetClusterId()] = true
	c.vipMu.Unlock()
	select {
	case c.vipPoke <- struct{}{}:
	default:
	}
}

// takeVIP returns the statuses to send: the dirty ones, or all with all set.
func (c *Client) takeVIP(all bool) []*agentv1.VIPStatus {
	c.vipMu.Lock()
	defer c.vipMu.Unlock()
	var out []*agentv1.VIPStatus
	for id, st := range c.vip {
		if all || c.vipDirty[id] {
			out = append(out, st)
		}
	}
	clear(c.vipDirty)
	return out
}

// markVIPDirty puts statuses back after a failed send.
func (c *Client) markVIPDirty(sts []*agentv1.VIPStatus) {
	c.vipMu.Lock()
	for _, st := range sts {
		c.vipDirty[st.GetClusterId()] = true
	}
	c.vipMu.Unlock()
}
