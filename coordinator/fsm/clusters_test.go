package fsm_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/fsm"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// fleet returns a bootstrapped FSM with n identical managed hosts host_0..host_<n-1>
// (4 CPUs, 16 GiB: they take small, medium and large nodes).
func fleet(t *testing.T, n int) *replay {
	t.Helper()
	r := newReplay(t)
	r.ok(command.TypeBootstrap, bootstrapCmd())
	for i := range n {
		r.ok(command.TypeRegisterHost, r.hostCmd(fmt.Sprintf("host_%d", i), fsm.ManagedInfraID, 4, 16))
	}
	return r
}

type nodeView struct{ Host, Role, State string }

func (r *replay) nodeViews(clusterID string) []nodeView {
	var out []nodeView
	for _, n := range r.nodes(clusterID) {
		out = append(out, nodeView{n.HostID, n.Role, n.State})
	}
	return out
}

type hostView struct{ State, Cluster string }

func (r *replay) hostViews(ids ...string) map[string]hostView {
	out := map[string]hostView{}
	for _, id := range ids {
		h := r.host(id)
		out[id] = hostView{h.State, h.ClusterID}
	}
	return out
}

func TestCreateClusterReservesHosts(t *testing.T) {
	r := fleet(t, 4)
	res := r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 2, "small"))
	c, ok := res.(*state.Cluster)
	if !ok {
		t.Fatalf("create returned %T, want *state.Cluster", res)
	}
	if c.Status != state.StatusProvisioning || c.NodeSize != "small" || c.ControlPlanes != 1 || c.Workers != 2 {
		t.Errorf("cluster = %+v", c)
	}
	wantNodes := []nodeView{
		{"host_0", state.RoleInitControlPlane, state.NodeReserved},
		{"host_1", state.RoleWorker, state.NodeReserved},
		{"host_2", state.RoleWorker, state.NodeReserved},
	}
	if diff := cmp.Diff(wantNodes, r.nodeViews("cls_a")); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	wantHosts := map[string]hostView{
		"host_0": {state.HostAssigned, "cls_a"}, "host_1": {state.HostAssigned, "cls_a"},
		"host_2": {state.HostAssigned, "cls_a"}, "host_3": {state.HostAvailable, ""},
	}
	if diff := cmp.Diff(wantHosts, r.hostViews("host_0", "host_1", "host_2", "host_3")); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	// Without a VIP pool the endpoint is the first control plane's address.
	if want := "https://" + r.host("host_0").Address() + ":6443"; c.Endpoint != want {
		t.Errorf("endpoint = %q, want %q", c.Endpoint, want)
	}
	// The reserved hosts are no longer free: a second cluster gets the last one only.
	res = r.apply(command.TypeCreateCluster, r.clusterCmd("cls_b", "b", "managed", fsm.ManagedInfraID, 1, 1, "small"))
	if e, ok := res.(*state.Error); !ok || e.Kind != state.KindCapacity || e.Details["available"] != 1 {
		t.Errorf("second create = %v, want insufficient capacity with 1 available", res)
	}
}

func TestDeleteCluster(t *testing.T) {
	t.Run("never installed: hosts released, cluster gone", func(t *testing.T) {
		r := fleet(t, 3)
		hostsBefore := r.f.Tables().Hosts
		r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 2, "small"))
		r.setNode("host_1", state.NodeReserved, "waiting")
		if res := r.ok(command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: "cls_a", At: r.at()}); res != nil {
			t.Errorf("delete returned %v, want nil (the cluster is gone)", res)
		}
		after := r.f.Tables()
		if len(after.Clusters) != 0 || len(after.Nodes) != 0 || len(after.Events) != 0 {
			t.Errorf("left clusters %v, nodes %v, events %v", after.Clusters, after.Nodes, after.Events)
		}
		// Released hosts are exactly as before the create: available, in no cluster.
		if diff := cmp.Diff(hostsBefore, after.Hosts); diff != "" {
			t.Errorf("hosts after delete (-before create +after delete):\n%s", diff)
		}
		// The name is free again, and so are the hosts.
		r.ok(command.TypeCreateCluster, r.clusterCmd("cls_b", "a", "managed", fsm.ManagedInfraID, 1, 2, "small"))
	})
	t.Run("installed: deleting, nodes removing, hosts kept until reset", func(t *testing.T) {
		r := fleet(t, 3)
		r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 2, "small"))
		r.setNode("host_0", state.NodeJoined, "")
		r.setNode("host_1", state.NodeJoining, "kubeadm-join")
		res := r.ok(command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: "cls_a", At: r.at()})
		if c, ok := res.(*state.Cluster); !ok || c.Status != state.StatusDeleting {
			t.Fatalf("delete returned %v, want the cluster, deleting", res)
		}
		wantNodes := []nodeView{
			{"host_0", state.RoleInitControlPlane, state.NodeRemoving},
			{"host_1", state.RoleWorker, state.NodeRemoving},
		}
		if diff := cmp.Diff(wantNodes, r.nodeViews("cls_a")); diff != "" {
			t.Errorf("nodes (-want +got):\n%s", diff)
		}
		wantHosts := map[string]hostView{
			"host_0": {state.HostAssigned, "cls_a"}, "host_1": {state.HostAssigned, "cls_a"}, "host_2": {state.HostAvailable, ""},
		}
		if diff := cmp.Diff(wantHosts, r.hostViews("host_0", "host_1", "host_2")); diff != "" {
			t.Errorf("hosts (-want +got):\n%s", diff)
		}
		// A repeated DELETE (a client retry) changes nothing, not even the history.
		before := r.f.Tables()
		r.ok(command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: "cls_a", At: r.at()})
		if diff := cmp.Diff(before, r.f.Tables()); diff != "" {
			t.Errorf("second delete changed the tables:\n%s", diff)
		}
		// The name stays taken while the cluster is deleting.
		res = r.apply(command.TypeCreateCluster, r.clusterCmd("cls_b", "a", "managed", fsm.ManagedInfraID, 1, 0, "small"))
		if e, ok := res.(*state.Error); !ok || e.Kind != state.KindConflict {
			t.Errorf("create with the name of a deleting cluster = %v, want a conflict", res)
		}
	})
}

func TestPatchBusy(t *testing.T) {
	for _, status := range []string{state.StatusProvisioning, state.StatusScaling, state.StatusUpgrading, state.StatusDeleting, state.StatusRunning, state.StatusError} {
		t.Run(status, func(t *testing.T) {
			r := fleet(t, 4)
			r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 1, "small"))
			r.setStatus("cls_a", status)
			// Asking for what is already there is a harmless retry, whatever the status.
			if res := r.apply(command.TypePatchCluster, r.patchCmd("cls_a", 1, "small", "small")); res != r.cluster("cls_a") {
				t.Errorf("no-op patch = %v, want the unchanged cluster", res)
			}
			res := r.apply(command.TypePatchCluster, r.patchCmd("cls_a", 2, "small", ""))
			e, refused := res.(*state.Error)
			settled := status == state.StatusRunning || status == state.StatusError
			switch {
			case settled && refused:
				t.Errorf("patch of a %s cluster refused: %v", status, e)
			case !settled && !refused:
				t.Errorf("patch of a %s cluster accepted", status)
			case !settled && (e.Kind != state.KindConflict || e.Details["operation"] != status):
				t.Errorf("refusal = %+v, want a conflict with details.operation %q", e, status)
			}
		})
	}
}

// TestPatchWorkers follows one cluster through scale up and down. Scale down removes
// never-installed workers first (their hosts are released at once), newest first, then
// marks installed ones removing, newest first and highest host ID on a tie.
func TestPatchWorkers(t *testing.T) {
	r := fleet(t, 8)
	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 2, "small"))
	for _, id := range []string{"host_0", "host_1", "host_2"} {
		r.setNode(id, state.NodeJoined, "")
	}
	r.setStatus("cls_a", state.StatusRunning)
	all := []string{"host_0", "host_1", "host_2", "host_3", "host_4", "host_5"}

	steps := []struct {
		name    string
		workers int32
		nodes   []nodeView
		hosts   map[string]hostView
	}{
		{
			name: "up by two reserves the best fits", workers: 4,
			nodes: []nodeView{
				{"host_0", state.RoleInitControlPlane, state.NodeJoined},
				{"host_1", state.RoleWorker, state.NodeJoined}, {"host_2", state.RoleWorker, state.NodeJoined},
				{"host_3", state.RoleWorker, state.NodeReserved}, {"host_4", state.RoleWorker, state.NodeReserved},
			},
			hosts: map[string]hostView{
				"host_0": {state.HostAssigned, "cls_a"}, "host_1": {state.HostAssigned, "cls_a"}, "host_2": {state.HostAssigned, "cls_a"},
				"host_3": {state.HostAssigned, "cls_a"}, "host_4": {state.HostAssigned, "cls_a"}, "host_5": {state.HostAvailable, ""},
			},
		},
		{
			name: "down by one releases the newest reserved worker", workers: 3,
			nodes: []nodeView{
				{"host_0", state.RoleInitControlPlane, state.NodeJoined},
				{"host_1", state.RoleWorker, state.NodeJoined}, {"host_2", state.RoleWorker, state.NodeJoined},
				{"host_3", state.RoleWorker, state.NodeReserved},
			},
			hosts: map[string]hostView{
				"host_0": {state.HostAssigned, "cls_a"}, "host_1": {state.HostAssigned, "cls_a"}, "host_2": {state.HostAssigned, "cls_a"},
				"host_3": {state.HostAssigned, "cls_a"}, "host_4": {state.HostAvailable, ""}, "host_5": {state.HostAvailable, ""},
			},
		},
		{
			name: "down by two releases the reserved one, then marks an installed one removing", workers: 1,
			nodes: []nodeView{
				{"host_0", state.RoleInitControlPlane, state.NodeJoined},
				{"host_1", state.RoleWorker, state.NodeJoined}, {"host_2", state.RoleWorker, state.NodeRemoving},
			},
			hosts: map[string]hostView{
				"host_0": {state.HostAssigned, "cls_a"}, "host_1": {state.HostAssigned, "cls_a"}, "host_2": {state.HostAssigned, "cls_a"},
				"host_3": {state.HostAvailable, ""}, "host_4": {state.HostAvailable, ""}, "host_5": {state.HostAvailable, ""},
			},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			res := r.ok(command.TypePatchCluster, r.patchCmd("cls_a", s.workers, "small", ""))
			c := res.(*state.Cluster)
			if c.Workers != int(s.workers) || c.Status != state.StatusScaling {
				t.Errorf("cluster workers=%d status=%s, want %d scaling", c.Workers, c.Status, s.workers)
			}
			if diff := cmp.Diff(s.nodes, r.nodeViews("cls_a")); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(s.hosts, r.hostViews(all...)); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
			r.setStatus("cls_a", state.StatusRunning)
		})
	}
}

// TestPatchNodeSize: a node-size change rolls hosts one at a time, so before anything
// changes it needs a free host of the new size for each node whose host does not fit the
// new size (plus one per added worker). The cluster has no VIP, so its control plane keeps
// its host and needs none.
func TestPatchNodeSize(t *testing.T) {
	tests := []struct {
		name      string
		bigHosts  int // free 8-CPU / 32 GiB hosts besides the cluster's
		workers   int32
		wantNeed  int // 0: accepted
		wantAvail int
	}{
		{name: "no spare host", bigHosts: 0, workers: -1, wantNeed: 2, wantAvail: 0},
		{name: "one spare host is not enough: small hosts freed do not fit", bigHosts: 1, workers: -1, wantNeed: 2, wantAvail: 1},
		{name: "one spare host per worker", bigHosts: 2, workers: -1},
		{name: "more workers too: one per worker rolled plus one per worker added", bigHosts: 2, workers: 4, wantNeed: 4, wantAvail: 2},
		{name: "more workers too, enough hosts", bigHosts: 4, workers: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := fleet(t, 4) // small hosts: the cluster takes 3, one small spare is useless for xlarge
			for i := range tc.bigHosts {
				r.ok(command.TypeRegisterHost, r.hostCmd(fmt.Sprintf("host_big%d", i), fsm.ManagedInfraID, 8, 32))
			}
			r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 2, "small"))
			r.setStatus("cls_a", state.StatusRunning)
			nodesBefore := r.nodeViews("cls_a")
			res := r.apply(command.TypePatchCluster, r.patchCmd("cls_a", tc.workers, "small", "xlarge"))
			if tc.wantNeed > 0 {
				want := map[string]any{"needed": tc.wantNeed, "available": tc.wantAvail, "infra_id": fsm.ManagedInfraID, "node_size": "xlarge"}
				if e, ok := res.(*state.Error); !ok || e.Kind != state.KindCapacity || cmp.Diff(want, e.Details) != "" {
					t.Fatalf("patch = %+v, want insufficient capacity %v", res, want)
				}
				return
			}
			c, ok := res.(*state.Cluster)
			if !ok {
				t.Fatalf("patch = %v", res)
			}
			if c.NodeSize != "xlarge" || c.Status != state.StatusScaling {
				t.Errorf("cluster size=%s status=%s, want xlarge scaling", c.NodeSize, c.Status)
			}
			nodes := r.nodeViews("cls_a")
			if tc.workers < 0 {
				// The roll itself is the reconciler's job: the patch reserves nothing.
				if diff := cmp.Diff(nodesBefore, nodes); diff != "" {
					t.Errorf("a size change alone changed the nodes:\n%s", diff)
				}
				return
			}
			// Added workers are placed at the new size.
			var added []string
			for _, n := range nodes {
				if !slices.Contains(nodesBefore, n) {
					added = append(added, n.Host)
				}
			}
			if diff := cmp.Diff([]string{"host_big0", "host_big1"}, added); diff != "" {
				t.Errorf("added workers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVIPEndpoint: the control-plane endpoint is the first free address of the infra's VIP
// pool, skipping the network and broadcast addresses and addresses other live clusters of
// the infra hold; without one, the first control plane's address.
func TestVIPEndpoint(t *testing.T) {
	tests := []struct {
		name string
		pool string
		// ops is a sequence of "create <id>" / "delete <id>"; want lists the endpoints'
		// hosts of the created clusters in order ("cp" for the first control plane's address).
		ops  []string
		want []string
	}{
		{name: "skips network and broadcast", pool: "10.0.0.0/30", ops: []string{"create a", "create b", "create c"}, want: []string{"10.0.0.1", "10.0.0.2", "cp"}},
		{name: "pool given with host bits", pool: "10.0.0.9/29", ops: []string{"create a", "create b"}, want: []string{"10.0.0.9", "10.0.0.10"}},
		{name: "a /31 has no network or broadcast address", pool: "10.1.1.0/31", ops: []string{"create a", "create b", "create c"}, want: []string{"10.1.1.0", "10.1.1.1", "cp"}},
		{name: "a /32 is one address", pool: "192.168.7.5/32", ops: []string{"create a", "create b"}, want: []string{"192.168.7.5", "cp"}},
		{name: "a freed address is reused", pool: "10.0.0.0/29", ops: []string{"create a", "create b", "delete a", "create c", "create d"}, want: []string{"10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3"}},
		{name: "no pool", pool: "", ops: []string{"create a"}, want: []string{"cp"}},
		{name: "unparsable pool", pool: "10.0.0.0/33", ops: []string{"create a"}, want: []string{"cp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplay(t)
			r.ok(command.TypeBootstrap, bootstrapCmd())
			r.ok(command.TypeCreateInfra, infraCmd("infra_x", "x", "onpremise", tc.pool))
			// Another infra with the same pool: its clusters do not take this one's addresses.
			r.ok(command.TypeCreateInfra, infraCmd("infra_y", "y", "onpremise", tc.pool))
			r.ok(command.TypeRegisterHost, r.hostCmd("host_y", "infra_y", 4, 16))
			r.ok(command.TypeCreateCluster, r.clusterCmd("cls_y", "y", "onpremise", "infra_y", 1, 0, "small"))
			for i := range 8 {
				r.ok(command.TypeRegisterHost, r.hostCmd(fmt.Sprintf("host_%d", i), "infra_x", 4, 16))
			}
			var got []string
			for _, op := range tc.ops {
				var verb, id string
				fmt.Sscan(op, &verb, &id)
				if verb == "delete" {
					r.ok(command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: "cls_" + id, At: r.at()})
					continue
				}
				c := r.ok(command.TypeCreateCluster, r.clusterCmd("cls_"+id, id, "onpremise", "infra_x", 1, 0, "small")).(*state.Cluster)
				want := "cp"
				if cp := r.host(r.nodes(c.ID)[0].HostID).Address(); c.Endpoint != "https://"+cp+":6443" {
					want = c.Endpoint
				}
				got = append(got, want)
			}
			var want []string
			for _, w := range tc.want {
				if w != "cp" {
					w = "https://" + w + ":6443"
				}
				want = append(want, w)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpgradeCluster checks the FSM applies the version rule (state.UpgradeAllowed, table-
// tested in package state) and records the upgrade.
func TestUpgradeCluster(t *testing.T) {
	tests := []struct {
		to        string
		wantError bool
	}{
		{"v1.37.3", false},
		{"v1.38.0", false},
		{"v1.39.0", true},
		{"v1.37.2", true},
		{"v1.36.9", true},
		{"latest", true},
	}
	for _, tc := range tests {
		t.Run(tc.to, func(t *testing.T) {
			r := fleet(t, 1)
			r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 0, "small"))
			r.setStatus("cls_a", state.StatusRunning)
			res := r.apply(command.TypeUpgradeCluster, &raftcmdv1.UpgradeCluster{Id: "cls_a", KubernetesVersion: tc.to, Artifacts: testArtifacts(), At: r.at()})
			if tc.wantError {
				if e, ok := res.(*state.Error); !ok || e.Kind != state.KindInvalid || e.Field != "kubernetes_version" {
					t.Errorf("upgrade = %+v, want invalid kubernetes_version", res)
				}
				return
			}
			c, ok := res.(*state.Cluster)
			if !ok || c.Status != state.StatusUpgrading || c.KubernetesVersion != tc.to {
				t.Errorf("upgrade = %+v, want upgrading to %s", res, tc.to)
			}
		})
	}
}

// testArtifacts are an upgrade's binaries as the artifact store names them.
func testArtifacts() []*raftcmdv1.Artifact {
	var out []*raftcmdv1.Artifact
	for i, name := range []string{"kubelet", "kubeadm", "kubectl"} {
		out = append(out, &raftcmdv1.Artifact{Name: name, Sha256: strings.Repeat(string(rune('a'+i)), 64), Size: int64(1000 + i)})
	}
	return out
}
