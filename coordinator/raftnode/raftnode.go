// Package raftnode owns the coordinator's *raft.Raft: the TCP transport, the bolt log and
// stable store, the file snapshot store, bootstrap of a new cluster, and Apply with the
// error classes callers need (not leader, outcome unknown). See DESIGN.md beside this file.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/deployme/deployme/internal/logkey"
)

// Config is the node's configuration. Start from DefaultConfig.
type Config struct {
	// ID is this replica's Raft server ID.
	ID string
	// Dir holds raft.db (log and stable store) and snapshots/.
	Dir string
	// Listener is the Raft transport's listener (injected, so tests use 127.0.0.1:0).
	Listener net.Listener
	// Advertise is the address peers dial; defaults to the listener's address.
	Advertise string
	// Dial opens a Raft connection to a peer (the peer mux, with TLS when configured); nil
	// dials plain TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Bootstrap makes a node with no existing state start a new single-voter cluster.
	Bootstrap bool

	// HeartbeatTimeout and ElectionTimeout: how long a follower waits without contact
	// before standing for election. 1 s (hashicorp/raft's default) suits a LAN.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout: how long a leader keeps leading without reaching a quorum.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long a lone entry waits to be batched with others.
	CommitTimeout time.Duration
	// MaxAppendEntries is how many entries share one disk write and one RPC (group commit).
	MaxAppendEntries int
	// SnapshotThreshold: entries since the last snapshot that trigger a new one.
	SnapshotThreshold uint64
	// SnapshotInterval: how often the threshold is checked.
	SnapshotInterval time.Duration
	// TrailingLogs: entries kept after a snapshot, so a briefly lagging follower catches up
	// from the log instead of receiving a whole snapshot.
	TrailingLogs uint64
	// RetainSnapshots is how many snapshot files are kept.
	RetainSnapshots int

	Logger *slog.Logger
}

// maxTrailingFactor bounds TrailingLogs relative to SnapshotThreshold (see Validate).
const maxTrailingFactor = 10

// DefaultConfig returns the tuning documented in DESIGN.md.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      2 * time.Millisecond,
		MaxAppendEntries:   256,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		TrailingLogs:       10240,
		RetainSnapshots:    2,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("raft: node ID is empty")
	case c.Dir == "":
		return errors.New("raft: data directory is empty")
	case c.Listener == nil:
		return errors.New("raft: no listener")
	case c.SnapshotThreshold == 0:
		return errors.New("raft: snapshot threshold must be positive, or the log never shrinks")
	case c.SnapshotInterval <= 0:
		return errors.New("raft: snapshot interval must be positive, or no snapshot is ever taken and the log never shrinks")
	case c.TrailingLogs > maxTrailingFactor*c.SnapshotThreshold:
		// Compaction keeps TrailingLogs entries after each snapshot and skips entirely while
		// the log is shorter than that: with a huge value the log in effect never shrinks.
		return fmt.Errorf("raft: trailing logs (%d) above %d x the snapshot threshold (%d) would keep the log from ever shrinking; lower --raft-trailing-logs or raise --raft-snapshot-threshold",
			c.TrailingLogs, maxTrailingFactor, c.SnapshotThreshold)
	case c.RetainSnapshots < 1:
		return errors.New("raft: at least one snapshot must be retained")
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return errors.New("raft: leader lease timeout must not exceed the heartbeat timeout")
	}
	return nil
}

// Node is one Raft replica.
type Node struct {
	logs      raft.LogStore
	fresh     bool
	notify    chan bool
	stopped   chan struct{}
	closeOnce sync.Once
	cfg       Config
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	trans     *raft.NetworkTransport
	stream    *streamLayer
	logger    *slog.Logger
}

// Errors callers tell apart.
var (
	// ErrNotLeader: this replica cannot accept the write; nothing was proposed.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrUnknownOutcome: the entry was proposed but leadership was lost before it was known
	// to commit; it may still commit.
	ErrUnknownOutcome = errors.New("outcome unknown: leadership lost while the write was in flight")
	// ErrTimeout: the write was not accepted in time; nothing is known about it either.
	ErrTimeout = errors.New("timed out waiting for the raft log")
	// ErrShutdown: the node is stopping.
	ErrShutdown = errors.New("raft is shut down")
)

// Open starts the node over fsm. With Bootstrap and no existing state it bootstraps a
// single-voter cluster of itself.
func Open(cfg Config, fsm raft.FSM) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: create data dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("raft: open bolt store: %w", err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{logger}, DisableTime: true})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.RetainSnapshots, hlog)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft: snapshot store: %w", err)
	}
	advertise := cfg.Advertise
	if advertise == "" {
		advertise = cfg.Listener.Addr().String()
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft: advertise address %q: %w", advertise, err)
	}
	stream := &streamLayer{ln: cfg.Listener, adv: adv, dial: cfg.Dial}
	// MaxRPCsInFlight 1 turns pipelined replication off. hashicorp/raft v1.7.3's pipeline
	// can deadlock: when a follower answers an AppendEntries with Success=false (routine
	// after a leader change) the pipeline's decoder stops taking responses while the sender
	// may still queue one more request, and with the default window of 2 both hand-off
	// channels are unbuffered, so each waits on the other for good (hashicorp/raft#612).
	// That follower then gets heartbeats but never another entry, and the leader's Shutdown
	// never returns: seen in our CI as a replica "stopping" for 24 minutes. Unpipelined,
	// raft keeps one AppendEntries (a batch of up to MaxAppendEntries) in flight per
	// follower; the cost is measured by BenchmarkApply (docs/performance.md).
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, MaxRPCsInFlight: 1, Timeout: 10 * time.Second, Logger: hlog,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = hlog
	// raft blocks writing to NotifyCh, so a goroutine drains it into a one-slot channel
	// that never blocks (consumers are level-triggered and re-read IsLeader).
	notify := make(chan bool, 8)
	rc.NotifyCh = notify
	if err := raft.ValidateConfig(rc); err != nil {
		store.Close()
		return nil, fmt.Errorf("raft: %w", err)
	}

	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	has, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft: inspect state: %w", err)
	}
	if cfg.Bootstrap {
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter}}}
			if err := raft.BootstrapCluster(rc, logs, store, snaps, trans, conf); err != nil {
				store.Close()
				return nil, fmt.Errorf("raft: bootstrap: %w", err)
			}
			logger.Info("bootstrapped a new single-replica cluster", logkey.NodeID, cfg.ID)
		}
	}
	r, err := raft.NewRaft(rc, fsm, logs, store, snaps, trans)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft: start: %w", err)
	}
	n := &Node{logs: logs, fresh: !has, notify: make(chan bool, 1), stopped: make(chan struct{}), cfg: cfg, raft: r, store: store, trans: trans, stream: stream, logger: logger}
	go n.drainNotify(notify)
	return n, nil
}

// Apply proposes an entry and waits for it to commit and be applied, returning the FSM's
// result. The wait is bounded by ctx.
func (n *Node) Apply(ctx context.Context, entry []byte) (any, error) {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, ErrTimeout
		}
	}
	_, res, err := n.ApplyIndexed(ctx, entry)
	return res, err
}

func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost):
		return ErrUnknownOutcome
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrTimeout
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return fmt.Errorf("raft apply: %w", err)
}

// Barrier waits until every entry before it is applied to the FSM.
func (n *Node) Barrier(ctx context.Context) error {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return classify(n.raft.Barrier(timeout).Error())
}

// VerifyLeader confirms with a quorum that this node still leads (for linearizable reads).
func (n *Node) VerifyLeader() error {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return classify(err)
	}
	return nil
}

// IsLeader tells whether this node currently believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// LeaderCh signals leadership changes (true on gaining it).
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// Leader returns the current leader's address and ID, empty when none is known.
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// Snapshot forces a snapshot now.
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Server is one member of the Raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
}

// Servers returns the current Raft configuration.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, classify(err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Stats returns hashicorp/raft's stats map (state, applied_index, last_contact, ...).
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// AppliedIndex is the last index applied to the FSM.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// LastIndex is the last index in the log.
func (n *Node) LastIndex() uint64 { return n.raft.LastIndex() }

func (n *Node) drainNotify(in <-chan bool) {
	for {
		select {
		case v := <-in:
			select {
			case n.notify <- v:
			default:
			}
		case <-n.stopped:
			return
		}
	}
}

// shutdownStall is how long Close lets Raft stop by itself before cutting its connections.
const shutdownStall = 2 * time.Second

// Close shuts the node down and closes its stores.
//
// hashicorp/raft's Shutdown waits for its replication goroutines, and a pipelined
// AppendEntries can block for good on a peer that stopped answering (its in-flight window
// full, nothing to read): seen in CI as a replica that never finished stopping. When
// Shutdown stalls, the connections this node dialled are closed, which fails those sends and
// lets Shutdown finish.
func (n *Node) Close() error {
	done := make(chan error, 1)
	go func() { done <- n.raft.Shutdown().Error() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(shutdownStall):
		n.logger.Warn("raft shutdown stalled; closing its peer connections")
		n.stream.closeDialled()
		err = <-done
	}
	n.closeOnce.Do(func() { close(n.stopped) })
	if cerr := n.trans.Close(); err == nil {
		err = cerr
	}
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// streamLayer adapts an injected listener to raft.StreamLayer. It remembers the
// connections it dialled, so that a stalled shutdown can cut them.
type streamLayer struct {
	ln   net.Listener
	adv  net.Addr
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu      sync.Mutex
	dialled map[net.Conn]struct{}
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.dialled, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (s *streamLayer) track(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: s}
	s.mu.Lock()
	if s.dialled == nil {
		s.dialled = map[net.Conn]struct{}{}
	}
	s.dialled[tc] = struct{}{}
	s.mu.Unlock()
	return tc, nil
}

func (s *streamLayer) closeDialled() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.dialled))
	for c := range s.dialled {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (s *streamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *streamLayer) Close() error              { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr            { return s.adv }
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.dial == nil {
		return s.track(net.DialTimeout("tcp", string(addr), timeout))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.track(s.dial(ctx, string(addr)))
}

// slogWriter routes hashicorp/raft's hclog lines into slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}
