package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/deployme/deployme/coordinator/pki"
	"github.com/deployme/deployme/coordinator/state"
	"github.com/deployme/deployme/internal/logkey"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// Store is the replicated state the reconciler reads.
type Store interface {
	Read(func(*state.State))
	Changed() <-chan struct{}
}

// Writer applies the reconciler's decisions as Raft commands.
type Writer interface {
	SetClusterPKI(ctx context.Context, m *raftcmdv1.SetClusterPKI) error
	DispatchStep(ctx context.Context, m *raftcmdv1.DispatchStep) error
	SetClusterStatus(ctx context.Context, id, status, reason string) error
	SetVIPHolder(ctx context.Context, m *raftcmdv1.SetVIPHolder) error
	ReplaceWorker(ctx context.Context, m *raftcmdv1.ReplaceWorker) error
	RollNode(ctx context.Context, m *raftcmdv1.RollNode) error
}

// Config configures the reconciler.
type Config struct {
	Policy Policy
	// Keyring seals the PKI and join tokens the reconciler generates.
	Keyring *pki.Keyring
	// Resync is the longest the reconciler sleeps without a state change.
	Resync time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// DefaultConfig returns the production settings.
func DefaultConfig() Config {
	return Config{Policy: DefaultPolicy(), Resync: time.Second, Now: time.Now}
}

// Reconciler drives every cluster toward its spec. It runs on the leader only.
type Reconciler struct {
	cfg   Config
	store Store
	w     Writer
	log   *slog.Logger
}

// New returns a reconciler.
func New(cfg Config, store Store, w Writer) *Reconciler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{cfg: cfg, store: store, w: w, log: log.With(logkey.Component, "reconciler")}
}

// Run reconciles until ctx ends: after every state change, and at least every Resync.
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		changed := r.store.Changed()
		wait := r.pass(ctx)
		if wait <= 0 || wait > r.cfg.Resync {
			wait = r.cfg.Resync
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// pass plans and acts on every cluster once; it returns the shortest requeue asked for.
func (r *Reconciler) pass(ctx context.Context) time.Duration {
	now := r.cfg.Now()
	type plan struct {
		id      string
		actions []Action
	}
	var plans []plan
	var requeue time.Duration
	r.store.Read(func(st *state.State) {
		for _, c := range st.Clusters() {
			actions, wait := Plan(r.cfg.Policy, NewView(st, c, now))
			if len(actions) > 0 {
				plans = append(plans, plan{c.ID, actions})
			}
			if wait > 0 && (requeue == 0 || wait < requeue) {
				requeue = wait
			}
		}
	})
	sort.Slice(plans, func(i, j int) bool { return plans[i].id < plans[j].id })
	for _, p := range plans {
		for _, a := range p.actions {
			if ctx.Err() != nil {
				return 0
			}
			if err := r.act(ctx, a); err != nil {
				// A refusal usually means the state moved on (another leader, a late view):
				// the next pass re-plans from fresh state.
				r.log.Warn("reconcile action failed", logkey.ClusterID, a.ClusterID, "action", a.String(), logkey.Err, err)
				if requeue == 0 || requeue > r.cfg.Resync {
					requeue = r.cfg.Resync
				}
			}
		}
	}
	return requeue
}

func (r *Reconciler) act(ctx context.Context, a Action) error {
	switch a.Kind {
	case GeneratePKI:
		return r.generatePKI(ctx, a.ClusterID)
	case SetStatus:
		r.log.Info("cluster status", logkey.ClusterID, a.ClusterID, "status", a.Status, "reason", a.Reason)
		return r.w.SetClusterStatus(ctx, a.ClusterID, a.Status, a.Reason)
	case ReplaceWorker:
		r.log.Warn("replacing a worker whose host is offline", logkey.ClusterID, a.ClusterID, logkey.HostID, a.HostID, "reason", a.Reason)
		return r.w.ReplaceWorker(ctx, &raftcmdv1.ReplaceWorker{ClusterId: a.ClusterID, HostId: a.HostID, Reason: a.Reason, At: r.cfg.Now().UnixNano()})
	case RollNode:
		r.log.Info("placing a node to replace another", logkey.ClusterID, a.ClusterID, logkey.HostID, a.HostID, "reason", a.Reason)
		return r.w.RollNode(ctx, &raftcmdv1.RollNode{ClusterId: a.ClusterID, HostId: a.HostID, Reason: a.Reason, At: r.cfg.Now().UnixNano()})
	case SetVIP:
		r.log.Info("vip holder", logkey.ClusterID, a.ClusterID, logkey.HostID, a.HostID, "epoch", a.Epoch, "reason", a.Reason)
		return r.w.SetVIPHolder(ctx, &raftcmdv1.SetVIPHolder{ClusterId: a.ClusterID, HostId: a.HostID, Epoch: a.Epoch, Reason: a.Reason, At: r.cfg.Now().UnixNano()})
	case Dispatch:
		m := &raftcmdv1.DispatchStep{HostId: a.HostID, Step: a.Step, Attempt: int32(a.Attempt), Executor: a.Executor, At: r.cfg.Now().UnixNano()}
		if a.NeedsCred {
			cred, err := r.mintCred(a.HostID)
			if err != nil {
				return err
			}
			m.Cred = cred
		}
		r.log.Debug("dispatch", logkey.ClusterID, a.ClusterID, logkey.HostID, a.HostID, "step", a.Step, "attempt", a.Attempt, "executor", a.Executor)
		return r.w.DispatchStep(ctx, m)
	}
	return errors.New("unknown action")
}

func (r *Reconciler) generatePKI(ctx context.Context, clusterID string) error {
	if r.cfg.Keyring == nil {
		return ErrNoKeyring
	}
	var name string
	r.store.Read(func(st *state.State) {
		if c, ok := st.Cluster(clusterID); ok {
			name = ClusterName(c)
		}
	})
	now := r.cfg.Now()
	p, err := pki.NewClusterPKI(name, now, nil)
	if err != nil {
		return err
	}
	s, err := r.cfg.Keyring.SealPKI(p, clusterID)
	if err != nil {
		return err
	}
	return r.w.SetClusterPKI(ctx, &raftcmdv1.SetClusterPKI{
		ClusterId: clusterID, CaCert: s.CACert, CaKeySealed: s.CAKey,
		FrontProxyCaCert: s.FrontProxyCACert, FrontProxyCaKeySealed: s.FrontProxyCAKey,
		EtcdCaCert: s.EtcdCACert, EtcdCaKeySealed: s.EtcdCAKey,
		SaPub: s.SAPub, SaKeySealed: s.SAKey, KeyringId: s.KeyringID, At: now.UnixNano(),
	})
}

// mintCred makes a fresh bootstrap token for a node's join, sealed for that node only.
func (r *Reconciler) mintCred(hostID string) (*raftcmdv1.JoinCred, error) {
	if r.cfg.Keyring == nil {
		return nil, ErrNoKeyring
	}
	tok, err := pki.NewBootstrapToken()
	if err != nil {
		return nil, err
	}
	sealed, err := r.cfg.Keyring.Seal([]byte(tok), CredAAD(hostID))
	if err != nil {
		return nil, err
	}
	return &raftcmdv1.JoinCred{TokenSealed: sealed, ExpiresAt: r.cfg.Now().Add(r.cfg.Policy.CredTTL).UnixNano(), KeyringId: r.cfg.Keyring.ID()}, nil
}
