package replication

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/internal/poll"
)

// TestIdempotentCreateAcrossLeaderKill sends a create with an Idempotency-Key to a follower
// while the leader is stopped, then retries it on the other follower until it succeeds:
// exactly one cluster exists and every success names it.
func TestIdempotentCreateAcrossLeaderKill(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, clustertest.Options{Replicas: 3})
	ctx := context.Background()
	c.AddHosts(4, clustertest.HostSpec{})
	leader := c.Leader(30 * time.Second)
	var followers []*clustertest.Replica
	for _, r := range c.Replicas {
		if r != leader {
			followers = append(followers, r)
		}
	}
	hdr := map[string]string{"Idempotency-Key": "k1"}
	body := createClusterReq("idem", 1)

	firstCh := make(chan answer, 1)
	go func() { firstCh <- call(ctx, c, followers[0], http.MethodPost, "/v1/clusters", body, hdr) }()
	leader.Stop()
	first := <-firstCh
	t.Logf("first attempt through %s: %s", followers[0].ID, first)

	var ids []string
	if first.ok() {
		ids = append(ids, decodeCluster(first).ID)
	} else if first.err != nil || first.status != http.StatusServiceUnavailable {
		t.Fatalf("first attempt: %s, want 2xx or 503", first)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	attempts := 0
	var last answer
	err := poll.Until(pctx, 20*time.Millisecond, func() (bool, error) {
		attempts++
		last = call(pctx, c, followers[1], http.MethodPost, "/v1/clusters", body, hdr)
		switch {
		case last.ok():
			ids = append(ids, decodeCluster(last).ID)
			return true, nil
		case last.err == nil && last.status == http.StatusServiceUnavailable:
			return false, nil
		default:
			t.Fatalf("retry through %s: %s, want 2xx or 503", followers[1].ID, last)
			return false, nil
		}
	})
	if err != nil {
		t.Fatalf("retry never succeeded: %s", last)
	}
	// One more retry, on the first follower, after the dust settled.
	if a := call(ctx, c, followers[0], http.MethodPost, "/v1/clusters", body, hdr); a.ok() {
		ids = append(ids, decodeCluster(a).ID)
	} else {
		t.Errorf("late retry through %s: %s", followers[0].ID, a)
	}
	t.Logf("%d retries until success; ids %v", attempts, ids)
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Errorf("successful answers name different clusters: %v", ids)
			break
		}
	}
	tables := converge(t, followers, 30*time.Second)
	got := clustersByName(tables)["idem"]
	if len(got) != 1 || got[0].ID != ids[0] {
		t.Errorf("clusters named idem: %+v, want exactly %s", got, ids[0])
	}
}
