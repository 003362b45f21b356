// Package service is the coordinator's application layer: it implements the REST backend
// (and, later, the agent service's writes) by validating against state, choosing IDs, times
// and secrets, and proposing Raft commands. Handlers above it never see Raft.
package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/api/rest"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/forward"
	"github.com/deployme/deployme/coordinator/pki"
	"github.com/deployme/deployme/coordinator/raftnode"
	"github.com/deployme/deployme/coordinator/state"
	clusterv1 "github.com/deployme/deployme/proto/cluster/v1"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// Cluster is what the service needs of the replicated log, wherever the leader is.
type Cluster interface {
	// Apply applies an entry on the leader; on return this replica has applied it too.
	Apply(ctx context.Context, entry []byte) (forward.Result, error)
	// ReadIndex returns an index that, once applied here, makes a local read linearizable.
	ReadIndex(ctx context.Context) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) error
	Leader() (addr, id string)
	Servers() ([]raftnode.Server, error)
	PeerStatus(ctx context.Context, raftAddr string) (*clusterv1.StatusResponse, error)
	ChangeMembership(ctx context.Context, req *clusterv1.ChangeMembershipRequest) error
}

// Store is the local, applied state.
type Store interface {
	Read(fn func(*state.State))
	Changed() <-chan struct{}
}

// NodeSize is one row of the operator's node-size table.
type NodeSize struct {
	Name string
	state.Size
}

// Config configures the service. Start from DefaultConfig.
type Config struct {
	// NodeSizes is the operator's table of minimums, smallest first.
	NodeSizes []NodeSize
	// KubernetesVersions lists the installable versions; exactly one is the default.
	KubernetesVersions []v1.KubernetesVersion
	// DefaultPlan is the plan of tokens created without one.
	DefaultPlan string
	// NodeID, AdvertiseHTTP, AdvertiseGRPC describe this replica (members list, join command).
	NodeID        string
	AdvertiseHTTP string
	AdvertiseGRPC string
	// EventWait is how long an event follower waits before an empty answer (keepalive).
	EventWait time.Duration
	Logger    *slog.Logger
	// Keyring opens the sealed cluster keys and join tokens (nil: this replica has none,
	// and cannot issue kubeconfigs or hand steps their secrets).
	Keyring *pki.Keyring
	// KubeArtifacts finds a Kubernetes version's kubeadm, kubelet and kubectl in the
	// artifact store (nil: there is none, and upgrades are refused).
	KubeArtifacts func(version string) ([]state.Artifact, error)
	// Now and Rand are the clock and entropy (tests replace them).
	Now  func() time.Time
	Rand io.Reader
}

const gib = int64(1) << 30

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		NodeSizes: []NodeSize{
			{"small", state.Size{CPUs: 2, MemoryBytes: 4 * gib}},
			{"medium", state.Size{CPUs: 4, MemoryBytes: 8 * gib}},
			{"large", state.Size{CPUs: 4, MemoryBytes: 16 * gib}},
			{"xlarge", state.Size{CPUs: 8, MemoryBytes: 32 * gib}},
		},
		KubernetesVersions: []v1.KubernetesVersion{
			{Version: "v1.37.2", Default: true},
			{Version: "v1.36.6"},
		},
		DefaultPlan: v1.PlanCommunity,
		EventWait:   15 * time.Second,
		Now:         time.Now,
		Rand:        rand.Reader,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.NodeSizes) == 0 {
		return errors.New("no node sizes configured")
	}
	seen := map[string]bool{}
	for _, s := range c.NodeSizes {
		if s.Name == "" || seen[s.Name] || s.CPUs < 1 || s.MemoryBytes < 1 {
			return fmt.Errorf("node size %q: names must be unique and minimums positive", s.Name)
		}
		seen[s.Name] = true
	}
	defaults := 0
	for _, k := range c.KubernetesVersions {
		if _, _, _, err := state.ParseVersion(k.Version); err != nil {
			return err
		}
		if k.Default {
			defaults++
		}
	}
	if defaults != 1 {
		return fmt.Errorf("exactly one Kubernetes version must be the default, %d are", defaults)
	}
	if _, ok := v1.PlanLimits[c.DefaultPlan]; !ok {
		return fmt.Errorf("default plan %q is not community, pro or enterprise", c.DefaultPlan)
	}
	return nil
}

// Service implements rest.Backend.
type Service struct {
	cfg   Config
	cl    Cluster
	store Store
	log   *slog.Logger
	sizes map[string]state.Size
}

var _ rest.Backend = (*Service)(nil)

// New returns a service.
func New(cfg Config, cl Cluster, st Store) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.EventWait <= 0 {
		cfg.EventWait = 15 * time.Second
	}
	sizes := map[string]state.Size{}
	for _, s := range cfg.NodeSizes {
		sizes[s.Name] = s.Size
	}
	return &Service{cfg: cfg, cl: cl, store: st, log: cfg.Logger, sizes: sizes}, nil
}

// Catalog is what requests are validated against.
func (s *Service) Catalog() rest.Catalog {
	names := make([]string, len(s.cfg.NodeSizes))
	for i, n := range s.cfg.NodeSizes {
		names[i] = n.Name
	}
	return rest.Catalog{NodeSizes: names, KubernetesVersions: s.cfg.KubernetesVersions, DefaultPlan: s.cfg.DefaultPlan}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// applied is the outcome of a write: the ID of the object to answer with (the proposed one,
// or on an idempotent retry the one the first request created) and, when the leader sent
// it, the stored object itself.
type applied struct {
	ID    string
	Value any
}

// apply proposes a command (wrapped with the request's Idempotency-Key, if any). On return
// the entry is committed; it is applied on this replica too unless the stored object came
// back in the result (then this replica's next linearizable read waits for it).
func (s *Service) apply(ctx context.Context, t command.Type, msg proto.Message, id string) (applied, error) {
	entry, err := command.Encode(t, msg)
	if err != nil {
		return applied{}, err
	}
	o := rest.OptionsFrom(ctx)
	if o.IdempotencyKey != "" {
		entry, err = command.Encode(command.TypeIdempotent, &raftcmdv1.Idempotent{
			Key: o.IdempotencyKey, Fingerprint: o.Fingerprint, At: unixNano(s.now()), Inner: entry,
		})
		if err != nil {
			return applied{}, err
		}
	}
	res, err := s.cl.Apply(ctx, entry)
	if err != nil {
		return applied{}, clusterError(err)
	}
	if res.Refusal != nil {
		return applied{}, stateError(res.Refusal)
	}
	if o.IdempotencyKey != "" && res.Value == nil {
		// A retry: the state machine answered with the first request's record.
		s.store.Read(func(st *state.State) {
			if rec, ok := st.Idempotency(o.IdempotencyKey); ok && rec.ObjectID != "" {
				id = rec.ObjectID
			}
		})
	}
	return applied{ID: id, Value: res.Value}, nil
}

// linearize makes the next local read see every write acknowledged before this call, on any
// replica (read index from the leader, then wait to apply it), unless the request allowed a
// stale read.
func (s *Service) linearize(ctx context.Context) error {
	if rest.OptionsFrom(ctx).Stale {
		return nil
	}
	idx, err := s.cl.ReadIndex(ctx)
	if err != nil {
		return clusterError(err)
	}
	if err := s.cl.WaitApplied(ctx, idx); err != nil {
		return clusterError(err)
	}
	return nil
}

// clusterError maps the log's failures. None says the write failed for sure except "no
// leader", where nothing was proposed.
func clusterError(err error) error {
	switch {
	case errors.Is(err, forward.ErrNoLeader), errors.Is(err, raftnode.ErrNotLeader), errors.Is(err, forward.ErrNotReady):
		return v1.Errorf(v1.CodeUnavailable, "no coordinator leader is available (no quorum?); nothing was applied; retry shortly")
	case errors.Is(err, forward.ErrUnknownOutcome), errors.Is(err, raftnode.ErrUnknownOutcome), errors.Is(err, raftnode.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return v1.Errorf(v1.CodeUnavailable, "the write may or may not have been applied; retry with the same Idempotency-Key, or check").With("outcome", "unknown")
	case errors.Is(err, raftnode.ErrShutdown):
		return v1.Errorf(v1.CodeUnavailable, "the coordinator is shutting down")
	}
	return err
}

func stateError(e *state.Error) *v1.Error {
	var out *v1.Error
	switch e.Kind {
	case state.KindNotFound:
		out = v1.Errorf(v1.CodeNotFound, "%s", e.Message)
	case state.KindConflict:
		out = v1.Errorf(v1.CodeConflict, "%s", e.Message)
	case state.KindCapacity:
		out = v1.Errorf(v1.CodeInsufficientCapacity, "%s", e.Message)
	default:
		out = v1.Errorf(v1.CodeInvalidRequest, "%s", e.Message)
	}
	for k, v := range e.Details {
		out = out.With(k, v)
	}
	if e.Field != "" {
		out = out.With("field", e.Field)
	}
	return out
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + 16 random lowercase characters (80 bits).
func (s *Service) newID(prefix string) (string, error) {
	b := make([]byte, 10)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return "", fmt.Errorf("entropy: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b), nil
}

// newSecret returns a 256-bit bearer secret with a recognisable prefix (so leaked tokens
// are easy to find in logs and repositories).
func (s *Service) newSecret(prefix string) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return "", fmt.Errorf("entropy: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b), nil
}

// HashSecret is how token secrets are stored. Secrets are 256 random bits, so one SHA-256
// is enough: there is nothing to brute-force that a slow hash would protect.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func unixNano(t time.Time) int64 { return t.UnixNano() }
