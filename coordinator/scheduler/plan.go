// Package scheduler is the leader's reconciler: for each cluster it reads a snapshot of the
// state, asks the pure planner (Plan) what should happen next, and applies that as Raft
// commands. It is level-triggered: every decision is re-derived from the state, so a new
// leader, a restarted replica or a lost wake-up only delays work, never loses or repeats it.
// DESIGN.md beside this file states the invariants.
package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deployme/deployme/coordinator/state"
)

// Policy holds the planner's knobs.
type Policy struct {
	// MaxAttempts is how many times a failing step runs before the cluster goes to error.
	MaxAttempts int
	// Backoff is the wait after a step's first failure; it doubles per attempt, up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// CredTTL is the life of a just-in-time bootstrap token; a join never starts with less
	// than CredMargin of it left.
	CredTTL, CredMargin time.Duration
	// ReplaceOfflineAfter is how long a worker's host may stay offline before the worker is
	// replaced by another host (0: never). A control plane offline that long is reported in
	// the cluster's status_reason, and replaced only with ReplaceOfflineControlPlanes.
	ReplaceOfflineAfter time.Duration
	// ReplaceOfflineControlPlanes lets the reconciler replace an offline control plane
	// (a new one joins first, then the old member and Node are removed). Off by default: a
	// control plane that is only partitioned comes back, and replacing it changes etcd
	// membership while a member is unreachable, which an operator should decide.
	ReplaceOfflineControlPlanes bool
}

// DefaultPolicy is what production uses.
func DefaultPolicy() Policy {
	return Policy{MaxAttempts: 3, Backoff: 2 * time.Second, MaxBackoff: 30 * time.Second, CredTTL: 15 * time.Minute, CredMargin: 2 * time.Minute,
		ReplaceOfflineAfter: 10 * time.Minute}
}

// ActionKind says what an Action does.
type ActionKind int

// Actions.
const (
	// GeneratePKI makes the cluster's CAs and service-account key (random material, so the
	// reconciler makes it and the command carries it).
	GeneratePKI ActionKind = iota + 1
	// Dispatch starts a step attempt.
	Dispatch
	// SetStatus ends an operation (running) or fails it (error).
	SetStatus
	// SetVIP gives the cluster's VIP to a control-plane host at the next epoch.
	SetVIP
	// ReplaceWorker takes a worker whose host stayed offline out and places another.
	ReplaceWorker
	// RollNode places a node that replaces HostID (node-size roll, offline control plane).
	RollNode
)

// Action is one decision of the planner.
type Action struct {
	Kind      ActionKind
	ClusterID string
	// Dispatch.
	HostID, Step, Executor string
	Attempt                int
	// Dispatch of a credentials step: a new token must be minted with it.
	NeedsCred bool
	// SetStatus; Reason also says why a VIP moves.
	Status, Reason string
	// SetVIP: the new holder is HostID.
	Epoch uint64
}

func (a Action) String() string {
	switch a.Kind {
	case GeneratePKI:
		return "pki " + a.ClusterID
	case Dispatch:
		return fmt.Sprintf("dispatch %s#%d host=%s executor=%s", a.Step, a.Attempt, a.HostID, a.Executor)
	case SetStatus:
		return fmt.Sprintf("status %s %s", a.Status, a.Reason)
	case SetVIP:
		return fmt.Sprintf("vip host=%s epoch=%d (%s)", a.HostID, a.Epoch, a.Reason)
	case ReplaceWorker:
		return fmt.Sprintf("replace host=%s (%s)", a.HostID, a.Reason)
	case RollNode:
		return fmt.Sprintf("roll host=%s (%s)", a.HostID, a.Reason)
	}
	return "?"
}

// View is what the planner sees of one cluster.
type View struct {
	Cluster *state.Cluster
	Nodes   []*state.Node
	Hosts   map[string]*state.Host
	Now     time.Time
}

// NewView gathers a cluster's view from the state.
func NewView(st *state.State, c *state.Cluster, now time.Time) View {
	v := View{Cluster: c, Nodes: st.NodesOf(c.ID), Hosts: map[string]*state.Host{}, Now: now}
	for _, n := range v.Nodes {
		if h, ok := st.Host(n.HostID); ok {
			v.Hosts[h.ID] = h
		}
	}
	return v
}

// Plan returns the next actions for a cluster and, when it waits on time (a backoff), how
// long until it should be looked at again (0: only a state change can unblock it).
func Plan(p Policy, v View) (actions []Action, requeue time.Duration) {
	c := v.Cluster
	nodes := slices.Clone(v.Nodes)
	slices.SortFunc(nodes, func(a, b *state.Node) int {
		return cmp.Or(cmp.Compare(roleRank(a.Role), roleRank(b.Role)), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.HostID, b.HostID))
	})
	pl := planner{p: p, v: v, nodes: nodes}
	if c.Status == state.StatusDeleting {
		for _, n := range nodes {
			pl.removal(n)
		}
		return pl.actions, pl.requeue
	}
	// The VIP is looked after in every other status: a running cluster's VIP moves when its
	// holder fails.
	if a, ok := pl.vip(); ok {
		return []Action{a}, 0
	}
	if c.Status == state.StatusRunning {
		if a, ok := pl.replacement(); ok {
			return []Action{a}, 0
		}
		if a, ok := pl.offlineControlPlanes(); ok {
			return []Action{a}, 0
		}
	}
	switch c.Status {
	case state.StatusProvisioning, state.StatusScaling, state.StatusUpgrading:
	default:
		// running, error: nothing moves until someone asks (scale, upgrade, delete),
		// except the reset of a removed node whose host was offline and came back.
		for _, n := range nodes {
			pl.removal(n)
		}
		return pl.actions, pl.requeue
	}
	if c.PKI == nil {
		return []Action{{Kind: GeneratePKI, ClusterID: c.ID}}, 0
	}
	done := true
	for _, n := range nodes {
		if n.State == state.NodeRemoving {
			pl.removal(n)
			// A replaced worker's host that is still offline resets when it comes back:
			// the cluster does not wait for it.
			if i := n.NextRemoval(); i < 0 || n.Steps[i].Name != state.StepReset || pl.online(n.HostID) {
				done = false
			}
			continue
		}
		if n.Next() >= 0 {
			done = false
		}
		if reason := pl.node(n); reason != "" {
			return []Action{{Kind: SetStatus, ClusterID: c.ID, Status: state.StatusError, Reason: reason}}, 0
		}
	}
	if done {
		if a, ok := pl.roll(); ok {
			return []Action{a}, 0
		}
		return []Action{{Kind: SetStatus, ClusterID: c.ID, Status: state.StatusRunning}}, 0
	}
	return pl.actions, pl.requeue
}

func roleRank(role string) int {
	switch role {
	case state.RoleInitControlPlane:
		return 0
	case state.RoleControlPlane:
		return 1
	}
	return 2
}

type planner struct {
	p       Policy
	v       View
	nodes   []*state.Node
	actions []Action
	requeue time.Duration
}

func (pl *planner) wait(d time.Duration) {
	if d > 0 && (pl.requeue == 0 || d < pl.requeue) {
		pl.requeue = d
	}
}

func (pl *planner) online(hostID string) bool {
	h, ok := pl.v.Hosts[hostID]
	return ok && h.State != state.HostOffline && h.State != state.HostDecommissioned
}

// retry decides about a failed step: ok to start the next attempt now, or wait, or give up
// (exhausted).
func (pl *planner) retry(s state.Step, limit int) (now, exhausted bool) {
	tries := s.Attempt - s.Since // attempts since the step was (re)added
	if limit > 0 && tries >= limit {
		return false, true
	}
	b := pl.p.Backoff << min(max(tries-1, 0), 16)
	if b > pl.p.MaxBackoff || b <= 0 {
		b = pl.p.MaxBackoff
	}
	if left := s.EndedAt.Add(b).Sub(pl.v.Now); left > 0 {
		pl.wait(left)
		return false, false
	}
	return true, false
}

// node plans one node; a non-empty return is why the cluster failed.
func (pl *planner) node(n *state.Node) string {
	i := n.Next()
	if i < 0 {
		return ""
	}
	s := n.Steps[i]
	switch s.State {
	case state.StepRunning:
		return ""
	case state.StepFailed:
		now, exhausted := pl.retry(s, pl.p.MaxAttempts)
		if exhausted {
			return fmt.Sprintf("step_failed: %s on host %s failed %d times: %s", s.Name, n.HostID, s.Attempt-s.Since, s.Reason)
		}
		if !now {
			return ""
		}
	}
	c := pl.v.Cluster
	executor := n.HostID
	switch s.Name {
	case state.StepInit:
		// kubeadm init talks to the control-plane endpoint: with a VIP, it must be up on
		// this host first.
		if v := c.VIP; v != nil && (v.Holder != n.HostID || !v.Held) {
			return ""
		}
	case state.StepUpgradeApply, state.StepUpgradeNode, state.StepUpgradeDrain, state.StepUncordon:
		if !pl.upgradeTurn(n) {
			return ""
		}
		if s.Name == state.StepUpgradeDrain || s.Name == state.StepUncordon {
			executor = pl.minter(n.HostID)
			if executor == "" {
				return ""
			}
		}
	case state.StepEtcdCleanup, state.StepCredentials, state.StepJoin:
		if c.InitHost == "" {
			return ""
		}
		if n.Role == state.RoleControlPlane && !pl.turnOf(n) {
			return "" // control planes join one at a time
		}
		if s.Name == state.StepJoin && s.State == state.StepFailed {
			// A failed join may have left this node's etcd member (or learner) behind:
			// etcd-cleanup runs again before every retry.
			if ei := n.StepIndex(state.StepEtcdCleanup); ei >= 0 && !n.Steps[ei].EndedAt.After(s.EndedAt) {
				if n.Steps[ei].State == state.StepRunning {
					return ""
				}
				s = n.Steps[ei]
			}
		}
		ci := n.StepIndex(state.StepCredentials)
		if s.Name == state.StepJoin && ci >= 0 {
			if cr := n.Cred; cr == nil || !cr.ExpiresAt.After(pl.v.Now.Add(pl.p.CredMargin)) {
				// The token is gone or nearly: mint a new one first.
				cs := n.Steps[ci]
				if cs.State == state.StepRunning {
					return ""
				}
				s, executor = cs, ""
			}
		}
		if s.Name == state.StepCredentials || s.Name == state.StepEtcdCleanup {
			executor = pl.minter(n.HostID)
			if executor == "" {
				return ""
			}
		}
	}
	if !pl.online(executor) || !pl.online(n.HostID) {
		return ""
	}
	pl.actions = append(pl.actions, Action{
		Kind: Dispatch, ClusterID: c.ID, HostID: n.HostID, Step: s.Name, Attempt: s.Attempt + 1,
		Executor: executor, NeedsCred: s.Name == state.StepCredentials,
	})
	return ""
}

// turnOf tells whether a control plane may join now: every control plane before it (the
// initial one included) has finished its plan, which ends with etcd-check. So etcd changes
// membership once at a time, each time from a healthy cluster.
func (pl *planner) turnOf(n *state.Node) bool {
	for _, o := range pl.nodes {
		if o == n {
			return true
		}
		if o.IsControlPlane() && o.State != state.NodeRemoving && o.Next() >= 0 {
			return false
		}
	}
	return true
}

// minter picks the control plane that runs cluster-wide commands (minting join tokens,
// kubectl drain, etcdctl) for node `about`: the initial one when it is online, else any
// joined control plane that is; never `about` itself, nor a control plane being removed.
func (pl *planner) minter(about string) string {
	c := pl.v.Cluster
	for _, o := range pl.nodes {
		if o.HostID == c.InitHost && o.HostID != about && o.State != state.NodeRemoving && pl.online(o.HostID) {
			return o.HostID
		}
	}
	for _, o := range pl.nodes {
		if o.Role == state.RoleControlPlane && o.Done(state.StepJoin) && o.HostID != about && o.State != state.NodeRemoving && pl.online(o.HostID) {
			return o.HostID
		}
	}
	return ""
}

// removal plans a removing node: reset once nothing else runs on it, retried without limit
// (a deletion must finish; it waits for an offline host to come back).
func (pl *planner) removal(n *state.Node) {
	if n.State != state.NodeRemoving {
		return
	}
	ri := n.NextRemoval()
	if ri < 0 {
		return
	}
	for _, s := range n.Steps {
		if s.State == state.StepRunning {
			return
		}
	}
	s := n.Steps[ri]
	if s.State == state.StepFailed {
		// Removal steps are retried without limit, with backoff: a drain that a
		// PodDisruptionBudget blocks says so in each failure's event, and goes on once
		// the budget allows; a deletion must finish.
		if now, _ := pl.retry(s, 0); !now {
			return
		}
	}
	executor := n.HostID
	if s.Name == state.StepDrain || s.Name == state.StepDeleteNode || s.Name == state.StepEtcdRemove {
		// kubectl and etcdctl run on another joined control plane, with its admin
		// kubeconfig: the node itself may be gone already.
		executor = pl.minter(n.HostID)
		if executor == "" {
			return
		}
	} else if !pl.online(n.HostID) {
		return
	}
	pl.actions = append(pl.actions, Action{Kind: Dispatch, ClusterID: pl.v.Cluster.ID, HostID: n.HostID, Step: s.Name, Attempt: s.Attempt + 1, Executor: executor})
}

// vip decides whether the cluster's VIP needs a new holder: nobody holds it, or the holder
// gave it up, went offline, or is being removed. Before kubeadm init only the first control
// plane can hold it (init needs it); afterwards only a control plane that has joined and
// whose API server answers its readiness check.
func (pl *planner) vip() (Action, bool) {
	c := pl.v.Cluster
	v := c.VIP
	if v == nil {
		return Action{}, false
	}
	reason := "no holder yet"
	if v.Holder != "" {
		var holder *state.Node
		for _, n := range pl.nodes {
			if n.HostID == v.Holder {
				holder = n
			}
		}
		switch {
		case holder == nil || holder.State == state.NodeRemoving:
			reason = "holder " + v.Holder + " left the cluster"
		case !pl.online(v.Holder):
			reason = "holder " + v.Holder + " is offline"
		default:
			return Action{}, false
		}
	} else if v.Epoch > 0 {
		reason = "the previous holder gave it up"
	}
	for _, n := range pl.nodes {
		if !n.IsControlPlane() || n.State == state.NodeRemoving || !pl.online(n.HostID) {
			continue
		}
		if c.InitHost == "" {
			if n.Role != state.RoleInitControlPlane {
				continue
			}
		} else if !n.APIReady || (n.HostID != c.InitHost && !n.Done(state.StepJoin)) {
			continue
		}
		return Action{Kind: SetVIP, ClusterID: c.ID, HostID: n.HostID, Epoch: v.Epoch + 1, Reason: reason}, true
	}
	return Action{}, false
}

// replacement picks a worker whose host has been offline for longer than the policy allows:
// it is replaced by a new host (the Node object deleted, the old host reset whenever it
// comes back). One at a time, so a rack going dark does not empty the pool in one pass.
func (pl *planner) replacement() (Action, bool) {
	limit := pl.p.ReplaceOfflineAfter
	if limit <= 0 {
		return Action{}, false
	}
	for _, n := range pl.nodes {
		if n.Role != state.RoleWorker || n.State == state.NodeRemoving {
			continue
		}
		h, ok := pl.v.Hosts[n.HostID]
		if !ok || h.State != state.HostOffline {
			continue
		}
		if away := pl.v.Now.Sub(h.LastSeen); away > limit {
			return Action{Kind: ReplaceWorker, ClusterID: pl.v.Cluster.ID, HostID: n.HostID,
				Reason: fmt.Sprintf("offline for %s", away.Round(time.Second))}, true
		}
		pl.wait(limit - pl.v.Now.Sub(h.LastSeen))
	}
	return Action{}, false
}

// roll picks the next node a node-size roll replaces, once everything else is done: one at
// a time, workers first (oldest first), then control planes, the initial one last.
func (pl *planner) roll() (Action, bool) {
	c := pl.v.Cluster
	var pick *state.Node
	rank := func(n *state.Node) int {
		switch n.Role {
		case state.RoleWorker:
			return 0
		case state.RoleControlPlane:
			return 1
		}
		return 2
	}
	for _, n := range pl.nodes {
		if !state.Rollable(c, n, pl.v.Hosts[n.HostID]) {
			continue
		}
		if pick == nil || rank(n) < rank(pick) || (rank(n) == rank(pick) && n.CreatedAt.Before(pick.CreatedAt)) {
			pick = n
		}
	}
	if pick == nil {
		return Action{}, false
	}
	return Action{Kind: RollNode, ClusterID: c.ID, HostID: pick.HostID,
		Reason: fmt.Sprintf("node size %s -> %s", pick.Size, c.NodeSize)}, true
}

// offlineControlPlanes reports control planes whose host has been offline for longer than
// ReplaceOfflineAfter in the cluster's status_reason (and clears it when they are back),
// or replaces one when the policy allows it.
func (pl *planner) offlineControlPlanes() (Action, bool) {
	c := pl.v.Cluster
	limit := pl.p.ReplaceOfflineAfter
	var lost []string
	var first *state.Node
	if limit > 0 {
		for _, n := range pl.nodes {
			if !n.IsControlPlane() || n.State == state.NodeRemoving {
				continue
			}
			h, ok := pl.v.Hosts[n.HostID]
			if !ok || h.State != state.HostOffline {
				continue
			}
			if away := pl.v.Now.Sub(h.LastSeen); away > limit {
				lost = append(lost, fmt.Sprintf("%s (offline for %s)", n.HostID, away.Round(time.Minute)))
				if first == nil {
					first = n
				}
			} else {
				pl.wait(limit - away)
			}
		}
	}
	if first != nil && pl.p.ReplaceOfflineControlPlanes {
		return Action{Kind: RollNode, ClusterID: c.ID, HostID: first.HostID, Reason: "control plane offline"}, true
	}
	reason := ""
	if len(lost) > 0 {
		reason = "control_plane_offline: " + strings.Join(lost, ", ") +
			"; not replaced automatically (coordinator --replace-offline-control-planes, or bring the host back)"
	}
	if reason != c.StatusReason && (reason != "" || strings.HasPrefix(c.StatusReason, "control_plane_offline")) {
		return Action{Kind: SetStatus, ClusterID: c.ID, Status: state.StatusRunning, Reason: reason}, true
	}
	return Action{}, false
}

// upgradeTurn tells whether node n may take its next upgrade step: the control plane that
// runs kubeadm upgrade apply first, then the other control planes one at a time, then the
// workers one at a time (each drained, upgraded and uncordoned before the next starts).
func (pl *planner) upgradeTurn(n *state.Node) bool {
	unfinished := func(o *state.Node, names ...string) bool {
		if o.State == state.NodeRemoving {
			return false
		}
		for _, s := range o.Steps {
			if state.IsUpgradeStep(s.Name) && s.State != state.StepSucceeded && (len(names) == 0 || slices.Contains(names, s.Name)) {
				return true
			}
		}
		return false
	}
	if n.StepIndex(state.StepUpgradeApply) >= 0 {
		return true
	}
	for _, o := range pl.nodes {
		if unfinished(o, state.StepUpgradeApply) {
			return false
		}
	}
	for _, o := range pl.nodes {
		if o.IsControlPlane() != n.IsControlPlane() {
			if n.IsControlPlane() {
				continue
			}
			if unfinished(o) {
				return false // workers wait for every control plane
			}
			continue
		}
		if unfinished(o) {
			return o == n // the first unfinished one of its kind, in order
		}
	}
	return false
}
