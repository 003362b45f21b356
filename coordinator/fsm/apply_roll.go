package fsm

import (
	"fmt"
	"time"

	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// Rolling replaces nodes one at a time, new before old: RollNode places the new node (same
// role, the cluster's node size, Replaces naming the old host); when the new node's whole
// plan has succeeded (for a control plane that ends with etcd-check, so etcd is healthy with
// it), stepSucceeded marks the old node removing in the same write. Nothing is ever decided
// twice: a host has at most one replacement, and an old node is marked removing once.

// rollNeed is how many free hosts of the new size a roll of c to newSize needs. One at a
// time, so a host freed by the roll serves the next replacement when it fits the new size:
// the hosts that do not fit each need a free host, and the others share one.
func (f *FSM) rollNeed(c *state.Cluster, newName string, newSize state.Size) int {
	fit, nonFit := 0, 0
	for _, n := range f.st.NodesOf(c.ID) {
		m := *n
		if m.Size == "" {
			m.Size = c.NodeSize // placed before nodes recorded their size
		}
		target := *c
		target.NodeSize = newName
		h, ok := f.st.Host(n.HostID)
		if !ok || !state.Rollable(&target, &m, h) {
			continue
		}
		if newSize.Fits(h) {
			fit++
		} else {
			nonFit++
		}
	}
	return nonFit + min(fit, 1)
}

// stampSizes records the size of nodes placed before nodes carried one: the cluster's.
func (f *FSM) stampSizes(c *state.Cluster) {
	for _, n := range f.st.NodesOf(c.ID) {
		if n.Size == "" {
			m := *n
			m.Size = c.NodeSize
			f.st.PutNode(&m)
		}
	}
}

func (f *FSM) applyRollNode(m *raftcmdv1.RollNode) any {
	c, ok := f.st.Cluster(m.GetClusterId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetClusterId())
	}
	if c.Status != state.StatusScaling && c.Status != state.StatusRunning {
		return state.Conflict("cluster %s is %s: nodes are replaced only in a running or scaling cluster", c.ID, c.Status)
	}
	old, ok := f.st.Node(m.GetHostId())
	if !ok || old.ClusterID != c.ID || old.State == state.NodeRemoving {
		return state.Conflict("host %s is not a node of cluster %s", m.GetHostId(), c.ID)
	}
	for _, n := range f.st.NodesOf(c.ID) {
		if n.Replaces == old.HostID {
			return state.Conflict("host %s is already being replaced by host %s", old.HostID, n.HostID)
		}
	}
	h, _ := f.st.Host(old.HostID)
	offline := h != nil && h.State == state.HostOffline
	if !state.Rollable(c, old, h) && !(offline && old.IsControlPlane()) {
		return state.Conflict("host %s needs no replacement", old.HostID)
	}
	size := m.GetSize()
	if size.GetName() != c.NodeSize {
		return state.Invalid("size", "size %q is not the cluster's node size %q", size.GetName(), c.NodeSize)
	}
	cps, workers := 0, 1
	role := state.RoleWorker
	if old.IsControlPlane() {
		cps, workers, role = 1, 0, state.RoleControlPlane
	}
	at := unixTime(m.GetAt())
	placed, err := f.st.Place(c.InfraID, size.GetName(), sizeFrom(size), cps, workers)
	if err != nil {
		// The PATCH found the hosts, but something else took them since (a cluster created
		// meanwhile). Recorded, not just refused: the reconciler would otherwise ask
		// again forever while the cluster says nothing. The same PATCH again resumes.
		nc := *c
		nc.Status, nc.UpdatedAt = state.StatusError, at
		nc.StatusReason = "insufficient_capacity: " + err.Error() + " (free a host, then send the same PATCH again)"
		f.st.PutCluster(&nc)
		f.event(c.ID, old.HostID, "cluster.status", "status "+c.Status+" -> error: "+nc.StatusReason, at)
		return &nc
	}
	hostID := append(placed.ControlPlanes, placed.Workers...)[0]
	n := f.reserve(c.ID, hostID, role, size.GetName(), at)
	n.Replaces = old.HostID
	nc := *c
	nc.Status, nc.StatusReason, nc.UpdatedAt = state.StatusScaling, "", at
	f.st.PutCluster(&nc)
	f.event(c.ID, hostID, "node.rolling", fmt.Sprintf("host %s (%s) placed to replace %s on host %s (%s)",
		hostID, size.GetName(), old.Role, old.HostID, m.GetReason()), at)
	return n
}

// replaced takes out the node that n replaces, once n's plan is done: a control plane's
// etcd member goes first, then drain (when its host is up), Node object, reset.
func (f *FSM) replaced(n *state.Node, at time.Time) {
	if n.Replaces == "" || n.State == state.NodeRemoving || n.Next() >= 0 {
		return
	}
	old, ok := f.st.Node(n.Replaces)
	if !ok || old.ClusterID != n.ClusterID || old.State == state.NodeRemoving {
		return
	}
	online := true
	if h, ok := f.st.Host(old.HostID); !ok || h.State == state.HostOffline {
		online = false
	}
	steps := state.RemovalSteps(true)
	if old.IsControlPlane() {
		steps = state.ControlPlaneRemovalSteps(online)
	} else if !online {
		steps = state.ReplacementSteps()
	}
	f.markRemoving(old, at, steps)
	f.event(n.ClusterID, old.HostID, "node.replaced", fmt.Sprintf("%s on host %s replaced by host %s: removing it", old.Role, old.HostID, n.HostID), at)
}
