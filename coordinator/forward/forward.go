// Package forward is the one layer that deals with leadership for writes and linearizable
// reads: on the leader it proposes locally, on a follower it sends the entry to the leader
// over the internal gRPC service (proto/cluster/v1) and then waits until this replica has
// applied it, so a client reads its own write on any replica. Handlers never test leadership.
package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/deployme/deployme/coordinator/raftnode"
	"github.com/deployme/deployme/coordinator/state"
	clusterv1 "github.com/deployme/deployme/proto/cluster/v1"
)

// Raft is what forwarding needs of the local Raft node.
type Raft interface {
	ApplyIndexed(ctx context.Context, entry []byte) (uint64, any, error)
	IsLeader() bool
	Leader() (addr, id string)
	VerifyLeader() error
	CommitIndex() uint64
	CommandsApplied(fsmApplied, index uint64) bool
}

// Store is the local state machine's progress.
type Store interface {
	AppliedIndex() uint64
	Changed() <-chan struct{}
}

// Errors callers map to API answers.
var (
	// ErrNoLeader: no leader could be reached within the bound; nothing was applied.
	ErrNoLeader = errors.New("no coordinator leader is available")
	// ErrUnknownOutcome: the entry may or may not have been applied.
	ErrUnknownOutcome = errors.New("outcome unknown")
	// ErrNotReady: this replica leads but has not yet applied its term's barrier.
	ErrNotReady = errors.New("new leader not ready yet")
)

// Result is the outcome of an applied entry.
type Result struct {
	// Index is where the entry was applied; this replica has applied it too.
	Index uint64
	// Refusal is set when the state machine refused the command.
	Refusal *state.Error
	// Value is the object the state machine stored (from the leader when forwarded), or
	// nil when there is none (deletes, idempotent replays): read local state then.
	Value any
	// Local tells whether this replica has applied the entry already.
	Local bool
}

// Config configures a Forwarder.
type Config struct {
	// Dial opens a gRPC connection to a peer's mux.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// LeaderWait bounds how long a request waits for a reachable, ready leader (503 after).
	LeaderWait time.Duration
	// Ready tells whether this replica, when leader, has completed its term's barrier.
	Ready  func() bool
	Logger *slog.Logger
}

// Forwarder applies entries and serves read indexes wherever the leader is.
type Forwarder struct {
	raft  Raft
	store Store
	cfg   Config

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// New returns a Forwarder.
func New(cfg Config, r Raft, st Store) *Forwarder {
	if cfg.LeaderWait <= 0 {
		cfg.LeaderWait = 5 * time.Second
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{raft: r, store: st, cfg: cfg, conns: map[string]*grpc.ClientConn{}}
}

// Apply applies entry on the leader. When the leader sent back the stored object, it
// returns at once (this replica's next linearizable read waits for the entry anyway);
// otherwise it first waits until this replica has applied the entry, so the caller can read
// the result from local state.
func (f *Forwarder) Apply(ctx context.Context, entry []byte) (Result, error) {
	res, err := f.applyAnywhere(ctx, entry)
	if err != nil || res.Local || res.Value != nil || res.Refusal != nil {
		return res, err
	}
	// The entry is committed. If ctx ends first, the write still happened: report it done.
	if f.WaitApplied(ctx, res.Index) == nil {
		res.Local = true
	}
	return res, nil
}

func (f *Forwarder) applyAnywhere(ctx context.Context, entry []byte) (Result, error) {
	findCtx, cancel := context.WithTimeout(ctx, f.cfg.LeaderWait)
	defer cancel()
	for {
		if f.raft.IsLeader() && f.cfg.Ready() {
			idx, val, err := f.raft.ApplyIndexed(ctx, entry)
			switch {
			case err == nil:
				res := Result{Index: idx, Value: val, Local: true}
				if r, ok := val.(*state.Error); ok {
					res.Refusal, res.Value = r, nil
				}
				return res, nil
			case errors.Is(err, raftnode.ErrNotLeader):
				// Nothing was proposed: find the new leader.
			case errors.Is(err, raftnode.ErrUnknownOutcome), errors.Is(err, raftnode.ErrTimeout):
				return Result{}, ErrUnknownOutcome
			default:
				return Result{}, err
			}
		} else if f.raft.IsLeader() {
			// A new leader serves nothing until its term's barrier has applied.
		} else if addr, _ := f.raft.Leader(); addr != "" {
			res, sent, err := f.remoteApply(findCtx, ctx, addr, entry)
			if err == nil {
				return res, nil
			}
			if sent {
				return Result{}, err
			}
			f.cfg.Logger.Debug("leader not reachable yet", "leader", addr, "err", err)
		}
		select {
		case <-findCtx.Done():
			if ctx.Err() != nil {
				return Result{}, ctx.Err()
			}
			return Result{}, ErrNoLeader
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// remoteApply sends the entry to the leader. sent reports whether the leader may have
// received it: before that, an error means nothing was proposed and retrying is safe.
func (f *Forwarder) remoteApply(findCtx, ctx context.Context, addr string, entry []byte) (Result, bool, error) {
	cc, err := f.ready(findCtx, addr)
	if err != nil {
		return Result{}, false, err
	}
	resp, err := clusterv1.NewClusterClient(cc).Apply(ctx, &clusterv1.ApplyRequest{Entry: entry})
	if err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			return Result{}, false, err // the peer is not the leader: nothing proposed
		}
		return Result{}, true, ErrUnknownOutcome
	}
	res := Result{Index: resp.GetIndex(), Value: decodeValue(resp.GetValueType(), resp.GetValueJson())}
	if r := resp.GetRefusal(); r != nil {
		res.Refusal = &state.Error{Kind: state.Kind(r.GetKind()), Message: r.GetMessage(), Field: r.GetField()}
		if len(r.GetDetailsJson()) > 0 {
			_ = json.Unmarshal(r.GetDetailsJson(), &res.Refusal.Details)
		}
	}
	return res, true, nil
}

// ReadIndex returns an index that, once applied locally, makes a local read linearizable.
func (f *Forwarder) ReadIndex(ctx context.Context) (uint64, error) {
	findCtx, cancel := context.WithTimeout(ctx, f.cfg.LeaderWait)
	defer cancel()
	for {
		if f.raft.IsLeader() {
			idx, err := f.localReadIndex()
			if err == nil {
				return idx, nil
			}
		} else if addr, _ := f.raft.Leader(); addr != "" {
			if cc, err := f.ready(findCtx, addr); err == nil {
				resp, err := clusterv1.NewClusterClient(cc).ReadIndex(findCtx, &clusterv1.ReadIndexRequest{})
				if err == nil {
					return resp.GetIndex(), nil
				}
			}
		}
		select {
		case <-findCtx.Done():
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, ErrNoLeader
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// localReadIndex is the leader's side: the commit index, recorded before confirming with a
// quorum that this replica still leads (so no newer leader can have committed past it).
func (f *Forwarder) localReadIndex() (uint64, error) {
	if !f.cfg.Ready() {
		return 0, ErrNotReady
	}
	idx := f.raft.CommitIndex()
	if err := f.raft.VerifyLeader(); err != nil {
		return 0, err
	}
	return idx, nil
}

// WaitApplied blocks until this replica's state machine has applied every command up to
// index.
func (f *Forwarder) WaitApplied(ctx context.Context, index uint64) error {
	var tick *time.Ticker
	for {
		ch := f.store.Changed()
		if f.raft.CommandsApplied(f.store.AppliedIndex(), index) {
			return nil
		}
		if tick == nil {
			// Progress through entries the state machine never sees (no-ops, barriers)
			// makes no change notification: re-check on a short tick too.
			tick = time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ready returns a connection to addr that is connected, so that a failure to reach the
// leader is known to have sent nothing. It gives up as soon as Raft no longer names addr
// as the leader: a dead leader's address never connects, and waiting on it until ctx ends
// would miss the new leader elected meanwhile.
func (f *Forwarder) ready(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	cc, err := f.conn(addr)
	if err != nil {
		return nil, err
	}
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return cc, nil
		}
		if s == connectivity.Idle {
			cc.Connect()
		}
		if cur, _ := f.raft.Leader(); cur != addr {
			return nil, fmt.Errorf("connect to leader %s: leader changed", addr)
		}
		// Re-check the leader at least this often: gRPC's reconnect backoff can keep the
		// state unchanged for seconds.
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		changed := cc.WaitForStateChange(wctx, s)
		cancel()
		if !changed && ctx.Err() != nil {
			return nil, fmt.Errorf("connect to leader %s: %w", addr, ctx.Err())
		}
	}
}

func (f *Forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cc, ok := f.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		// The peer mux has already done TLS when it is configured; gRPC runs inside.
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return f.cfg.Dial(ctx, a) }),
		// A restarted replica is back within seconds; gRPC's default reconnect backoff
		// (up to 2 minutes) would keep its peers from reaching it long after.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	)
	if err != nil {
		return nil, err
	}
	f.conns[addr] = cc
	return cc, nil
}

// Client returns a Cluster client for a peer (membership calls, status).
func (f *Forwarder) Client(addr string) (clusterv1.ClusterClient, error) {
	cc, err := f.conn(addr)
	if err != nil {
		return nil, err
	}
	return clusterv1.NewClusterClient(cc), nil
}

// Close closes peer connections.
func (f *Forwarder) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, cc := range f.conns {
		cc.Close()
		delete(f.conns, a)
	}
}

// ChangeMembership applies a Raft configuration change on the leader, wherever it is.
// local is used when this replica leads.
func (f *Forwarder) ChangeMembership(ctx context.Context, local Membership, req *clusterv1.ChangeMembershipRequest) error {
	findCtx, cancel := context.WithTimeout(ctx, f.cfg.LeaderWait)
	defer cancel()
	for {
		var err error
		if f.raft.IsLeader() {
			_, err = NewServer(f, local, nil).ChangeMembership(ctx, req)
		} else if addr, _ := f.raft.Leader(); addr != "" {
			var c clusterv1.ClusterClient
			if c, err = f.Client(addr); err == nil {
				_, err = c.ChangeMembership(ctx, req)
			}
		} else {
			err = ErrNoLeader
		}
		if err == nil {
			return nil
		}
		if st, ok := status.FromError(err); ok && st.Code() != codes.FailedPrecondition && st.Code() != codes.Unavailable {
			return err
		}
		select {
		case <-findCtx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %v", ErrNoLeader, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PeerStatus asks a replica for its Raft progress.
func (f *Forwarder) PeerStatus(ctx context.Context, addr string) (*clusterv1.StatusResponse, error) {
	c, err := f.Client(addr)
	if err != nil {
		return nil, err
	}
	return c.Status(ctx, &clusterv1.StatusRequest{})
}

// PeerLeases asks a replica for its agent leases.
func (f *Forwarder) PeerLeases(ctx context.Context, addr string) (map[string]time.Time, error) {
	c, err := f.Client(addr)
	if err != nil {
		return nil, err
	}
	resp, err := c.Leases(ctx, &clusterv1.LeasesRequest{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(resp.GetLeases()))
	for _, l := range resp.GetLeases() {
		out[l.GetHostId()] = time.Unix(0, l.GetLastSeen())
	}
	return out, nil
}
