package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/state"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// fixture builds a cluster of 1 init control plane, `cps` more control planes and `workers`
// workers, every host online, with PKI.
func fixture(cps, workers int) View {
	c := &state.Cluster{ID: "cls_a", Name: "a", Status: state.StatusProvisioning, PKI: &state.ClusterPKI{KeyringID: "k"}}
	v := View{Cluster: c, Hosts: map[string]*state.Host{}, Now: t0}
	add := func(id, role string, i int) {
		v.Hosts[id] = &state.Host{ID: id, State: state.HostAssigned, ClusterID: c.ID}
		v.Nodes = append(v.Nodes, &state.Node{HostID: id, ClusterID: c.ID, Role: role, State: state.NodeReserved,
			Steps: state.NewSteps(state.PlanFor(role)...), CreatedAt: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	add("h0", state.RoleInitControlPlane, 0)
	for i := range cps {
		add(fmt.Sprintf("h%d", i+1), state.RoleControlPlane, i+1)
	}
	for i := range workers {
		add(fmt.Sprintf("w%d", i+1), state.RoleWorker, 100+i)
	}
	return v
}

func node(v View, id string) *state.Node {
	for _, n := range v.Nodes {
		if n.HostID == id {
			return n
		}
	}
	panic(id)
}

// finish marks the named steps of a node succeeded (attempt 1).
func finish(v View, id string, names ...string) {
	n := node(v, id)
	for _, name := range names {
		i := n.StepIndex(name)
		n.Steps[i] = state.Step{Name: name, State: state.StepSucceeded, Attempt: 1, Executor: id, EndedAt: t0}
		if name == state.StepInit {
			v.Cluster.InitHost = id
		}
		if name == state.StepCredentials {
			n.Cred = &state.JoinCred{ExpiresAt: t0.Add(15 * time.Minute)}
		}
	}
}

func setStep(v View, id string, s state.Step) {
	n := node(v, id)
	n.Steps[n.StepIndex(s.Name)] = s
}

func summary(actions []Action) []string {
	var out []string
	for _, a := range actions {
		out = append(out, a.String())
	}
	return out
}

// offlineReason is how a running cluster reports h1, its control plane offline for an hour.
const offlineReason = "control_plane_offline: h1 (offline for 1h0m0s); not replaced automatically (coordinator --replace-offline-control-planes, or bring the host back)"

// rolled is a running cluster (VIP endpoint) of small nodes whose node size became large.
func rolled(cps, workers int) View {
	v := fixture(cps, workers)
	v.Cluster.Status, v.Cluster.NodeSize = state.StatusScaling, "large"
	v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24, Holder: "h0", Epoch: 1, Held: true}
	for _, n := range v.Nodes {
		n.Size, n.State = "small", state.NodeJoined
		finish(v, n.HostID, state.PlanFor(n.Role)...)
	}
	return v
}

// upgrading is a cluster whose every node is installed, with an upgrade's steps added.
func upgrading(cps, workers int) View {
	v := fixture(cps, workers)
	v.Cluster.Status = state.StatusUpgrading
	for _, n := range v.Nodes {
		n.State = state.NodeJoined
		finish(v, n.HostID, state.PlanFor(n.Role)...)
		n.Steps = append(n.Steps, state.NewSteps(state.UpgradeSteps(n.Role, n.Role == state.RoleInitControlPlane)...)...)
	}
	return v
}

func TestPlan(t *testing.T) {
	p := DefaultPolicy()
	cases := []struct {
		name    string
		policy  func(*Policy)
		view    func() View
		want    []string
		requeue time.Duration
	}{
		{name: "no PKI yet: make it first", view: func() View {
			v := fixture(0, 1)
			v.Cluster.PKI = nil
			return v
		}, want: []string{"pki cls_a"}},
		{name: "fresh cluster: every node starts preflight at once", view: func() View { return fixture(2, 2) },
			want: []string{
				"dispatch preflight#1 host=h0 executor=h0", "dispatch preflight#1 host=h1 executor=h1", "dispatch preflight#1 host=h2 executor=h2",
				"dispatch preflight#1 host=w1 executor=w1", "dispatch preflight#1 host=w2 executor=w2",
			}},
		{name: "nobody joins before init", view: func() View {
			v := fixture(1, 1)
			finish(v, "h0", "preflight", "prepare", "pki")
			finish(v, "h1", "preflight", "prepare", "pki")
			finish(v, "w1", "preflight", "prepare")
			return v
		}, want: []string{"dispatch init#1 host=h0 executor=h0"}},
		{name: "after init: every worker gets a token minted on the init host; control planes wait for its etcd-check", view: func() View {
			v := fixture(2, 2)
			finish(v, "h0", "preflight", "prepare", "pki", "init")
			finish(v, "h1", "preflight", "prepare", "pki")
			finish(v, "h2", "preflight", "prepare", "pki")
			finish(v, "w1", "preflight", "prepare")
			finish(v, "w2", "preflight", "prepare")
			return v
		}, want: []string{
			"dispatch cni#1 host=h0 executor=h0",
			"dispatch credentials#1 host=w1 executor=h0", "dispatch credentials#1 host=w2 executor=h0",
		}},
		{name: "control planes join one at a time", view: func() View {
			v := fixture(2, 0)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "pki", "etcd-cleanup", "credentials")
			finish(v, "h2", "preflight", "prepare", "pki")
			return v
		}, want: []string{"dispatch join#1 host=h1 executor=h1"}},
		{name: "the next control plane goes once the previous joined", view: func() View {
			v := fixture(2, 0)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "pki", "etcd-cleanup", "credentials", "join")
			finish(v, "h2", "preflight", "prepare", "pki")
			return v
		}, want: []string{"dispatch ready#1 host=h1 executor=h1"}},
		{name: "the next control plane goes once the previous one checked etcd", view: func() View {
			v := fixture(2, 0)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "pki", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			finish(v, "h2", "preflight", "prepare", "pki")
			return v
		}, want: []string{"dispatch etcd-cleanup#1 host=h2 executor=h0"}},
		{name: "an expired token is minted again before the join", view: func() View {
			v := fixture(0, 1)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials")
			node(v, "w1").Cred.ExpiresAt = t0.Add(time.Minute)
			return v
		}, want: []string{"dispatch credentials#2 host=w1 executor=h0"}},
		{name: "offline hosts get nothing; the minter falls back to a joined control plane", view: func() View {
			v := fixture(1, 2)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "pki", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare")
			v.Hosts["h0"].State = state.HostOffline
			v.Hosts["w2"].State = state.HostOffline
			return v
		}, want: []string{"dispatch credentials#1 host=w1 executor=h1"}},
		{name: "a failed step waits out its backoff", view: func() View {
			v := fixture(0, 1)
			finish(v, "h0", "preflight")
			setStep(v, "h0", state.Step{Name: "prepare", State: state.StepFailed, Attempt: 1, EndedAt: t0.Add(-time.Second)})
			finish(v, "w1", "preflight", "prepare")
			return v
		}, want: nil, requeue: time.Second},
		{name: "then retries with the next attempt", view: func() View {
			v := fixture(0, 1)
			finish(v, "h0", "preflight")
			setStep(v, "h0", state.Step{Name: "prepare", State: state.StepFailed, Attempt: 2, EndedAt: t0.Add(-time.Minute)})
			finish(v, "w1", "preflight", "prepare")
			return v
		}, want: []string{"dispatch prepare#3 host=h0 executor=h0"}},
		{name: "the last attempt failed: the cluster is in error, with why", view: func() View {
			v := fixture(0, 1)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni")
			finish(v, "w1", "preflight", "prepare", "credentials")
			setStep(v, "w1", state.Step{Name: "join", State: state.StepFailed, Attempt: 3, Reason: "kubeadm.exit_1", EndedAt: t0})
			return v
		}, want: []string{"status error step_failed: join on host w1 failed 3 times: kubeadm.exit_1"}},
		{name: "every step done: running", view: func() View {
			v := fixture(0, 1)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			return v
		}, want: []string{"status running "}},
		{name: "running steps are left alone", view: func() View {
			v := fixture(0, 0)
			setStep(v, "h0", state.Step{Name: "preflight", State: state.StepRunning, Attempt: 1, Executor: "h0"})
			return v
		}, want: nil},
		{name: "deleting: reset once nothing runs", view: func() View {
			v := fixture(0, 1)
			v.Cluster.Status = state.StatusDeleting
			for _, n := range v.Nodes {
				n.State = state.NodeRemoving
				n.Steps = []state.Step{{Name: "preflight", State: state.StepSucceeded, Attempt: 1}, {Name: "reset", State: state.StepPending}}
			}
			node(v, "w1").Steps[0].State = state.StepRunning
			return v
		}, want: []string{"dispatch reset#1 host=h0 executor=h0"}},
		{name: "VIP: the first control plane takes it before anything else", view: func() View {
			v := fixture(2, 1)
			v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24}
			return v
		}, want: []string{"vip host=h0 epoch=1 (no holder yet)"}},
		{name: "VIP: init waits until the holder reported it up", view: func() View {
			v := fixture(0, 0)
			v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24, Holder: "h0", Epoch: 1}
			finish(v, "h0", "preflight", "prepare", "pki")
			return v
		}, want: nil},
		{name: "VIP: init goes once it is up", view: func() View {
			v := fixture(0, 0)
			v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24, Holder: "h0", Epoch: 1, Held: true}
			finish(v, "h0", "preflight", "prepare", "pki")
			return v
		}, want: []string{"dispatch init#1 host=h0 executor=h0"}},
		{name: "VIP: a running cluster's holder gave it up: the next ready, joined control plane", view: func() View {
			v := fixture(2, 1)
			v.Cluster.Status = state.StatusRunning
			v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24, Epoch: 3}
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			finish(v, "h2", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			node(v, "h2").APIReady = true // h0 is not ready (it gave the VIP up), h1 neither
			return v
		}, want: []string{"vip host=h2 epoch=4 (the previous holder gave it up)"}},
		{name: "VIP: an offline holder is replaced", view: func() View {
			v := fixture(1, 0)
			v.Cluster.Status = state.StatusRunning
			v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24, Holder: "h0", Epoch: 1, Held: true}
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			node(v, "h1").APIReady = true
			v.Hosts["h0"].State = state.HostOffline
			return v
		}, want: []string{"vip host=h1 epoch=2 (holder h0 is offline)"}},
		{name: "VIP: nobody ready, nobody gets it", view: func() View {
			v := fixture(1, 0)
			v.Cluster.Status = state.StatusRunning
			v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24, Epoch: 1}
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			return v
		}, want: nil},
		{name: "VIP: a healthy holder stays", view: func() View {
			v := fixture(1, 0)
			v.Cluster.Status = state.StatusRunning
			v.Cluster.VIP = &state.ClusterVIP{Address: "10.0.0.100", Bits: 24, Holder: "h0", Epoch: 1, Held: true}
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			node(v, "h1").APIReady = true
			return v
		}, want: nil},
		{name: "scale-down: a control plane drains the leaving worker first", view: func() View {
			v := fixture(0, 2)
			v.Cluster.Status = state.StatusScaling
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			finish(v, "w2", "preflight", "prepare", "credentials", "join", "ready")
			w := node(v, "w2")
			w.State = state.NodeRemoving
			w.Steps = append(w.Steps, state.NewSteps(state.RemovalSteps(true)...)...)
			v.Hosts["w2"].State = state.HostOffline // the leaving host may be gone already
			return v
		}, want: []string{"dispatch drain#1 host=w2 executor=h0"}},
		{name: "scale-down: then the Node object, then reset on the node itself", view: func() View {
			v := fixture(0, 2)
			v.Cluster.Status = state.StatusScaling
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			finish(v, "w2", "preflight", "prepare", "credentials", "join", "ready")
			w := node(v, "w2")
			w.State = state.NodeRemoving
			w.Steps = append(w.Steps, state.NewSteps(state.RemovalSteps(true)...)...)
			finish(v, "w2", "drain", "delete-node")
			return v
		}, want: []string{"dispatch reset#1 host=w2 executor=w2"}},
		{name: "scale-down: a failed drain (a disruption budget) waits out its backoff", view: func() View {
			v := fixture(0, 1)
			v.Cluster.Status = state.StatusScaling
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			w := node(v, "w1")
			w.State = state.NodeRemoving
			w.Steps = append(w.Steps, state.NewSteps(state.RemovalSteps(true)...)...)
			setStep(v, "w1", state.Step{Name: "drain", State: state.StepFailed, Attempt: 4, Executor: "h0", EndedAt: t0, Reason: "kubectl.exit_1"})
			return v
		}, want: nil, requeue: 16 * time.Second},
		{name: "a worker offline past the limit is replaced", view: func() View {
			v := fixture(0, 2)
			v.Cluster.Status = state.StatusRunning
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			finish(v, "w2", "preflight", "prepare", "credentials", "join", "ready")
			v.Hosts["w2"].State, v.Hosts["w2"].LastSeen = state.HostOffline, t0.Add(-11*time.Minute)
			return v
		}, want: []string{"replace host=w2 (offline for 11m0s)"}},
		{name: "a worker offline within the limit waits; an offline control plane is reported, not replaced", view: func() View {
			v := fixture(1, 1)
			v.Cluster.Status = state.StatusRunning
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			v.Hosts["w1"].State, v.Hosts["w1"].LastSeen = state.HostOffline, t0.Add(-4*time.Minute)
			v.Hosts["h1"].State, v.Hosts["h1"].LastSeen = state.HostOffline, t0.Add(-time.Hour)
			return v
		}, want: []string{"status running " + offlineReason}},
		{name: "once reported, it waits for the worker's limit", view: func() View {
			v := fixture(1, 1)
			v.Cluster.Status, v.Cluster.StatusReason = state.StatusRunning, offlineReason
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			v.Hosts["w1"].State, v.Hosts["w1"].LastSeen = state.HostOffline, t0.Add(-4*time.Minute)
			v.Hosts["h1"].State, v.Hosts["h1"].LastSeen = state.HostOffline, t0.Add(-time.Hour)
			return v
		}, want: nil, requeue: 6 * time.Minute},
		{name: "the control plane is back: the report is cleared", view: func() View {
			v := fixture(1, 0)
			v.Cluster.Status, v.Cluster.StatusReason = state.StatusRunning, offlineReason
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
			return v
		}, want: []string{"status running "}},
		{name: "an offline control plane is replaced when the operator allows it", policy: func(p *Policy) { p.ReplaceOfflineControlPlanes = true },
			view: func() View {
				v := fixture(1, 0)
				v.Cluster.Status = state.StatusRunning
				finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
				finish(v, "h1", "preflight", "prepare", "etcd-cleanup", "credentials", "join", "ready", "etcd-check")
				v.Hosts["h1"].State, v.Hosts["h1"].LastSeen = state.HostOffline, t0.Add(-time.Hour)
				return v
			}, want: []string{"roll host=h1 (control plane offline)"}},
		{name: "a failed control-plane join: etcd-cleanup runs again first, on another control plane", view: func() View {
			v := fixture(1, 0)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "pki", "etcd-cleanup", "credentials")
			setStep(v, "h1", state.Step{Name: "etcd-cleanup", State: state.StepSucceeded, Attempt: 1, Executor: "h0", EndedAt: t0.Add(-2 * time.Minute)})
			setStep(v, "h1", state.Step{Name: "join", State: state.StepFailed, Attempt: 1, Executor: "h1", EndedAt: t0.Add(-time.Minute)})
			return v
		}, want: []string{"dispatch etcd-cleanup#2 host=h1 executor=h0"}},
		{name: "then the join is retried", view: func() View {
			v := fixture(1, 0)
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "h1", "preflight", "prepare", "pki", "etcd-cleanup", "credentials")
			setStep(v, "h1", state.Step{Name: "join", State: state.StepFailed, Attempt: 1, Executor: "h1", EndedAt: t0.Add(-time.Minute)})
			setStep(v, "h1", state.Step{Name: "etcd-cleanup", State: state.StepSucceeded, Attempt: 2, Executor: "h0", EndedAt: t0})
			return v
		}, want: []string{"dispatch join#2 host=h1 executor=h1"}},
		{name: "node-size roll: workers first, oldest first", view: func() View {
			v := rolled(1, 2)
			return v
		}, want: []string{"roll host=w1 (node size small -> large)"}},
		{name: "node-size roll: then control planes, the initial one last", view: func() View {
			v := rolled(1, 2)
			node(v, "w1").Size, node(v, "w2").Size = "large", "large"
			return v
		}, want: []string{"roll host=h1 (node size small -> large)"}},
		{name: "node-size roll without a VIP: the control plane at the endpoint stays, others roll", view: func() View {
			v := rolled(1, 0)
			v.Cluster.VIP, v.Cluster.Endpoint = nil, "https://10.0.0.10:6443"
			v.Hosts["h0"].NICs = []state.NIC{{Name: "eth0", Addresses: []string{"10.0.0.10/24"}}}
			return v
		}, want: []string{"roll host=h1 (node size small -> large)"}},
		{name: "node-size roll without a VIP: then it is done", view: func() View {
			v := rolled(1, 0)
			v.Cluster.VIP, v.Cluster.Endpoint = nil, "https://10.0.0.10:6443"
			v.Hosts["h0"].NICs = []state.NIC{{Name: "eth0", Addresses: []string{"10.0.0.10/24"}}}
			node(v, "h1").Size = "large"
			return v
		}, want: []string{"status running "}},
		{name: "node-size roll: nothing starts while a node is joining", view: func() View {
			v := rolled(1, 1)
			n := &state.Node{HostID: "w9", ClusterID: "cls_a", Role: state.RoleWorker, State: state.NodeJoining, Size: "large", Replaces: "w1",
				Steps: state.NewSteps(state.PlanFor(state.RoleWorker)...), CreatedAt: t0.Add(time.Hour)}
			v.Nodes = append(v.Nodes, n)
			v.Hosts["w9"] = &state.Host{ID: "w9", State: state.HostAssigned, ClusterID: "cls_a"}
			finish(v, "w9", "preflight")
			return v
		}, want: []string{"dispatch prepare#1 host=w9 executor=w9"}},
		{name: "removing a control plane: its etcd member first, from another control plane", view: func() View {
			v := rolled(1, 0)
			n := node(v, "h1")
			n.State = state.NodeRemoving
			n.Steps = append(n.Steps, state.NewSteps(state.ControlPlaneRemovalSteps(true)...)...)
			return v
		}, want: []string{"dispatch etcd-remove#1 host=h1 executor=h0"}},
		{name: "removing the initial control plane: another one runs its removal", view: func() View {
			v := rolled(1, 0)
			node(v, "h1").Size = "large"
			n := node(v, "h0")
			n.State = state.NodeRemoving
			n.Steps = append(n.Steps, state.NewSteps(state.ControlPlaneRemovalSteps(true)...)...)
			return v
		}, want: []string{"dispatch etcd-remove#1 host=h0 executor=h1"}},
		{name: "a replaced worker's host still offline does not hold the cluster in scaling", view: func() View {
			v := fixture(0, 1)
			v.Cluster.Status = state.StatusScaling
			finish(v, "h0", "preflight", "prepare", "pki", "init", "cni", "ready", "etcd-check")
			finish(v, "w1", "preflight", "prepare", "credentials", "join", "ready")
			w := node(v, "w1")
			w.State = state.NodeRemoving
			w.Steps = append(w.Steps, state.NewSteps(state.ReplacementSteps()...)...)
			finish(v, "w1", "delete-node")
			v.Hosts["w1"].State = state.HostOffline
			return v
		}, want: []string{"status running "}},
		{name: "upgrade: kubeadm upgrade apply on the initial control plane first", view: func() View {
			return upgrading(2, 2)
		}, want: []string{"dispatch upgrade-apply#1 host=h0 executor=h0"}},
		{name: "upgrade: then the other control planes, one at a time", view: func() View {
			v := upgrading(2, 2)
			finish(v, "h0", "upgrade-apply")
			return v
		}, want: []string{"dispatch upgrade-node#1 host=h1 executor=h1"}},
		{name: "upgrade: workers wait for every control plane", view: func() View {
			v := upgrading(2, 2)
			finish(v, "h0", "upgrade-apply")
			finish(v, "h1", "upgrade-node")
			setStep(v, "h2", state.Step{Name: "upgrade-node", State: state.StepRunning, Attempt: 1, Executor: "h2"})
			return v
		}, want: nil},
		{name: "upgrade: then one worker at a time, drained by a control plane", view: func() View {
			v := upgrading(2, 2)
			finish(v, "h0", "upgrade-apply")
			finish(v, "h1", "upgrade-node")
			finish(v, "h2", "upgrade-node")
			return v
		}, want: []string{"dispatch upgrade-drain#1 host=w1 executor=h0"}},
		{name: "upgrade: the next worker waits until the previous one is uncordoned", view: func() View {
			v := upgrading(2, 2)
			finish(v, "h0", "upgrade-apply")
			finish(v, "h1", "upgrade-node")
			finish(v, "h2", "upgrade-node")
			finish(v, "w1", "upgrade-drain", "upgrade-node")
			return v
		}, want: []string{"dispatch uncordon#1 host=w1 executor=h0"}},
		{name: "upgrade: a step added again keeps counting attempts, its limit counts from there", view: func() View {
			v := upgrading(0, 0)
			setStep(v, "h0", state.Step{Name: "upgrade-apply", State: state.StepFailed, Attempt: 3, Since: 1, EndedAt: t0.Add(-time.Hour)})
			return v
		}, want: []string{"dispatch upgrade-apply#4 host=h0 executor=h0"}},
		{name: "upgrade: everything upgraded: running", view: func() View {
			v := upgrading(0, 1)
			finish(v, "h0", "upgrade-apply")
			finish(v, "w1", "upgrade-drain", "upgrade-node", "uncordon")
			return v
		}, want: []string{"status running "}},
		{name: "error and running clusters get nothing", view: func() View {
			v := fixture(0, 1)
			v.Cluster.Status = state.StatusError
			return v
		}, want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := p
			if tc.policy != nil {
				tc.policy(&p)
			}
			actions, requeue := Plan(p, tc.view())
			if diff := cmp.Diff(tc.want, summary(actions)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if requeue != tc.requeue {
				t.Errorf("requeue = %v, want %v", requeue, tc.requeue)
			}
		})
	}
}
