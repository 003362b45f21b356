package replication

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/internal/poll"
)

// TestFiveReplicasLoseTwo stops a follower and the leader of five replicas: the other three
// keep serving writes; the dead follower is removed through the members API; a new replica
// joins from a snapshot, becomes a voter and holds the leader's state.
func TestFiveReplicasLoseTwo(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, clustertest.Options{Replicas: 5, Configure: func(cfg *server.Config) {
		// Keep few entries after a snapshot, so a newcomer must be sent the snapshot.
		cfg.Raft.TrailingLogs = 4
	}})
	ctx := context.Background()
	leader := c.Leader(30 * time.Second)
	var follower *clustertest.Replica
	for _, r := range c.Replicas {
		if r != leader {
			follower = r
			break
		}
	}
	follower.Stop()
	for i, r := range running(c) {
		if a := createInfra(ctx, c, r, fmt.Sprintf("after-follower-%d", i)); !a.ok() {
			t.Fatalf("write through %s with one follower down: %s", r.ID, a)
		}
	}
	leader.Stop()
	newLeader := c.Leader(30 * time.Second)
	t.Logf("stopped %s (follower) and %s (leader); new leader %s", follower.ID, leader.ID, newLeader.ID)
	for i, r := range running(c) {
		if a := createInfra(ctx, c, r, fmt.Sprintf("after-leader-%d", i)); !a.ok() {
			t.Fatalf("write through %s with two replicas down: %s", r.ID, a)
		}
	}

	survivor := running(c)[0]
	if a := call(ctx, c, survivor, http.MethodDelete, "/v1/coordinator/members/"+follower.ID, nil, nil); a.err != nil || a.status != http.StatusNoContent {
		t.Fatalf("remove %s: %s, want 204", follower.ID, a)
	}
	a := call(ctx, c, survivor, http.MethodGet, "/v1/coordinator/members", nil, nil)
	if !a.ok() {
		t.Fatalf("list members: %s", a)
	}
	type member struct {
		ID    string
		Voter bool
	}
	var got []member
	for _, m := range decode[v1.MemberList](t, a).Items {
		got = append(got, member{m.ID, m.Voter})
	}
	var want []member
	for _, r := range c.Replicas {
		if r != follower {
			want = append(want, member{r.ID, true})
		}
	}
	sortMembers := cmp.Transformer("sort", func(in []member) map[string]bool {
		out := map[string]bool{}
		for _, m := range in {
			out[m.ID] = m.Voter
		}
		return out
	})
	if diff := cmp.Diff(want, got, sortMembers); diff != "" {
		t.Errorf("members after removing %s (-want +got):\n%s", follower.ID, diff)
	}

	// More entries than the trailing logs, then a snapshot: the log the newcomer would need
	// is gone.
	for i := range 10 {
		if a := createInfra(ctx, c, newLeader, "pre-snapshot-"+strconv.Itoa(i)); !a.ok() {
			t.Fatalf("write: %s", a)
		}
	}
	if err := newLeader.Server().Raft().Snapshot(); err != nil {
		t.Fatalf("snapshot on the leader: %v", err)
	}
	fresh := c.AddReplica()
	c.WaitVoters(5) // three survivors, the dead old leader and the newcomer
	if a := createInfra(ctx, c, fresh, "through-newcomer"); !a.ok() {
		t.Fatalf("write through the newcomer: %s", a)
	}
	snapIdx, _ := strconv.ParseUint(fresh.Server().Raft().Stats()["last_snapshot_index"], 10, 64)
	t.Logf("newcomer %s installed snapshot at index %d", fresh.ID, snapIdx)
	if snapIdx == 0 {
		t.Error("the newcomer was not sent a snapshot")
	}
	converge(t, running(c), 30*time.Second)

	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var members v1.MemberList
	err := poll.Until(pctx, 50*time.Millisecond, func() (bool, error) {
		a := call(pctx, c, fresh, http.MethodGet, "/v1/coordinator/members", nil, nil)
		if !a.ok() {
			return false, nil
		}
		members = decode[v1.MemberList](t, a)
		for _, m := range members.Items {
			if m.ID == fresh.ID {
				return m.Voter, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("newcomer %s not listed as a voter: %+v", fresh.ID, members)
	}
}
