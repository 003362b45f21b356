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
	"github.com/deployme/deployme/coordinator/server"
)

// TestScaleDownDrainsBeforeReset (issue 6, acceptance 1): 3+5 grows to 3+9, then shrinks to
// 3+2. Each shrink is `scaling` then `running`; every removed worker is drained (cordon and
// eviction) and its Node object deleted by a control plane before its own host runs kubeadm
// reset, as the fake kubectl/kubeadm record it; removed hosts are available and hold nothing
// we wrote.
func TestScaleDownDrainsBeforeReset(t *testing.T) {
	f := newFleet(t, 1, 12)
	ctx := context.Background()
	c := f.create("shrink", 3, 5)
	f.waitStatus(c.ID, "running", 90*time.Second)
	patch := func(workers int) {
		t.Helper()
		got, err := f.c.Client().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(workers)})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != "scaling" {
			t.Errorf("status after PATCH workers=%d: %s, want scaling", workers, got.Status)
		}
		got = f.waitStatus(c.ID, "running", 90*time.Second)
		if got.Workers != workers || got.NodeCount != 3+workers {
			t.Errorf("after PATCH workers=%d: workers %d, node_count %d", workers, got.Workers, got.NodeCount)
		}
	}
	patch(9)
	before, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	patch(2)
	after, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, n := range after.Items {
		kept[n.HostID] = true
	}
	journal, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, n := range before.Items {
		if kept[n.HostID] {
			continue
		}
		removed++
		if n.Role != "worker" {
			t.Errorf("a %s was removed (%s), want workers only", n.Role, n.HostID)
		}
		h := f.hostByID(n.HostID)
		// The node name is the host's (the fake joins under it).
		order := journalFor(journal, n.Hostname)
		if want := []string{"drain", "delete-node", "reset"}; !slices.Equal(order, want) {
			t.Errorf("host %s (node %s): journal %v, want %v\nfull journal:\n%s", n.HostID, n.Hostname, order, want, strings.Join(journal, "\n"))
		}
		got, err := f.c.Client().GetHost(ctx, n.HostID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != v1.HostAvailable || got.ClusterID != "" {
			t.Errorf("removed host %s is %s (cluster %q), want available", n.HostID, got.State, got.ClusterID)
		}
		if left := leftovers(t, h.root); len(left) > 0 {
			t.Errorf("removed host %s still holds files we wrote: %v", h.name, left)
		}
	}
	if removed != 7 {
		t.Errorf("%d nodes removed, want 7", removed)
	}
	// The removal is in the cluster's events.
	log := f.eventLog(c.ID)
	if strings.Count(log, "node.drained") != 7 || strings.Count(log, "node.deleted") != 7 {
		t.Errorf("events: %d node.drained and %d node.deleted, want 7 each", strings.Count(log, "node.drained"), strings.Count(log, "node.deleted"))
	}
}

// journalFor is the sequence of removal operations the fake recorded for one node.
func journalFor(journal []string, node string) []string {
	var out []string
	for _, line := range journal {
		f := strings.Fields(line)
		if len(f) >= 2 && f[len(f)-1] == node && (f[0] == "drain" || f[0] == "delete-node" || f[0] == "reset") {
			out = append(out, f[0])
		}
	}
	return out
}

// TestOfflineWorkerIsReplaced (issue 6, acceptance 6): a worker's host goes silent past the
// limit: a new host joins in its place, the old Node object is deleted by a control plane,
// the cluster returns to running with its worker count; when the old host comes back it is
// reset and released.
func TestOfflineWorkerIsReplaced(t *testing.T) {
	f := newFleetWith(t, 1, 4, func(cfg *server.Config) {
		cfg.Liveness.TTL, cfg.Liveness.Grace = time.Second, time.Second
		cfg.Scheduler.Policy.ReplaceOfflineAfter = 2 * time.Second
	})
	ctx := context.Background()
	c := f.create("replace", 1, 2)
	f.waitStatus(c.ID, "running", 60*time.Second)
	nodes, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var lost v1.Node
	for _, n := range nodes.Items {
		if n.Role == "worker" {
			lost = n
		}
	}
	h := f.hostByID(lost.HostID)
	f.stop(h)
	waitFor(t, 60*time.Second, "the replacement", func() bool { return strings.Contains(f.eventLog(c.ID), "node.replaced") })
	got := f.waitStatus(c.ID, "running", 60*time.Second)
	if got.Workers != 2 || got.NodeCount != 3 {
		t.Errorf("after the replacement: workers %d, node_count %d; want 2 and 3", got.Workers, got.NodeCount)
	}
	after, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, n := range after.Items {
		if n.HostID != lost.HostID && n.State == "joined" {
			ready++
		}
	}
	if ready != 3 {
		t.Errorf("%d joined nodes besides the lost one, want 3\n%s", ready, f.eventLog(c.ID))
	}
	journal, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	if order := journalFor(journal, lost.Hostname); !slices.Equal(order, []string{"delete-node"}) {
		t.Errorf("while its host is away, the lost node's journal is %v, want [delete-node]", order)
	}
	// The host comes back: it is reset and released.
	f.start(h)
	waitFor(t, 60*time.Second, "the old host to be released", func() bool {
		hh, err := f.c.Client().GetHost(ctx, lost.HostID)
		return err == nil && hh.State == v1.HostAvailable && hh.ClusterID == ""
	})
	journal, _ = kubefake.Journal(f.fakeState)
	if order := journalFor(journal, lost.Hostname); !slices.Equal(order, []string{"delete-node", "reset"}) {
		t.Errorf("the lost node's journal is %v, want [delete-node reset]", order)
	}
	if left := leftovers(t, h.root); len(left) > 0 {
		t.Errorf("the old host still holds files we wrote: %v", left)
	}
}

// TestKillsAtScaleDownBoundaries (issue 6, acceptance 5 for scale-down): the leader, or the
// agent that ran the step, is killed right after each removal step (drain, delete-node,
// reset) of a scale-down 1+2 -> 1+1: the scale-down converges, the removed worker was drained
// and deleted exactly once and reset once, and its host comes back available.
func TestKillsAtScaleDownBoundaries(t *testing.T) {
	if testing.Short() {
		t.Skip("6 scale-downs; skipped with -short")
	}
	f := newFleet(t, 3, 3)
	ctx := context.Background()
	for _, kill := range []string{"leader", "agent"} {
		for _, step := range []string{"drain", "delete-node", "reset"} {
			t.Run(kill+"-after-"+step, func(t *testing.T) {
				c := f.create(fmt.Sprintf("s-%s-%s", kill, step), 1, 2)
				f.waitStatus(c.ID, "running", 60*time.Second)
				// Only what this scale-down journals counts (hosts are reused by the subtests).
				start, err := kubefake.Journal(f.fakeState)
				if err != nil {
					t.Fatal(err)
				}
				killed := make(chan struct{})
				if kill == "agent" {
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
				}
				if _, err := f.anyClient().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(1)}); err != nil {
					t.Fatal(err)
				}
				var removed v1.Node
				waitFor(t, 30*time.Second, "a worker to be removing", func() bool {
					l, err := f.anyClient().ClusterNodes(ctx, c.ID)
					if err != nil {
						return false
					}
					for _, n := range l.Items {
						if n.State == "removing" {
							removed = n
							return true
						}
					}
					return false
				})
				switch kill {
				case "leader":
					// The step's success is in the cluster's events (the node may be gone from
					// /nodes by the time a poll looks, once reset ran).
					event := map[string]string{"drain": "node.drained", "delete-node": "node.deleted", "reset": "node.released"}[step]
					waitFor(t, 60*time.Second, step+" to succeed", func() bool {
						for _, e := range f.events(c.ID) {
							if e.HostID == removed.HostID && e.Type == event {
								return true
							}
						}
						return false
					})
					l := f.c.Leader(10 * time.Second)
					l.Stop()
					defer func() {
						if err := l.StartAgain(); err != nil {
							t.Fatal(err)
						}
					}()
				case "agent":
					select {
					case <-killed:
					case <-time.After(60 * time.Second):
						t.Fatalf("no agent finished %s\n%s", step, f.eventLog(c.ID))
					}
				}
				got := f.waitStatus(c.ID, "running", 60*time.Second)
				if got.Workers != 1 || got.NodeCount != 2 {
					t.Errorf("workers %d, node_count %d; want 1 and 2", got.Workers, got.NodeCount)
				}
				waitFor(t, 60*time.Second, "the removed host to be released", func() bool {
					h, err := f.anyClient().GetHost(ctx, removed.HostID)
					return err == nil && h.State == v1.HostAvailable && h.ClusterID == ""
				})
				journal, err := kubefake.Journal(f.fakeState)
				if err != nil {
					t.Fatal(err)
				}
				// Nothing drained, deleted or reset twice, nothing skipped.
				if order := journalFor(journal[len(start):], removed.Hostname); !slices.Equal(order, []string{"drain", "delete-node", "reset"}) {
					t.Errorf("journal for %s during the scale-down: %v, want drain, delete-node, reset once each\n%s", removed.Hostname, order, f.eventLog(c.ID))
				}
				f.deleteCluster(c.ID)
				f.waitGone(c.ID, 60*time.Second)
			})
		}
	}
}

// TestDeleteDuringScaling: a DELETE while workers are still joining (a scale-up under way)
// ends the operation safely: steps in flight finish, every node is reset, the cluster goes,
// and every host is available and holds nothing we wrote.
func TestDeleteDuringScaling(t *testing.T) {
	f := newFleet(t, 1, 5)
	ctx := context.Background()
	c := f.create("cancel", 1, 1)
	f.waitStatus(c.ID, "running", 60*time.Second)
	if _, err := f.c.Client().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(4)}); err != nil {
		t.Fatal(err)
	}
	// Delete as soon as a new worker has started joining.
	waitFor(t, 30*time.Second, "a new worker to start", func() bool {
		return strings.Contains(f.eventLog(c.ID), "preflight started") && strings.Count(f.eventLog(c.ID), "preflight started") > 2
	})
	f.deleteCluster(c.ID)
	f.waitGone(c.ID, 60*time.Second)
	hosts, err := f.c.Client().ListHosts(ctx, clientListHosts(f.infraID))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts.Items {
		if h.State != v1.HostAvailable || h.ClusterID != "" {
			t.Errorf("host %s is %s (cluster %q) after the delete, want available", h.Hostname, h.State, h.ClusterID)
		}
	}
	for _, h := range f.hosts {
		if left := leftovers(t, h.root); len(left) > 0 {
			t.Errorf("host %s still holds files we wrote: %v", h.name, left)
		}
	}
}
