package fsm

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// apiServerPort is the port every control-plane endpoint listens on.
const apiServerPort = "6443"

func (f *FSM) event(clusterID, hostID, typ, msg string, at time.Time) {
	f.st.AppendEvent(state.Event{ClusterID: clusterID, HostID: hostID, Type: typ, Message: msg, Time: at})
}

func (f *FSM) applyCreateCluster(m *raftcmdv1.CreateCluster) any {
	p := m.GetCluster()
	at := unixTime(m.GetAt())
	if _, ok := f.st.Cluster(p.GetId()); ok {
		return state.Conflict("cluster %s already exists", p.GetId())
	}
	if other, ok := f.st.ClusterByName(p.GetName()); ok {
		e := state.Conflict("a cluster named %q already exists (%s, %s)", p.GetName(), other.ID, other.Status)
		e.Field = "name"
		return e
	}
	infra, ok := f.st.Infra(p.GetInfraId())
	if !ok {
		return state.Invalid("infra_id", "infra %s does not exist", p.GetInfraId())
	}
	if want := phaseInfraKind(p.GetPhase()); infra.Kind != want {
		return state.Invalid("infra_id", "phase %s needs an infra of kind %s; %s is %s", p.GetPhase(), want, infra.ID, infra.Kind)
	}
	var arts []state.Artifact
	if len(m.GetArtifacts()) > 0 {
		var aerr *state.Error
		if arts, aerr = upgradeArtifacts(m.GetArtifacts()); aerr != nil {
			return aerr
		}
	}
	size := m.GetSize()
	placed, err := f.st.Place(infra.ID, size.GetName(), sizeFrom(size), int(p.GetControlPlanes()), int(p.GetWorkers()))
	if err != nil {
		return capacityError(err)
	}
	c := &state.Cluster{
		ID:                p.GetId(),
		Name:              p.GetName(),
		Status:            state.StatusProvisioning,
		Phase:             p.GetPhase(),
		ControlPlanes:     int(p.GetControlPlanes()),
		Workers:           int(p.GetWorkers()),
		NodeSize:          size.GetName(),
		KubernetesVersion: p.GetKubernetesVersion(),
		InfraID:           infra.ID,
		Artifacts:         arts,
		CreatedAt:         at,
		UpdatedAt:         at,
	}
	c.Endpoint = f.endpointFor(infra, placed.ControlPlanes[0])
	c.VIP = f.vipFor(infra, c.Endpoint)
	f.st.PutCluster(c)
	for i, hostID := range placed.ControlPlanes {
		role := state.RoleControlPlane
		if i == 0 {
			role = state.RoleInitControlPlane
		}
		f.reserve(c.ID, hostID, role, c.NodeSize, at)
	}
	for _, hostID := range placed.Workers {
		f.reserve(c.ID, hostID, state.RoleWorker, c.NodeSize, at)
	}
	f.event(c.ID, "", "cluster.created", fmt.Sprintf("cluster %s created: %d control plane(s), %d worker(s) of size %s on infra %s",
		c.Name, c.ControlPlanes, c.Workers, c.NodeSize, c.InfraID), at)
	return c
}

func phaseInfraKind(phase string) string {
	if phase == "managed" {
		return "managed"
	}
	return phase
}

func capacityError(err error) *state.Error {
	ce, ok := err.(*state.CapacityError)
	if !ok {
		return state.Conflict("%v", err)
	}
	return &state.Error{Kind: state.KindCapacity, Message: ce.Error(), Details: map[string]any{
		"needed": ce.Needed, "available": ce.Available, "infra_id": ce.InfraID, "node_size": ce.Size,
	}}
}

// endpointFor picks the control-plane endpoint: the first free address of the infra's VIP
// pool, else the first control plane's address, else its hostname. It is fixed at creation
// so control planes can be added or replaced later without re-issuing certificates.
func (f *FSM) endpointFor(infra *state.Infra, firstCP string) string {
	if infra.VIPPool != "" {
		if vip := f.freeVIP(infra); vip != "" {
			return "https://" + net.JoinHostPort(vip, apiServerPort)
		}
	}
	h, _ := f.st.Host(firstCP)
	addr := h.Address()
	if addr == "" {
		addr = h.Hostname
	}
	if addr == "" {
		addr = h.ID
	}
	return "https://" + net.JoinHostPort(addr, apiServerPort)
}

func (f *FSM) freeVIP(infra *state.Infra) string {
	pool, err := netip.ParsePrefix(infra.VIPPool)
	if err != nil {
		return ""
	}
	pool = pool.Masked()
	used := map[string]bool{}
	for _, c := range f.st.Clusters() {
		if c.InfraID == infra.ID {
			used[c.Endpoint] = true
		}
	}
	addr := pool.Addr()
	if pool.Addr().Is4() && pool.Bits() < 31 {
		addr = addr.Next() // skip the network address
	}
	for ; addr.IsValid() && pool.Contains(addr); addr = addr.Next() {
		if pool.Addr().Is4() && pool.Bits() < 31 && !pool.Contains(addr.Next()) {
			break // the broadcast address
		}
		if !used["https://"+net.JoinHostPort(addr.String(), apiServerPort)] {
			return addr.String()
		}
	}
	return ""
}

func (f *FSM) reserve(clusterID, hostID, role, size string, at time.Time) *state.Node {
	h, _ := f.st.Host(hostID)
	nh := *h
	nh.State = state.HostAssigned
	nh.ClusterID = clusterID
	f.st.PutHost(&nh)
	// A cluster whose binaries are in the artifact store installs them first: the host may
	// hold another version's (an upgraded cluster released it).
	c, ok := f.st.Cluster(clusterID)
	plan := state.NodePlan(role, ok && len(c.Artifacts) > 0)
	n := &state.Node{HostID: hostID, ClusterID: clusterID, Role: role, State: state.NodeReserved, Size: size,
		Steps: state.NewSteps(plan...), CreatedAt: at, UpdatedAt: at}
	f.st.PutNode(n)
	return n
}

// release frees a node's host; called only for nodes with nothing installed.
func (f *FSM) release(n *state.Node) {
	f.st.DeleteNode(n.HostID)
	if h, ok := f.st.Host(n.HostID); ok {
		nh := *h
		nh.ClusterID = ""
		if nh.State == state.HostAssigned {
			nh.State = state.HostAvailable
		}
		f.st.PutHost(&nh)
	}
}

// busy returns the operation that blocks a change, or "" when the cluster is settled.
func busy(c *state.Cluster) string {
	if c.Status == state.StatusRunning || c.Status == state.StatusError {
		return ""
	}
	return c.Status
}

func busyError(c *state.Cluster) *state.Error {
	e := state.Conflict("cluster %s is %s; wait until that operation ends", c.ID, c.Status)
	e.Details = map[string]any{"operation": c.Status}
	return e
}

func (f *FSM) applyPatchCluster(m *raftcmdv1.PatchCluster) any {
	old, ok := f.st.Cluster(m.GetId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetId())
	}
	at := unixTime(m.GetAt())
	c := *old
	changed := false
	sizeChange := m.GetSize() != nil && m.GetSize().GetName() != old.NodeSize
	workersChange := m.Workers != nil && int(m.GetWorkers()) != old.Workers
	if !sizeChange && !workersChange {
		if old.Status == state.StatusError && m.GetResume() {
			// The same PATCH again on a cluster whose operation failed: try it again.
			return f.resume(old, state.StatusScaling, at)
		}
		return old // nothing to do: a repeated PATCH is harmless
	}
	if busy(old) != "" {
		return busyError(old)
	}
	workerSize, workerSizeName := sizeFrom(m.GetWorkerSize()), m.GetWorkerSize().GetName()
	for _, sz := range m.GetSizes() {
		if sz.GetName() == old.NodeSize {
			workerSize, workerSizeName = sizeFrom(sz), sz.GetName()
		}
	}
	if sizeChange {
		workerSize, workerSizeName = sizeFrom(m.GetSize()), m.GetSize().GetName()
	}
	var add int
	if workersChange {
		add = int(m.GetWorkers()) - old.Workers
	}
	// Capacity is checked before anything changes, for both changes together: new workers
	// of the (new) size, plus what the one-at-a-time roll needs (rollNeed).
	need := max(add, 0)
	if sizeChange {
		need += f.rollNeed(old, workerSizeName, workerSize)
	}
	if need > 0 {
		if free := f.st.CountFree(old.InfraID, workerSize); free < need {
			return capacityError(&state.CapacityError{Needed: need, Available: free, InfraID: old.InfraID, Size: workerSizeName})
		}
	}
	if workersChange {
		if add > 0 {
			placed, err := f.st.Place(old.InfraID, workerSizeName, workerSize, 0, add)
			if err != nil {
				return capacityError(err)
			}
			for _, hostID := range placed.Workers {
				f.reserve(c.ID, hostID, state.RoleWorker, workerSizeName, at)
			}
		} else {
			f.shrinkWorkers(c.ID, -add, at)
		}
		f.event(c.ID, "", "cluster.scaling", fmt.Sprintf("workers %d -> %d", old.Workers, m.GetWorkers()), at)
		c.Workers = int(m.GetWorkers())
		changed = true
	}
	if sizeChange {
		f.stampSizes(old)
		f.event(c.ID, "", "cluster.resizing", fmt.Sprintf("node size %s -> %s: nodes are replaced one at a time, new before old, control planes last",
			old.NodeSize, m.GetSize().GetName()), at)
		if old.VIP == nil {
			f.event(c.ID, "", "cluster.resizing", "the control plane at the endpoint "+old.Endpoint+
				" keeps its host: that address is in every kubeconfig and cannot move (an infra with a vip_pool gives clusters a movable endpoint)", at)
		}
		c.NodeSize = m.GetSize().GetName()
		changed = true
	}
	if changed {
		c.Status = state.StatusScaling
		c.StatusReason = ""
		c.UpdatedAt = at
		f.st.PutCluster(&c)
	}
	return &c
}

// shrinkWorkers picks the workers to remove: those never installed first, then the most
// recently added (ties by host ID, highest first). Never-installed ones are released now;
// the others are marked removing for the reconciler to drain and reset.
func (f *FSM) shrinkWorkers(clusterID string, n int, at time.Time) {
	var workers []*state.Node
	for _, nd := range f.st.NodesOf(clusterID) {
		if nd.Role == state.RoleWorker && nd.State != state.NodeRemoving {
			workers = append(workers, nd)
		}
	}
	slices.SortFunc(workers, func(a, b *state.Node) int {
		ar, br := a.State == state.NodeReserved, b.State == state.NodeReserved
		if ar != br {
			if ar {
				return -1
			}
			return 1
		}
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(b.HostID, a.HostID))
	})
	for _, nd := range workers[:min(n, len(workers))] {
		if nd.State == state.NodeReserved {
			f.release(nd)
			continue
		}
		f.markRemoving(nd, at, state.RemovalSteps(nd.Done(state.StepJoin)))
	}
}

func (f *FSM) applyUpgradeCluster(m *raftcmdv1.UpgradeCluster) any {
	old, ok := f.st.Cluster(m.GetId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetId())
	}
	if busy(old) != "" {
		return busyError(old)
	}
	if old.Status == state.StatusError && m.GetKubernetesVersion() == old.KubernetesVersion && f.upgradeUnfinished(old.ID) {
		// The same upgrade again after it failed (a drain blocked by a disruption budget
		// past its attempts, say): it goes on where it stopped.
		return f.resume(old, state.StatusUpgrading, unixTime(m.GetAt()))
	}
	if err := state.UpgradeAllowed(old.KubernetesVersion, m.GetKubernetesVersion()); err != nil {
		return state.Invalid("kubernetes_version", "%v", err)
	}
	arts, err := upgradeArtifacts(m.GetArtifacts())
	if err != nil {
		return err
	}
	at := unixTime(m.GetAt())
	c := *old
	c.KubernetesVersion = m.GetKubernetesVersion()
	c.Artifacts = arts
	c.Status = state.StatusUpgrading
	c.StatusReason = ""
	c.UpdatedAt = at
	f.st.PutCluster(&c)
	f.event(c.ID, "", "cluster.upgrading", fmt.Sprintf("kubernetes %s -> %s", old.KubernetesVersion, c.KubernetesVersion), at)
	f.planUpgrade(&c, at)
	return &c
}

// upgradeBinaries are what every host of an upgrade installs.
var upgradeBinaries = []string{"kubeadm", "kubectl", "kubelet"}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// upgradeArtifacts checks that an upgrade carries exactly the binaries hosts install.
func upgradeArtifacts(in []*raftcmdv1.Artifact) ([]state.Artifact, *state.Error) {
	var out []state.Artifact
	for _, a := range in {
		if !slices.Contains(upgradeBinaries, a.GetName()) || !sha256Hex.MatchString(a.GetSha256()) || a.GetSize() <= 0 {
			return nil, state.Invalid("kubernetes_version", "artifact %q (sha256 %q, %d bytes) is not a kubeadm, kubelet or kubectl binary by hash", a.GetName(), a.GetSha256(), a.GetSize())
		}
		out = append(out, state.Artifact{Name: a.GetName(), SHA256: a.GetSha256(), Size: a.GetSize()})
	}
	slices.SortFunc(out, func(a, b state.Artifact) int { return strings.Compare(a.Name, b.Name) })
	if len(out) != len(upgradeBinaries) || !slices.EqualFunc(out, upgradeBinaries, func(a state.Artifact, n string) bool { return a.Name == n }) {
		return nil, state.Invalid("kubernetes_version", "an upgrade needs the target version's %s in the artifact store", strings.Join(upgradeBinaries, ", "))
	}
	return out, nil
}

// planUpgrade appends the upgrade's steps to every node's plan. The control plane that
// leads (the initial one while it is in the cluster, else the first control plane) runs
// kubeadm upgrade apply. A step some earlier upgrade ran is replaced by a fresh one that
// keeps counting its attempts (state.Step.Since).
func (f *FSM) planUpgrade(c *state.Cluster, at time.Time) {
	nodes := f.st.NodesOf(c.ID)
	leader := ""
	for _, n := range nodes {
		if n.IsControlPlane() && n.State != state.NodeRemoving && (leader == "" || n.HostID == c.InitHost) {
			leader = n.HostID
		}
	}
	for _, old := range nodes {
		if old.State == state.NodeRemoving {
			continue
		}
		n := *old
		attempts := map[string]int{}
		n.Steps = nil
		for _, s := range old.Steps {
			if state.IsUpgradeStep(s.Name) {
				attempts[s.Name] = s.Attempt
				continue
			}
			n.Steps = append(n.Steps, s)
		}
		for _, name := range state.UpgradeSteps(n.Role, n.HostID == leader) {
			a := attempts[name]
			n.Steps = append(n.Steps, state.Step{Name: name, State: state.StepPending, Attempt: a, Since: a})
		}
		if i := n.Next(); i >= 0 {
			n.Step = n.Steps[i].Name
		}
		n.UpdatedAt = at
		f.st.PutNode(&n)
	}
}

func (f *FSM) applyDeleteCluster(m *raftcmdv1.DeleteCluster) any {
	old, ok := f.st.Cluster(m.GetId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetId())
	}
	at := unixTime(m.GetAt())
	if old.Status != state.StatusDeleting {
		c := *old
		c.Status = state.StatusDeleting
		c.StatusReason = ""
		c.UpdatedAt = at
		f.st.PutCluster(&c)
		f.event(c.ID, "", "cluster.deleting", "deletion requested", at)
	}
	// Nodes with nothing installed have nothing to reset: their hosts go back at once. The
	// others are reset by the reconciler, which removes the cluster after the last one.
	remaining := 0
	for _, n := range f.st.NodesOf(old.ID) {
		if n.State == state.NodeReserved {
			f.release(n)
			continue
		}
		remaining++
		if n.State != state.NodeRemoving {
			f.markRemoving(n, at, state.RemovalSteps(false))
		}
	}
	if remaining == 0 {
		f.st.DeleteCluster(old.ID)
		return nil
	}
	c, _ := f.st.Cluster(old.ID)
	return c
}

func (f *FSM) applySetClusterStatus(m *raftcmdv1.SetClusterStatus) any {
	old, ok := f.st.Cluster(m.GetId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetId())
	}
	at := unixTime(m.GetAt())
	c := *old
	c.Status = m.GetStatus()
	c.StatusReason = m.GetReason()
	c.UpdatedAt = at
	f.st.PutCluster(&c)
	msg := "status " + old.Status + " -> " + c.Status
	if c.StatusReason != "" {
		msg += ": " + c.StatusReason
	}
	f.event(c.ID, "", "cluster.status", msg, at)
	return &c
}

func (f *FSM) applySetNodeState(m *raftcmdv1.SetNodeState) any {
	old, ok := f.st.Node(m.GetHostId())
	if !ok {
		return state.NotFound("host %s is not a node of any cluster", m.GetHostId())
	}
	at := unixTime(m.GetAt())
	n := *old
	n.State = m.GetState()
	n.Step = m.GetStep()
	n.UpdatedAt = at
	f.st.PutNode(&n)
	f.event(n.ClusterID, n.HostID, "node.state", fmt.Sprintf("node %s is %s %s", n.HostID, n.State, n.Step), at)
	return &n
}

// applyReplaceWorker takes out a worker whose host is offline and places a new one of the
// cluster's size: the old node's Node object is deleted by a control plane and its host
// resets whenever it comes back; the cluster is scaling until the new worker is ready.
func (f *FSM) applyReplaceWorker(m *raftcmdv1.ReplaceWorker) any {
	old, ok := f.st.Cluster(m.GetClusterId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetClusterId())
	}
	if old.Status != state.StatusRunning {
		return state.Conflict("cluster %s is %s: a worker is replaced only in a running cluster", old.ID, old.Status)
	}
	n, ok := f.st.Node(m.GetHostId())
	if !ok || n.ClusterID != old.ID || n.Role != state.RoleWorker || n.State == state.NodeRemoving {
		return state.Conflict("host %s is not a worker of cluster %s", m.GetHostId(), old.ID)
	}
	if h, ok := f.st.Host(n.HostID); !ok || h.State != state.HostOffline {
		return state.Conflict("host %s is not offline", m.GetHostId())
	}
	placed, err := f.st.Place(old.InfraID, m.GetSize().GetName(), sizeFrom(m.GetSize()), 0, 1)
	if err != nil {
		return capacityError(err)
	}
	at := unixTime(m.GetAt())
	f.markRemoving(n, at, state.ReplacementSteps())
	f.reserve(old.ID, placed.Workers[0], state.RoleWorker, m.GetSize().GetName(), at)
	c := *old
	c.Status, c.StatusReason, c.UpdatedAt = state.StatusScaling, "", at
	f.st.PutCluster(&c)
	f.event(c.ID, n.HostID, "node.replaced", fmt.Sprintf("worker on host %s (%s) replaced by host %s", n.HostID, m.GetReason(), placed.Workers[0]), at)
	return &c
}

// upgradeUnfinished tells whether some node of the cluster has an upgrade step to go.
func (f *FSM) upgradeUnfinished(clusterID string) bool {
	for _, n := range f.st.NodesOf(clusterID) {
		for _, s := range n.Steps {
			if n.State != state.NodeRemoving && state.IsUpgradeStep(s.Name) && s.State != state.StepSucceeded {
				return true
			}
		}
	}
	return false
}

// resume restarts a failed operation where it stopped: every failed step gets a fresh
// retry budget (state.Step.Since) and the cluster its operation's status back. What
// succeeded is not run again.
func (f *FSM) resume(old *state.Cluster, status string, at time.Time) any {
	for _, n := range f.st.NodesOf(old.ID) {
		changed := false
		steps := slices.Clone(n.Steps)
		for i, s := range steps {
			if s.State == state.StepFailed && s.Since != s.Attempt {
				steps[i].Since = s.Attempt
				changed = true
			}
		}
		if changed {
			m := *n
			m.Steps = steps
			m.UpdatedAt = at
			f.st.PutNode(&m)
		}
	}
	if old.InitHost == "" && status == state.StatusScaling {
		status = state.StatusProvisioning
	}
	c := *old
	c.Status, c.StatusReason, c.UpdatedAt = status, "", at
	f.st.PutCluster(&c)
	f.event(c.ID, "", "cluster.resumed", fmt.Sprintf("%s again after: %s", status, old.StatusReason), at)
	return &c
}
