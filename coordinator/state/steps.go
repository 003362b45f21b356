package state

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Step names (docs/steps.md is the contract with the agent).
const (
	StepPreflight   = "preflight"
	StepPrepare     = "prepare"
	StepPKI         = "pki"
	StepInit        = "init"
	StepCNI         = "cni"
	StepCredentials = "credentials"
	StepJoin        = "join"
	StepReady       = "ready"
	// StepDrain and StepDeleteNode remove a worker from Kubernetes before its reset: a
	// joined control plane cordons and drains it (the eviction API, so PodDisruptionBudgets
	// hold), then deletes its Node object.
	StepDrain      = "drain"
	StepDeleteNode = "delete-node"
	StepReset      = "reset"
	// StepEtcdCheck ends a control plane's plan: its etcd member is found (and recorded)
	// and every member of the cluster must be healthy, so control-plane changes happen one
	// at a time on a healthy etcd.
	StepEtcdCheck = "etcd-check"
	// StepEtcdCleanup runs on a joined control plane before a control plane's join, and
	// again before each retry of a failed join: a member (or learner) left behind by an
	// earlier attempt for that node is removed, so the retry can add it again.
	StepEtcdCleanup = "etcd-cleanup"
	// StepEtcdRemove removes a leaving control plane's etcd member first, from another
	// control plane.
	StepEtcdRemove = "etcd-remove"
	// Upgrade steps, appended to every node's plan by an upgrade: the first control plane
	// runs kubeadm upgrade apply, the other control planes kubeadm upgrade node one at a
	// time, then each worker in turn is drained (by a control plane), upgraded and
	// uncordoned. Each upgrade step installs the target version's binaries from the
	// coordinators' artifact store first.
	StepUpgradeApply = "upgrade-apply"
	StepUpgradeNode  = "upgrade-node"
	StepUpgradeDrain = "upgrade-drain"
	StepUncordon     = "uncordon"
	// StepInstall comes first on a node placed in a cluster that was upgraded: it gets the
	// cluster's binaries from the artifact store before its preflight checks them.
	StepInstall = "install"
)

// UpgradeSteps is what an upgrade appends to a node's plan: apply on the control plane
// that leads it, node on the other control planes, drain, node, uncordon on workers.
func UpgradeSteps(role string, leader bool) []string {
	switch {
	case leader:
		return []string{StepUpgradeApply}
	case role == RoleWorker:
		return []string{StepUpgradeDrain, StepUpgradeNode, StepUncordon}
	}
	return []string{StepUpgradeNode}
}

// IsUpgradeStep tells whether a step belongs to an upgrade.
func IsUpgradeStep(name string) bool {
	return name == StepUpgradeApply || name == StepUpgradeNode || name == StepUpgradeDrain || name == StepUncordon
}

// RemovalSteps is the plan that takes a node out: drain and delete its Node object first
// when it is leaving a cluster that stays (a scale-down), reset alone when the whole
// cluster goes.
func RemovalSteps(drain bool) []string {
	if drain {
		return []string{StepDrain, StepDeleteNode, StepReset}
	}
	return []string{StepReset}
}

// ControlPlaneRemovalSteps take a control plane out of a cluster that stays: its etcd
// member goes first (from another control plane, so the removal never depends on the
// leaving host), then it is drained (skipped when its host is offline: nothing can be
// evicted from a dead kubelet) and its Node object deleted; the reset waits for the host.
func ControlPlaneRemovalSteps(drain bool) []string {
	if drain {
		return []string{StepEtcdRemove, StepDrain, StepDeleteNode, StepReset}
	}
	return []string{StepEtcdRemove, StepDeleteNode, StepReset}
}

// ReplacementSteps take out a worker whose host is offline: its Node object goes at once
// (a drain cannot evict from a dead kubelet, and Kubernetes reschedules the pods once the
// node is gone), the reset waits for the host to come back.
func ReplacementSteps() []string { return []string{StepDeleteNode, StepReset} }

// IsRemovalStep tells whether a step belongs to a node's removal.
func IsRemovalStep(name string) bool {
	return name == StepDrain || name == StepDeleteNode || name == StepReset || name == StepEtcdRemove
}

// Step states.
const (
	StepPending   = "pending"
	StepRunning   = "running"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
)

// Step is one named step of a node's plan and its latest attempt.
type Step struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Attempt int    `json:"attempt,omitempty"`
	// Since is the attempt count when the step was (re)added to the plan: a step that a
	// later operation adds again (an upgrade's steps, at the next upgrade) keeps counting
	// attempts, so its step ids never repeat one the agent already answered, and its retry
	// limit counts from here.
	Since int `json:"since,omitempty"`
	// Executor is the host that runs the attempt: the node's own host, except for
	// `credentials`, which a joined control plane runs on the node's behalf.
	Executor  string    `json:"executor,omitempty"`
	Phase     string    `json:"phase,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Output    string    `json:"output,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// PlanFor is the ordered step list of a node with that role.
func PlanFor(role string) []string {
	switch role {
	case RoleInitControlPlane:
		return []string{StepPreflight, StepPrepare, StepPKI, StepInit, StepCNI, StepReady, StepEtcdCheck}
	case RoleControlPlane:
		return []string{StepPreflight, StepPrepare, StepPKI, StepEtcdCleanup, StepCredentials, StepJoin, StepReady, StepEtcdCheck}
	default:
		return []string{StepPreflight, StepPrepare, StepCredentials, StepJoin, StepReady}
	}
}

// NodePlan is a new node's plan: install first when its cluster has binaries in the
// artifact store (Cluster.Artifacts), then PlanFor(role).
func NodePlan(role string, install bool) []string {
	if install {
		return append([]string{StepInstall}, PlanFor(role)...)
	}
	return PlanFor(role)
}

// NewSteps returns a fresh plan of pending steps.
func NewSteps(names ...string) []Step {
	out := make([]Step, len(names))
	for i, n := range names {
		out[i] = Step{Name: n, State: StepPending}
	}
	return out
}

// StepID names one attempt of one step of one node: host, node generation (a host can be a
// node again later, of this cluster or another, and must never be answered from an old
// record), step and attempt.
func StepID(hostID, gen, step string, attempt int) string {
	return hostID + "." + gen + "." + step + "." + strconv.Itoa(attempt)
}

// Gen is the node's generation: its creation time, in base 36.
func (n *Node) Gen() string { return strconv.FormatInt(n.CreatedAt.UnixNano(), 36) }

// StepID names an attempt of one of the node's steps.
func (n *Node) StepID(step string, attempt int) string {
	return StepID(n.HostID, n.Gen(), step, attempt)
}

// ParseStepID splits a step id; ok is false for anything malformed.
func ParseStepID(id string) (hostID, gen, step string, attempt int, ok bool) {
	parts := strings.Split(id, ".")
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", 0, false
	}
	n, err := strconv.Atoi(parts[3])
	if err != nil || n < 1 || strconv.Itoa(n) != parts[3] {
		return "", "", "", 0, false
	}
	return parts[0], parts[1], parts[2], n, true
}

// StepIndex returns the index of the named step in the node's plan, or -1.
func (n *Node) StepIndex(name string) int {
	for i, s := range n.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// Next returns the index of the node's first step that has not succeeded, or -1 when the
// whole plan is done.
func (n *Node) Next() int {
	for i, s := range n.Steps {
		if s.State != StepSucceeded {
			return i
		}
	}
	return -1
}

// NextRemoval returns the index of a removing node's first removal step that has not
// succeeded, or -1. Steps of its plan that failed before the removal do not hold it up.
func (n *Node) NextRemoval() int {
	for i, s := range n.Steps {
		if IsRemovalStep(s.Name) && s.State != StepSucceeded {
			return i
		}
	}
	return -1
}

// Done tells whether the named step has succeeded.
func (n *Node) Done(name string) bool {
	i := n.StepIndex(name)
	return i >= 0 && n.Steps[i].State == StepSucceeded
}

// String is for logs.
func (s Step) String() string { return fmt.Sprintf("%s#%d(%s)", s.Name, s.Attempt, s.State) }

// Rollable tells whether a node-size roll of cluster c replaces node n, on host h: it was
// placed for another size, and it can move. A control plane can, unless the cluster has no
// VIP and its endpoint is that host (its address, or name): the endpoint is in every
// kubeconfig and cannot move.
func Rollable(c *Cluster, n *Node, h *Host) bool {
	if n.State == NodeRemoving || n.Size == c.NodeSize || n.Size == "" {
		return false
	}
	if !n.IsControlPlane() || c.VIP != nil {
		return true
	}
	return h != nil && !c.EndpointIs(h)
}

// EndpointIs tells whether the cluster's endpoint is host h (as endpoints are chosen
// without a VIP: its address, else its hostname, else its ID).
func (c *Cluster) EndpointIs(h *Host) bool {
	host := strings.TrimPrefix(c.Endpoint, "https://")
	if x, _, err := net.SplitHostPort(host); err == nil {
		host = x
	}
	return host == h.Address() || host == h.Hostname || host == h.ID
}
