package service

import (
	"context"
	"errors"
	"time"

	"github.com/deployme/deployme/api/rest"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/pki"
	"github.com/deployme/deployme/coordinator/scheduler"
	"github.com/deployme/deployme/coordinator/state"
	"github.com/deployme/deployme/internal/logkey"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func notFound(kind, id string) error { return v1.Errorf(v1.CodeNotFound, "%s %s not found", kind, id) }

func (s *Service) defaultVersion() string {
	for _, k := range s.cfg.KubernetesVersions {
		if k.Default {
			return k.Version
		}
	}
	return ""
}

// sizeTable is the operator's whole size table, for commands that pick a size from state.
func (s *Service) sizeTable() []*raftcmdv1.Size {
	out := make([]*raftcmdv1.Size, len(s.cfg.NodeSizes))
	for i, n := range s.cfg.NodeSizes {
		out[i] = s.sizeMsg(n.Name)
	}
	return out
}

// exists runs a local existence check, so an unknown ID is answered without a log entry.
// With an Idempotency-Key the check is left to the state machine: a retry of a delete that
// succeeded must get the recorded first answer, not a 404.
func (s *Service) exists(ctx context.Context, fn func(*state.State) bool) bool {
	if rest.OptionsFrom(ctx).IdempotencyKey != "" {
		return true
	}
	ok := false
	s.store.Read(func(st *state.State) { ok = fn(st) })
	return ok
}

func (s *Service) sizeMsg(name string) *raftcmdv1.Size {
	sz := s.sizes[name]
	return &raftcmdv1.Size{Name: name, Cpus: int32(sz.CPUs), MemoryBytes: sz.MemoryBytes}
}

// ListClusters pages through clusters in creation order.
func (s *Service) ListClusters(ctx context.Context, q rest.ClusterQuery) (*v1.ClusterList, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	out := &v1.ClusterList{Items: []v1.Cluster{}, Page: q.Page, PerPage: q.PerPage}
	skip := (q.Page - 1) * q.PerPage
	s.store.Read(func(st *state.State) {
		if q.OnlyID != "" {
			if c, ok := st.Cluster(q.OnlyID); ok && (q.Status == "" || c.Status == q.Status) {
				out.Total = 1
				if skip == 0 {
					out.Items = append(out.Items, clusterOut(st, c))
				}
			}
			return
		}
		if q.Status == "" {
			out.Total = st.ClusterCount()
		}
		st.ClustersWhere(func(c *state.Cluster) bool {
			if q.Status != "" && c.Status != q.Status {
				return true
			}
			if q.Status != "" {
				out.Total++
			}
			if skip > 0 {
				skip--
				return true
			}
			if len(out.Items) < q.PerPage {
				out.Items = append(out.Items, clusterOut(st, c))
			}
			// Without a filter the total is known, so stop once the page is full.
			return q.Status != "" || len(out.Items) < q.PerPage
		})
	})
	return out, nil
}

// CreateCluster places and records a new cluster in one command.
func (s *Service) CreateCluster(ctx context.Context, req *v1.CreateClusterRequest) (*v1.Cluster, error) {
	phase := v1.PhaseManaged
	if req.Phase != nil {
		phase = *req.Phase
	}
	infraID := v1.ManagedInfraID
	if req.InfraID != nil {
		infraID = *req.InfraID
	}
	version := s.defaultVersion()
	if req.KubernetesVersion != nil {
		version = *req.KubernetesVersion
	}
	id, err := s.newID("cls_")
	if err != nil {
		return nil, err
	}
	cmd := &raftcmdv1.CreateCluster{
		Cluster: &raftcmdv1.Cluster{
			Id: id, Name: *req.Name, Phase: phase, ControlPlanes: int32(*req.ControlPlanes),
			Workers: int32(*req.Workers), KubernetesVersion: version, InfraId: infraID,
		},
		Size: s.sizeMsg(*req.NodeSize),
		At:   unixNano(s.now()),
	}
	// When the artifact store has the version, every node installs it first: a host
	// released by a cluster that was upgraded holds another version's binaries.
	if s.cfg.KubeArtifacts != nil {
		if arts, err := s.cfg.KubeArtifacts(version); err == nil {
			cmd.Artifacts = artifactMsgs(arts)
		}
	}
	a, err := s.apply(ctx, command.TypeCreateCluster, cmd, id)
	if err != nil {
		return nil, err
	}
	return s.clusterAnswer(a)
}

// clusterAnswer builds the answer to a cluster write from the stored object when the leader
// sent it, else from local state (already applied).
func (s *Service) clusterAnswer(a applied) (*v1.Cluster, error) {
	if c, ok := a.Value.(*state.Cluster); ok && c.ID == a.ID {
		var out v1.Cluster
		s.store.Read(func(st *state.State) { out = clusterOut(st, c) })
		return &out, nil
	}
	return written(s.localCluster(a.ID))
}

// written passes on the answer of a read that follows an applied write. The write is
// applied locally by then; a miss means something deleted the object in between.
func written[T any](v T, err error) (T, error) {
	var e *v1.Error
	if errors.As(err, &e) && e.Code == v1.CodeNotFound {
		return v, v1.Errorf(v1.CodeConflict, "the object was changed by another request right after this one; read it again")
	}
	return v, err
}

// GetCluster returns one cluster.
func (s *Service) GetCluster(ctx context.Context, id string) (*v1.Cluster, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	return s.localCluster(id)
}

func (s *Service) localCluster(id string) (*v1.Cluster, error) {
	var out *v1.Cluster
	s.store.Read(func(st *state.State) {
		if c, ok := st.Cluster(id); ok {
			o := clusterOut(st, c)
			out = &o
		}
	})
	if out == nil {
		return nil, notFound("cluster", id)
	}
	return out, nil
}

// PatchCluster changes workers and/or node size.
func (s *Service) PatchCluster(ctx context.Context, id string, req *v1.PatchClusterRequest) (*v1.Cluster, error) {
	var cur *state.Cluster
	s.store.Read(func(st *state.State) { cur, _ = st.Cluster(id) })
	if cur == nil {
		return nil, notFound("cluster", id)
	}
	// Resume: the same PATCH again on a cluster in error tries its operation again.
	cmd := &raftcmdv1.PatchCluster{Id: id, WorkerSize: s.sizeMsg(cur.NodeSize), Sizes: s.sizeTable(), Resume: true, At: unixNano(s.now())}
	if req.Workers != nil {
		w := int32(*req.Workers)
		cmd.Workers = &w
	}
	if req.NodeSize != nil {
		cmd.Size = s.sizeMsg(*req.NodeSize)
	}
	a, err := s.apply(ctx, command.TypePatchCluster, cmd, id)
	if err != nil {
		return nil, err
	}
	return s.clusterAnswer(a)
}

// UpgradeCluster starts an upgrade to an offered version.
// Hosts install the target version's binaries from the artifact store, by hash: the hashes
// go into the Raft command, so every replica hands out the same ones.
func (s *Service) UpgradeCluster(ctx context.Context, id, version string) (*v1.Cluster, error) {
	// The version rule first (the state machine checks it again): a skip of two minors is
	// refused as such, whatever the store holds.
	// A missing or busy cluster is refused by the state machine as such (404, 409).
	var rule error
	settled := false
	s.store.Read(func(st *state.State) {
		if c, ok := st.Cluster(id); ok && (c.Status == state.StatusRunning || c.Status == state.StatusError) {
			settled = true
			rule = state.UpgradeAllowed(c.KubernetesVersion, version)
			if c.Status == state.StatusError && version == c.KubernetesVersion {
				rule = nil // perhaps a failed upgrade asked again: the state machine decides
			}
		}
	})
	cmd := &raftcmdv1.UpgradeCluster{Id: id, KubernetesVersion: version, At: unixNano(s.now())}
	switch {
	case !settled:
	case rule != nil:
		return nil, v1.InvalidField("kubernetes_version", "%v", rule)
	case s.cfg.KubeArtifacts == nil:
		return nil, v1.InvalidField("kubernetes_version", "this coordinator has no artifact store for Kubernetes binaries (coordinator --kube-artifacts)")
	default:
		arts, err := s.cfg.KubeArtifacts(version)
		if err != nil {
			return nil, v1.InvalidField("kubernetes_version", "the artifact store cannot provide %s: %v", version, err)
		}
		cmd.Artifacts = artifactMsgs(arts)
	}
	a, err := s.apply(ctx, command.TypeUpgradeCluster, cmd, id)
	if err != nil {
		return nil, err
	}
	return s.clusterAnswer(a)
}

// DeleteCluster starts deleting a cluster; deleting one already being deleted is a no-op.
func (s *Service) DeleteCluster(ctx context.Context, id string) error {
	if !s.exists(ctx, func(st *state.State) bool { _, ok := st.Cluster(id); return ok }) {
		return notFound("cluster", id)
	}
	_, err := s.apply(ctx, command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: id, At: unixNano(s.now())}, "")
	return err
}

// Kubeconfig issues an admin kubeconfig once the control plane is up: a fresh client
// certificate (group kubeadm:cluster-admins) signed by the cluster CA, for the endpoint.
func (s *Service) Kubeconfig(ctx context.Context, id string, ttl time.Duration) ([]byte, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	var c *state.Cluster
	s.store.Read(func(st *state.State) { c, _ = st.Cluster(id) })
	if c == nil {
		return nil, notFound("cluster", id)
	}
	// The API server answers once kubeadm init has succeeded on the first control plane;
	// until then the answer is 409 whatever the status.
	if c.InitHost == "" || c.PKI == nil || c.Status == state.StatusDeleting {
		return nil, v1.Errorf(v1.CodeConflict, "the control plane of cluster %s is not up yet (status %s)", id, c.Status).With("status", c.Status)
	}
	p, err := scheduler.OpenPKI(c, s.cfg.Keyring)
	if err != nil {
		s.log.Error("cannot open cluster PKI", logkey.ClusterID, id, logkey.Err, err)
		return nil, v1.Errorf(v1.CodeInternal, "this replica cannot open the cluster's keys: %v", err)
	}
	return pki.AdminKubeconfig(p, scheduler.ClusterName(c), c.Endpoint, ttl, s.now())
}

// ClusterNodes lists a cluster's nodes.
func (s *Service) ClusterNodes(ctx context.Context, id string) (*v1.NodeList, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	var out *v1.NodeList
	s.store.Read(func(st *state.State) {
		if _, ok := st.Cluster(id); !ok {
			return
		}
		out = &v1.NodeList{Items: []v1.Node{}}
		for _, n := range st.NodesOf(id) {
			out.Items = append(out.Items, nodeOut(st, n))
		}
	})
	if out == nil {
		return nil, notFound("cluster", id)
	}
	return out, nil
}

// ClusterEvents returns a cluster's events after since; with wait, it blocks until there
// is one, ctx ends, or EventWait passes (then the list is empty).
func (s *Service) ClusterEvents(ctx context.Context, id string, since uint64, wait bool) (*v1.EventList, error) {
	if !wait {
		if err := s.linearize(ctx); err != nil {
			return nil, err
		}
	}
	var timeout <-chan time.Time
	for {
		changed := s.store.Changed()
		var out *v1.EventList
		s.store.Read(func(st *state.State) {
			if _, ok := st.Cluster(id); !ok {
				return
			}
			out = &v1.EventList{Items: []v1.Event{}}
			for _, e := range st.EventsOf(id, since) {
				out.Items = append(out.Items, eventOut(e))
			}
		})
		if out == nil {
			return nil, notFound("cluster", id)
		}
		if !wait || len(out.Items) > 0 {
			return out, nil
		}
		if timeout == nil {
			t := time.NewTimer(s.cfg.EventWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			return out, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// SetClusterStatus records an operation's end (the reconciler's write).
func (s *Service) SetClusterStatus(ctx context.Context, id, status, reason string) error {
	_, err := s.apply(ctx, command.TypeSetClusterStatus, &raftcmdv1.SetClusterStatus{Id: id, Status: status, Reason: reason, At: unixNano(s.now())}, id)
	return err
}

// SetNodeState records a node's progress (the reconciler's write).
func (s *Service) SetNodeState(ctx context.Context, hostID, nodeState, step string) error {
	_, err := s.apply(ctx, command.TypeSetNodeState, &raftcmdv1.SetNodeState{HostId: hostID, State: nodeState, Step: step, At: unixNano(s.now())}, hostID)
	return err
}

func artifactMsgs(arts []state.Artifact) []*raftcmdv1.Artifact {
	var out []*raftcmdv1.Artifact
	for _, a := range arts {
		out = append(out, &raftcmdv1.Artifact{Name: a.Name, Sha256: a.SHA256, Size: a.Size})
	}
	return out
}
