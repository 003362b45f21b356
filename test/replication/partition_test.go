package replication

import (
	"context"
	"net/http"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/internal/poll"
)

// TestPartitionMinority cuts the leader off from the other two replicas: writes through it
// fail with 503 within the leader-wait bound, the majority elects a leader and serves writes,
// and after healing all three hold identical state including the majority's write.
func TestPartitionMinority(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, clustertest.Options{Replicas: 3})
	ctx := context.Background()
	old := c.Leader(30 * time.Second)
	var majority []*clustertest.Replica
	var majorityIdx []int
	for _, r := range c.Replicas {
		if r != old {
			majority = append(majority, r)
			majorityIdx = append(majorityIdx, r.Index)
		}
	}
	if a := createInfra(ctx, c, old, "before"); !a.ok() {
		t.Fatalf("write before partition: %s", a)
	}

	c.Partition([]int{old.Index}, majorityIdx)
	t.Cleanup(c.Heal)
	begin := time.Now()
	a := createInfra(ctx, c, old, "minority")
	took := time.Since(begin)
	t.Logf("write through the cut-off leader: %s after %v", a, took)
	if a.err != nil || a.status != http.StatusServiceUnavailable {
		t.Errorf("write through the cut-off leader: %s, want 503", a)
	}
	if took >= 7*time.Second {
		t.Errorf("write through the cut-off leader took %v, want < 7s", took)
	}

	// Once it has stepped down it knows no leader: the answer is "nothing applied", after
	// the leader-wait bound.
	begin = time.Now()
	a = createInfra(ctx, c, old, "minority-2")
	took = time.Since(begin)
	t.Logf("second write through the cut-off replica: %s after %v", a, took)
	if a.err != nil || a.status != http.StatusServiceUnavailable {
		t.Errorf("second write through the cut-off replica: %s, want 503", a)
	}
	if took >= 7*time.Second {
		t.Errorf("second write through the cut-off replica took %v, want < 7s", took)
	}

	newLeader := leaderAmong(t, majority, 30*time.Second)
	t.Logf("majority elected %s", newLeader.ID)
	a = createInfra(ctx, c, majority[0], "majority")
	if !a.ok() {
		t.Fatalf("write on the majority: %s", a)
	}
	written := decode[v1.Infra](t, a)

	c.Heal()
	tables := converge(t, c.Replicas, 60*time.Second)
	names := map[string]int{}
	for _, in := range tables.Infras {
		names[in.Name]++
	}
	if names["majority"] != 1 || names["before"] != 1 {
		t.Errorf("after heal: infras %v, want before and majority once each", names)
	}
	if names["minority"] != 0 || names["minority-2"] != 0 {
		t.Errorf("the write refused on the minority was applied: %v", names)
	}

	// The old leader serves the majority's write through the API too.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last answer
	err := poll.Until(pctx, 50*time.Millisecond, func() (bool, error) {
		last = call(pctx, c, old, http.MethodGet, "/v1/infras/"+written.ID, nil, nil)
		return last.ok(), nil
	})
	if err != nil {
		t.Fatalf("old leader never served the majority's write: %s", last)
	}
}

// TestStaleRead reads from a replica cut off from the leader: ?stale=1 answers from local
// state and says so; a linearizable read answers 503.
func TestStaleRead(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, clustertest.Options{Replicas: 3})
	ctx := context.Background()
	leader := c.Leader(30 * time.Second)
	a := createInfra(ctx, c, leader, "seen")
	if !a.ok() {
		t.Fatalf("create infra: %s", a)
	}
	in := decode[v1.Infra](t, a)
	var cut *clustertest.Replica
	var others []int
	for _, r := range c.Replicas {
		if r != leader && cut == nil {
			cut = r
		} else {
			others = append(others, r.Index)
		}
	}
	// The write is applied on every replica before the cut.
	converge(t, c.Replicas, 30*time.Second)

	c.Partition([]int{cut.Index}, others)
	t.Cleanup(c.Heal)
	for _, tc := range []struct {
		name   string
		path   string
		status int
		stale  bool
	}{
		{"stale list", "/v1/infras?stale=1", http.StatusOK, true},
		{"stale get", "/v1/infras/" + in.ID + "?stale=true", http.StatusOK, true},
		{"linearizable get", "/v1/infras/" + in.ID, http.StatusServiceUnavailable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			begin := time.Now()
			a := call(ctx, c, cut, http.MethodGet, tc.path, nil, nil)
			took := time.Since(begin)
			if a.err != nil || a.status != tc.status {
				t.Fatalf("GET %s on the cut-off replica: %s after %v, want %d", tc.path, a, took, tc.status)
			}
			if took >= 7*time.Second {
				t.Errorf("GET %s took %v, want < 7s", tc.path, took)
			}
			if got := a.header.Get("X-Deployme-Read") == "stale"; got != tc.stale {
				t.Errorf("X-Deployme-Read = %q, want stale: %v", a.header.Get("X-Deployme-Read"), tc.stale)
			}
			if tc.stale && !bytesContains(a.body, in.ID) {
				t.Errorf("stale read lacks %s: %s", in.ID, a.body)
			}
		})
	}
}
