package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	v1 "github.com/deployme/deployme/api/v1"
)

// smallThenLarge: hosts 1-6 are "small" (2 CPUs, 4 GiB), hosts 7-12 "large" (4 CPUs,
// 16 GiB): a small cluster takes the small hosts, and rolling it to large needs all the
// large ones (a small host freed by the roll cannot take a large node).
func smallThenLarge(i int) (int, int64) {
	if i < 6 {
		return 2, 4 << 30
	}
	return 4, 16 << 30
}

// rollWatch samples the cluster (as the fake Kubernetes and etcd see it, and as the
// coordinator records it) until stopped, and keeps every violation of the roll's
// invariants: never fewer than 3 control planes or 3 schedulable workers or 3 started etcd
// voters, and the etcd member ids in the coordinator's state always those of etcd.
type rollWatch struct {
	f        *fleet
	cluster  string
	endpoint string
	// minCP and minWorkers: never fewer control planes (and etcd voters), or schedulable
	// workers.
	minCP, minWorkers int

	mu         sync.Mutex
	samples    int
	violations []string
	// ids maps every etcd member id ever recorded to its node name.
	ids map[string]string

	stop chan struct{}
	done chan struct{}
}

func watchRoll(f *fleet, c *v1.Cluster, minCP, minWorkers int) *rollWatch {
	w := &rollWatch{f: f, cluster: c.ID, endpoint: strings.TrimPrefix(c.Endpoint, "https://"), minCP: minCP, minWorkers: minWorkers,
		ids: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			w.sample()
		}
	}()
	return w
}

func (w *rollWatch) finish() {
	close(w.stop)
	<-w.done
}

func (w *rollWatch) violate(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.violations) < 20 {
		w.violations = append(w.violations, fmt.Sprintf(format, args...))
	}
}

// stepState is the state of a node's named step ("" when it has none).
func stepState(n v1.Node, name string) string {
	for _, s := range n.Steps {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}

func (w *rollWatch) sample() {
	// etcd and Kubernetes first, the coordinator's record second: the record can only
	// have moved on since, which the checks below allow for.
	members, err := kubefake.EtcdMembers(w.f.fakeState, w.endpoint)
	if err != nil {
		return
	}
	knodes, err := kubefake.Nodes(w.f.fakeState, w.endpoint)
	if err != nil {
		return
	}
	nodes, err := w.f.anyClient().ClusterNodes(context.Background(), w.cluster)
	if err != nil {
		return // a replica restarting: not a sample
	}
	cps, workers, voters := 0, 0, 0
	for _, n := range knodes {
		switch {
		case n.ControlPlane:
			cps++
		case !n.Cordoned:
			workers++
		}
	}
	inEtcd := map[string]bool{}
	for _, m := range members {
		if m.Started && !m.Learner {
			voters++
		}
		inEtcd[fmt.Sprintf("%x", m.ID)] = true
	}
	if cps < w.minCP || workers < w.minWorkers || voters < w.minCP {
		w.violate("%d control planes, %d schedulable workers, %d etcd voters (want >= %d, %d, %d)", cps, workers, voters, w.minCP, w.minWorkers, w.minCP)
	}
	recorded := map[string]bool{}
	for _, n := range nodes.Items {
		if n.EtcdMemberID == "" {
			continue
		}
		recorded[n.EtcdMemberID] = true
		w.mu.Lock()
		w.ids[n.EtcdMemberID] = n.Hostname
		w.mu.Unlock()
		// A recorded member is in etcd unless its removal had started by then.
		if rm := stepState(n, "etcd-remove"); !inEtcd[n.EtcdMemberID] && (rm == "" || rm == "pending") {
			w.violate("host %s records etcd member %s, which etcd does not have", n.HostID, n.EtcdMemberID)
		}
	}
	for _, m := range members {
		id := fmt.Sprintf("%x", m.ID)
		if recorded[id] {
			continue
		}
		// A member not recorded belongs to a control plane still joining (its etcd-check
		// has not reported yet) or to one whose removal already went through.
		ok := false
		for _, n := range nodes.Items {
			if n.Hostname != m.Name && !strings.Contains(m.PeerURL, "//"+nodeAddr(w.f, n.Hostname)+":") {
				continue
			}
			if stepState(n, "etcd-check") != "succeeded" || n.State == "removing" {
				ok = true
			}
		}
		if !ok {
			w.violate("etcd member %s (%s) is recorded on no control plane", id, m.Name)
		}
	}
	w.mu.Lock()
	w.samples++
	w.mu.Unlock()
}

// nodeAddr is a host's address in the harness (10.77.0.<i+10>).
func nodeAddr(f *fleet, hostname string) string {
	for _, h := range f.hosts {
		if h.name == hostname {
			return fmt.Sprintf("10.77.0.%d", h.i+10)
		}
	}
	return "?"
}

// TestNodeSizeRoll (issue 6, acceptance 2): a 3+3 cluster of small nodes goes to large.
// Nodes are replaced one at a time, new before old, workers first, control planes last
// (the initial one last of all), each new control plane checking etcd's health before the
// old one goes. Sampled throughout: never fewer than 3 control planes, 3 schedulable
// workers or 3 etcd voters, and the etcd member ids in the coordinator's state always those
// of etcd. Every old node is removed cleanly (a control plane's etcd member first) and its
// host is available again.
func TestNodeSizeRoll(t *testing.T) {
	f := newFleetOpts(t, fleetOptions{replicas: 1, hosts: 12, size: smallThenLarge, vipPool: "10.77.0.240/28"})
	ctx := context.Background()
	c := f.create("roll", 3, 3)
	c = f.waitStatus(c.ID, "running", 90*time.Second)
	before, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	w := watchRoll(f, c, 3, 3)
	got, err := f.c.Client().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{NodeSize: ptr("large")})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "scaling" || got.NodeSize != "large" {
		t.Errorf("after PATCH: status %s, node_size %s; want scaling, large", got.Status, got.NodeSize)
	}
	// One operation at a time: another PATCH is refused, naming the roll.
	if _, err := f.c.Client().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(4)}); err == nil || !strings.Contains(err.Error(), "scaling") {
		t.Errorf("PATCH during the roll: %v, want 409 naming scaling", err)
	}
	start := time.Now()
	f.waitStatus(c.ID, "running", 180*time.Second)
	w.finish()
	t.Logf("roll of 6 nodes: %s, %d samples", time.Since(start).Round(time.Millisecond), w.samples)
	if testing.Verbose() {
		t.Logf("events:\n%s", f.eventLog(c.ID))
	}
	if w.samples == 0 {
		t.Error("no sample taken during the roll")
	}
	for _, v := range w.violations {
		t.Error(v)
	}

	after, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != 6 {
		t.Fatalf("%d nodes after the roll, want 6", len(after.Items))
	}
	members, err := kubefake.EtcdMembers(f.fakeState, strings.TrimPrefix(c.Endpoint, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	var inEtcd, recorded []string
	for _, m := range members {
		inEtcd = append(inEtcd, fmt.Sprintf("%x", m.ID))
		if m.Learner || !m.Started {
			t.Errorf("etcd member %x (%s) is a learner or not started", m.ID, m.Name)
		}
	}
	for _, n := range after.Items {
		if n.NodeSize != "large" || n.State != "joined" {
			t.Errorf("node %s: size %s, state %s; want large, joined", n.HostID, n.NodeSize, n.State)
		}
		if n.Role != "worker" {
			recorded = append(recorded, n.EtcdMemberID)
		}
	}
	slices.Sort(inEtcd)
	slices.Sort(recorded)
	if !slices.Equal(inEtcd, recorded) || len(recorded) != 3 {
		t.Errorf("etcd members %v, recorded on the control planes %v; want the same 3", inEtcd, recorded)
	}

	// The order: every worker before any control plane, the initial control plane last.
	var rolled []string
	for _, e := range f.events(c.ID) {
		if e.Type == "node.replaced" {
			rolled = append(rolled, e.HostID)
		}
	}
	role := map[string]string{}
	for _, n := range before.Items {
		role[n.HostID] = n.Role
	}
	want := []string{"worker", "worker", "worker", "control-plane", "control-plane", "control-plane-init"}
	var gotRoles []string
	for _, h := range rolled {
		gotRoles = append(gotRoles, role[h])
	}
	if !slices.Equal(gotRoles, want) {
		t.Errorf("replaced in the order %v (%v), want %v\nevents:\n%s", gotRoles, rolled, want, f.eventLog(c.ID))
	}

	// New before old: each replacement was Ready (and, for a control plane, had checked
	// etcd) before its old node's removal started. The sampling above shows it too, but
	// only as often as it happens to look.
	events := f.events(c.ID)
	seqOf := func(host, prefix string) uint64 {
		for _, e := range events {
			if e.HostID == host && strings.HasPrefix(e.Message, prefix) {
				return e.Seq
			}
		}
		return 0
	}
	for _, e := range events {
		if e.Type != "node.replaced" {
			continue
		}
		_, newHost, ok := strings.Cut(e.Message, "replaced by host ")
		newHost, _, _ = strings.Cut(newHost, ":")
		last := "ready succeeded"
		if role[e.HostID] != "worker" {
			last = "etcd-check succeeded"
		}
		first := "drain started"
		if role[e.HostID] != "worker" {
			first = "etcd-remove started"
		}
		done, removal := seqOf(newHost, last), seqOf(e.HostID, first)
		if !ok || done == 0 || removal == 0 || done > removal {
			t.Errorf("old %s: its replacement %s's %q at %d, its own %q at %d: want the new one done first", e.HostID, newHost, last, done, first, removal)
		}
	}

	// Each old node was removed cleanly, a control plane's etcd member first.
	journal, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range before.Items {
		var ops []string
		for _, line := range journal {
			fs := strings.Fields(line)
			switch {
			case len(fs) >= 3 && fs[0] == "etcd-remove" && w.ids[fs[2]] == n.Hostname:
				ops = append(ops, "etcd-remove")
			case len(fs) >= 2 && fs[len(fs)-1] == n.Hostname && (fs[0] == "drain" || fs[0] == "delete-node" || fs[0] == "reset"):
				ops = append(ops, fs[0])
			}
		}
		want := []string{"drain", "delete-node", "reset"}
		if n.Role != "worker" {
			want = []string{"etcd-remove", "drain", "delete-node", "reset"}
		}
		if !slices.Equal(ops, want) {
			t.Errorf("old %s %s: %v, want %v\njournal:\n%s", n.Role, n.Hostname, ops, want, strings.Join(journal, "\n"))
		}
		h, err := f.c.Client().GetHost(ctx, n.HostID)
		if err != nil {
			t.Fatal(err)
		}
		if h.State != v1.HostAvailable || h.ClusterID != "" {
			t.Errorf("old host %s is %s (cluster %q), want available", n.HostID, h.State, h.ClusterID)
		}
		if left := leftovers(t, f.hostByID(n.HostID).root); len(left) > 0 {
			t.Errorf("old host %s still holds %v", n.Hostname, left)
		}
	}
}

// TestNodeSizeRollWithoutVIP: a cluster whose endpoint is its first control plane's own
// address rolls everything but that control plane, which keeps its host (the address is in
// every kubeconfig); the cluster ends running, etcd members those recorded.
func TestNodeSizeRollWithoutVIP(t *testing.T) {
	f := newFleetOpts(t, fleetOptions{replicas: 1, hosts: 7, size: func(i int) (int, int64) {
		if i < 4 {
			return 2, 4 << 30
		}
		return 4, 16 << 30
	}})
	ctx := context.Background()
	c := f.create("novip", 3, 1)
	c = f.waitStatus(c.ID, "running", 60*time.Second)
	w := watchRoll(f, c, 3, 1)
	if _, err := f.c.Client().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{NodeSize: ptr("large")}); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(c.ID, "running", 120*time.Second)
	w.finish()
	for _, v := range w.violations {
		t.Error(v)
	}
	nodes, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, n := range nodes.Items {
		h := f.hostByID(n.HostID)
		atEndpoint := c.Endpoint == fmt.Sprintf("https://10.77.0.%d:6443", h.i+10)
		if want := map[bool]string{true: "small", false: "large"}[atEndpoint]; n.NodeSize != want {
			t.Errorf("node %s (endpoint %v): size %s, want %s", n.Hostname, atEndpoint, n.NodeSize, want)
		}
		if n.Role != "worker" {
			recorded = append(recorded, n.EtcdMemberID)
		}
	}
	members, err := kubefake.EtcdMembers(f.fakeState, strings.TrimPrefix(c.Endpoint, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	var inEtcd []string
	for _, m := range members {
		inEtcd = append(inEtcd, fmt.Sprintf("%x", m.ID))
	}
	slices.Sort(inEtcd)
	slices.Sort(recorded)
	if len(recorded) != 3 || !slices.Equal(inEtcd, recorded) {
		t.Errorf("etcd members %v, recorded %v", inEtcd, recorded)
	}
	if !strings.Contains(f.eventLog(c.ID), "keeps its host") {
		t.Errorf("no event says the endpoint's control plane stays:\n%s", f.eventLog(c.ID))
	}
}
