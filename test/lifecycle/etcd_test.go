package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/server"
)

// TestControlPlaneJoinFailureLeavesNoStaleMember (issue 6, acceptance 3): the first
// control-plane join fails after kubeadm added its etcd member (a learner that never
// started, as a join killed in its etcd phase leaves it). Before the retry, another control
// plane removes that member (etcd-cleanup); the retry adds it again and succeeds. Sampled
// throughout, the members etcd has are those recorded on the control planes (or one still
// joining); at the end they are exactly the three recorded ones, none a learner.
func TestControlPlaneJoinFailureLeavesNoStaleMember(t *testing.T) {
	f := newFleet(t, 1, 4)
	ctx := context.Background()
	if err := kubefake.FailNext(f.fakeState, "join-etcd", "", 1); err != nil {
		t.Fatal(err)
	}
	c := f.create("stale", 3, 1)
	w := watchRoll(f, c, 0, 0)
	c = f.waitStatus(c.ID, "running", 90*time.Second)
	w.finish()
	for _, v := range w.violations {
		t.Error(v)
	}
	journal, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	// The failed join's learner, removed through etcdctl before the retry added it again.
	var adds, removals []string
	for _, line := range journal {
		fs := strings.Fields(line)
		switch {
		case len(fs) >= 5 && fs[0] == "etcd-add":
			adds = append(adds, fs[2]+" "+fs[3])
		case len(fs) >= 4 && fs[0] == "etcd-remove" && fs[3] == "etcdctl":
			removals = append(removals, fs[2])
		}
	}
	if len(adds) != 3 || len(removals) != 1 || !strings.HasSuffix(adds[0], " "+removals[0]) || strings.Fields(adds[0])[0] != strings.Fields(adds[1])[0] {
		t.Errorf("etcd additions %v, removals %v: want the first join's member removed once and its node added again\njournal:\n%s",
			adds, removals, strings.Join(journal, "\n"))
	}
	members, err := kubefake.EtcdMembers(f.fakeState, strings.TrimPrefix(c.Endpoint, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var inEtcd, recorded []string
	for _, m := range members {
		inEtcd = append(inEtcd, fmt.Sprintf("%x", m.ID))
		if m.Learner || !m.Started {
			t.Errorf("member %x (%s) is a learner or never started", m.ID, m.Name)
		}
	}
	for _, n := range nodes.Items {
		if n.Role != "worker" {
			recorded = append(recorded, n.EtcdMemberID)
		}
	}
	slices.Sort(inEtcd)
	slices.Sort(recorded)
	if len(recorded) != 3 || !slices.Equal(inEtcd, recorded) {
		t.Errorf("etcd members %v, recorded %v: want the same three", inEtcd, recorded)
	}
	log := f.eventLog(c.ID)
	for _, want := range []string{"join failed (attempt 1)", "etcd-cleanup started (attempt 2)", "stale etcd member(s) " + removals[0]} {
		if !strings.Contains(log, want) {
			t.Errorf("events lack %q:\n%s", want, log)
		}
	}
}

// TestOfflineControlPlaneIsReported (issue 6, node failure): a control plane whose host
// stays offline past the limit is not replaced; the running cluster says so in its
// status_reason, which clears when the host is back. Nothing is removed.
func TestOfflineControlPlaneIsReported(t *testing.T) {
	f := newFleetWith(t, 1, 4, func(cfg *server.Config) {
		cfg.Liveness.TTL, cfg.Liveness.Grace = time.Second, time.Second
		cfg.Scheduler.Policy.ReplaceOfflineAfter = 2 * time.Second
	})
	ctx := context.Background()
	c := f.create("cpdown", 3, 1)
	f.waitStatus(c.ID, "running", 60*time.Second)
	nodes, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var lost v1.Node
	for _, n := range nodes.Items {
		if n.Role == "control-plane" {
			lost = n
		}
	}
	h := f.hostByID(lost.HostID)
	f.stop(h)
	var got *v1.Cluster
	waitFor(t, 60*time.Second, "the report", func() bool {
		got, err = f.c.Client().GetCluster(ctx, c.ID)
		return err == nil && strings.HasPrefix(got.StatusReason, "control_plane_offline: "+lost.HostID)
	})
	if got.Status != "running" {
		t.Errorf("status %s, want running", got.Status)
	}
	if strings.Contains(f.eventLog(c.ID), "node.rolling") || strings.Contains(f.eventLog(c.ID), "node.replaced") {
		t.Errorf("a control plane was replaced:\n%s", f.eventLog(c.ID))
	}
	f.start(h)
	waitFor(t, 60*time.Second, "the report to clear", func() bool {
		got, err = f.c.Client().GetCluster(ctx, c.ID)
		return err == nil && got.StatusReason == "" && got.Status == "running"
	})
	after, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != 4 {
		t.Errorf("%d nodes, want 4", len(after.Items))
	}
}

// TestOfflineControlPlaneIsReplacedWhenAllowed (issue 6, node failure, the operator's
// choice): with --replace-offline-control-planes, a control plane whose machine dies (its
// agent stops and its etcd answers nothing) is replaced: a new control plane joins (its
// etcd-check tolerates only that dead member), then the dead member is removed by its
// recorded id and its Node object deleted, without a drain; the cluster is running with 3
// control planes and 3 etcd members. When the machine comes back it is reset and released.
func TestOfflineControlPlaneIsReplacedWhenAllowed(t *testing.T) {
	f := newFleetOpts(t, fleetOptions{replicas: 1, hosts: 5, vipPool: "10.77.0.240/28", configure: func(cfg *server.Config) {
		cfg.Liveness.TTL, cfg.Liveness.Grace = time.Second, time.Second
		cfg.Scheduler.Policy.ReplaceOfflineAfter = 2 * time.Second
		cfg.Scheduler.Policy.ReplaceOfflineControlPlanes = true
	}})
	ctx := context.Background()
	c := f.create("cpgone", 3, 1)
	c = f.waitStatus(c.ID, "running", 60*time.Second)
	endpoint := strings.TrimPrefix(c.Endpoint, "https://")
	nodes, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var lost v1.Node
	for _, n := range nodes.Items {
		if n.Role == "control-plane" {
			lost = n
		}
	}
	h := f.hostByID(lost.HostID)
	f.stop(h)
	if err := kubefake.SetMachineDown(f.fakeState, endpoint, lost.Hostname, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the replacement", func() bool { return strings.Contains(f.eventLog(c.ID), "node.replaced") })
	f.waitStatus(c.ID, "running", 60*time.Second)
	if !strings.Contains(f.eventLog(c.ID), "offline and being replaced") {
		t.Errorf("the new control plane's etcd-check did not tolerate the dead member:\n%s", f.eventLog(c.ID))
	}
	after, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, n := range after.Items {
		if n.Role != "worker" && n.HostID != lost.HostID {
			if n.State != "joined" || n.EtcdMemberID == "" {
				t.Errorf("control plane %s: %s, etcd member %q", n.Hostname, n.State, n.EtcdMemberID)
			}
			recorded = append(recorded, n.EtcdMemberID)
		}
	}
	members, err := kubefake.EtcdMembers(f.fakeState, endpoint)
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
		t.Errorf("etcd members %v, recorded on the control planes %v; want the same 3\n%s", inEtcd, recorded, f.eventLog(c.ID))
	}
	journal, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	removedByID := slices.ContainsFunc(journal, func(l string) bool {
		return strings.HasPrefix(l, "etcd-remove ") && strings.Contains(l, " "+lost.EtcdMemberID+" etcdctl")
	})
	if order := journalFor(journal, lost.Hostname); !removedByID || !slices.Equal(order, []string{"delete-node"}) {
		t.Errorf("the dead control plane: member %s removed by id %v, journal %v; want removed, then delete-node only", lost.EtcdMemberID, removedByID, order)
	}
	// The machine comes back: it is reset and released.
	if err := kubefake.SetMachineDown(f.fakeState, endpoint, lost.Hostname, false); err == nil {
		t.Error("the dead member is still in etcd")
	}
	f.start(h)
	waitFor(t, 60*time.Second, "the old host to be released", func() bool {
		hh, err := f.c.Client().GetHost(ctx, lost.HostID)
		return err == nil && hh.State == v1.HostAvailable && hh.ClusterID == ""
	})
	if left := leftovers(t, h.root); len(left) > 0 {
		t.Errorf("the old host still holds %v", left)
	}
}
