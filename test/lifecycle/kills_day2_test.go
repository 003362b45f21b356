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

// armKill arranges for the leader or an agent to be killed right after `step` next
// succeeds: an agent is killed as it finishes the step, its report swallowed (it must be
// answered again from what the agent stored); the leader right after the step's success is
// in the log. wait blocks until the kill happened; restart brings a killed leader back.
func armKill(t *testing.T, f *fleet, clusterID, kill, step string) (wait func(), restart func()) {
	t.Helper()
	killed := make(chan struct{})
	restart = func() {}
	switch kill {
	case "agent":
		var once sync.Once
		for _, h := range f.hosts {
			h.onStepDone(&once, step, func() {
				f.stop(h)
				for _, o := range f.hosts {
					o.clearHook()
				}
				f.start(h)
				close(killed)
			})
		}
		return func() {
			t.Helper()
			select {
			case <-killed:
			case <-time.After(60 * time.Second):
				t.Fatalf("no agent finished %s\n%s", step, f.eventLog(clusterID))
			}
		}, restart
	}
	var since uint64
	if ev := f.events(clusterID); len(ev) > 0 {
		since = ev[len(ev)-1].Seq
	}
	var mu sync.Mutex
	var stopped interface{ StartAgain() error }
	return func() {
			t.Helper()
			waitFor(t, 60*time.Second, step+" to succeed", func() bool {
				for _, e := range f.events(clusterID) {
					if e.Seq > since && e.Type == "step.succeeded" && strings.HasPrefix(e.Message, step+" succeeded") {
						return true
					}
				}
				return false
			})
			l := f.c.Leader(10 * time.Second)
			l.Stop()
			mu.Lock()
			stopped = l
			mu.Unlock()
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			if stopped != nil {
				if err := stopped.StartAgain(); err != nil {
					t.Fatal(err)
				}
			}
		}
}

// journalSince is the fake's journal lines added after `before`, as "<op> <node>" (the
// node an operation acted on; etcd removals by member id).
func journalSince(t *testing.T, f *fleet, before int) []string {
	t.Helper()
	j, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range j[before:] {
		fs := strings.Fields(line)
		switch {
		case len(fs) < 2:
		case fs[0] == "drain" || fs[0] == "delete-node" || fs[0] == "reset":
			out = append(out, fs[0]+" "+fs[len(fs)-1])
		case len(fs) >= 3 && (fs[0] == "upgrade-apply" || fs[0] == "upgrade-node" || fs[0] == "uncordon" || fs[0] == "etcd-promote"):
			out = append(out, fs[0]+" "+fs[2])
		case len(fs) >= 3 && fs[0] == "etcd-add":
			out = append(out, fs[0]+" "+fs[2])
		case len(fs) >= 3 && fs[0] == "etcd-remove":
			out = append(out, fs[0]+" "+fs[2])
		}
	}
	return out
}

func journalLen(t *testing.T, f *fleet) int {
	t.Helper()
	j, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	return len(j)
}

// twice lists the journal entries that happened more than once.
func twice(ops []string) []string {
	seen := map[string]int{}
	var out []string
	for _, o := range ops {
		if seen[o]++; seen[o] == 2 {
			out = append(out, o)
		}
	}
	return out
}

// TestKillsAtRollAndUpgradeBoundaries (issue 6, acceptance 5 for rolls and upgrades): the
// leader, or the agent that ran the step, is killed right after each step of a node-size
// roll (1+1 small -> large, through a VIP endpoint, so the control plane rolls too) and of
// an upgrade (v1.37.2 -> v1.38.0). Each operation converges; nothing is drained, deleted,
// reset, upgraded, uncordoned, added to or removed from etcd twice; every old host comes
// back available, and etcd ends with exactly the recorded members.
func TestKillsAtRollAndUpgradeBoundaries(t *testing.T) {
	if testing.Short() {
		t.Skip("20 operations with kills; skipped with -short")
	}
	// Hosts 1-2 small, 3-4 large: each case's cluster starts small and rolls to large.
	f := newFleetOpts(t, fleetOptions{replicas: 3, hosts: 4, vipPool: "10.77.0.240/28", configure: withArtifacts(t),
		size: func(i int) (int, int64) {
			if i < 2 {
				return 2, 4 << 30
			}
			return 4, 16 << 30
		}})
	ctx := context.Background()
	type tcase struct{ op, step string }
	var cases []tcase
	for _, s := range []string{"join", "etcd-check", "etcd-remove", "drain", "delete-node", "reset"} {
		cases = append(cases, tcase{"roll", s})
	}
	for _, s := range []string{"upgrade-apply", "upgrade-drain", "upgrade-node", "uncordon"} {
		cases = append(cases, tcase{"upgrade", s})
	}
	n := 0
	for _, kill := range []string{"leader", "agent"} {
		for _, tc := range cases {
			n++
			t.Run(fmt.Sprintf("%s-%s-after-%s", tc.op, kill, tc.step), func(t *testing.T) {
				c := f.create(fmt.Sprintf("k%d", n), 1, 1)
				c = f.waitStatus(c.ID, "running", 60*time.Second)
				before, err := f.anyClient().ClusterNodes(ctx, c.ID)
				if err != nil {
					t.Fatal(err)
				}
				mark := journalLen(t, f)
				wait, restart := armKill(t, f, c.ID, kill, tc.step)
				defer restart()
				switch tc.op {
				case "roll":
					_, err = f.anyClient().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{NodeSize: ptr("large")})
				case "upgrade":
					_, err = f.anyClient().UpgradeCluster(ctx, c.ID, "v1.38.0")
				}
				if err != nil {
					t.Fatal(err)
				}
				wait()
				got := f.waitStatus(c.ID, "running", 90*time.Second)
				ops := journalSince(t, f, mark)
				if d := twice(ops); len(d) > 0 {
					t.Errorf("done twice: %v\njournal: %v\nevents:\n%s", d, ops, f.eventLog(c.ID))
				}
				after, err := f.anyClient().ClusterNodes(ctx, c.ID)
				if err != nil {
					t.Fatal(err)
				}
				if len(after.Items) != 2 {
					t.Fatalf("%d nodes, want 2\n%s", len(after.Items), f.eventLog(c.ID))
				}
				switch tc.op {
				case "roll":
					if got.NodeSize != "large" {
						t.Errorf("node_size %s", got.NodeSize)
					}
					for _, n := range after.Items {
						if n.NodeSize != "large" || n.State != "joined" {
							t.Errorf("node %s: %s %s", n.Hostname, n.NodeSize, n.State)
						}
					}
					// Each old node went through its whole removal once.
					for _, n := range before.Items {
						for _, op := range []string{"drain", "delete-node", "reset"} {
							if !slices.Contains(ops, op+" "+n.Hostname) {
								t.Errorf("old node %s: no %s in %v", n.Hostname, op, ops)
							}
						}
						if n.Role != "worker" && !slices.Contains(ops, "etcd-remove "+n.EtcdMemberID) {
							t.Errorf("old control plane %s: its etcd member %s was not removed: %v", n.Hostname, n.EtcdMemberID, ops)
						}
						waitFor(t, 60*time.Second, "old host "+n.Hostname+" available", func() bool {
							h, err := f.anyClient().GetHost(ctx, n.HostID)
							return err == nil && h.State == v1.HostAvailable && h.ClusterID == ""
						})
					}
					members, err := kubefake.EtcdMembers(f.fakeState, strings.TrimPrefix(c.Endpoint, "https://"))
					if err != nil {
						t.Fatal(err)
					}
					var cp v1.Node
					for _, n := range after.Items {
						if n.Role != "worker" {
							cp = n
						}
					}
					if len(members) != 1 || fmt.Sprintf("%x", members[0].ID) != cp.EtcdMemberID || !members[0].Started || members[0].Learner {
						t.Errorf("etcd members %+v; want only %s's recorded member %s", members, cp.Hostname, cp.EtcdMemberID)
					}
				case "upgrade":
					if got.KubernetesVersion != "v1.38.0" {
						t.Errorf("version %s", got.KubernetesVersion)
					}
					for _, n := range after.Items {
						want := []string{"upgrade-node " + n.Hostname}
						if n.Role != "worker" {
							want = []string{"upgrade-apply " + n.Hostname}
						} else {
							want = append(want, "drain "+n.Hostname, "uncordon "+n.Hostname)
						}
						for _, w := range want {
							if !slices.Contains(ops, w) {
								t.Errorf("no %q in %v", w, ops)
							}
						}
					}
				}
				f.deleteCluster(c.ID)
				f.waitGone(c.ID, 60*time.Second)
				waitFor(t, 60*time.Second, "every host available", func() bool {
					l, err := f.anyClient().ListHosts(ctx, clientListHosts(f.infraID))
					if err != nil {
						return false
					}
					for _, h := range l.Items {
						if h.State != v1.HostAvailable {
							return false
						}
					}
					return len(l.Items) == 4
				})
			})
		}
	}
}

// TestDeleteDuringRollAndUpgrade: a DELETE while a node-size roll or an upgrade is under
// way cancels it safely: steps in flight finish, every node (the new one of the roll too)
// is reset, the cluster goes, and every host is available and holds nothing we wrote.
func TestDeleteDuringRollAndUpgrade(t *testing.T) {
	f := newFleetOpts(t, fleetOptions{replicas: 1, hosts: 4, vipPool: "10.77.0.240/28", configure: withArtifacts(t),
		size: func(i int) (int, int64) {
			if i < 2 {
				return 2, 4 << 30
			}
			return 4, 16 << 30
		}})
	ctx := context.Background()
	for _, op := range []string{"roll", "upgrade"} {
		t.Run(op, func(t *testing.T) {
			c := f.create("del-"+op, 1, 1)
			f.waitStatus(c.ID, "running", 60*time.Second)
			since := f.events(c.ID)
			var err error
			var mark string
			switch op {
			case "roll":
				_, err = f.anyClient().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{NodeSize: ptr("large")})
				mark = "preflight started"
			case "upgrade":
				_, err = f.anyClient().UpgradeCluster(ctx, c.ID, "v1.38.0")
				mark = "upgrade-apply started"
			}
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the operation to start", func() bool {
				for _, e := range f.events(c.ID)[len(since):] {
					if strings.HasPrefix(e.Message, mark) {
						return true
					}
				}
				return false
			})
			f.deleteCluster(c.ID)
			f.waitGone(c.ID, 60*time.Second)
			l, err := f.anyClient().ListHosts(ctx, clientListHosts(f.infraID))
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range l.Items {
				if h.State != v1.HostAvailable || h.ClusterID != "" {
					t.Errorf("host %s is %s (cluster %q) after the delete, want available", h.Hostname, h.State, h.ClusterID)
				}
			}
			for _, h := range f.hosts {
				if left := leftovers(t, h.root); len(left) > 0 {
					t.Errorf("host %s still holds files we wrote: %v", h.name, left)
				}
			}
		})
	}
}
