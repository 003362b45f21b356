package replication

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/internal/poll"
)

// TestWholeClusterRestart stops all three replicas and starts them again: every
// acknowledged object is on every replica.
func TestWholeClusterRestart(t *testing.T) {
	skipShort(t)
	const n = 30
	c := clustertest.Start(t, clustertest.Options{Replicas: 3})
	ctx := context.Background()
	c.AddHosts(4, clustertest.HostSpec{})
	var infraIDs, clusterIDs []string
	for i := range n {
		r := c.Replicas[i%len(c.Replicas)]
		a := createInfra(ctx, c, r, fmt.Sprintf("infra-%d", i))
		if !a.ok() {
			t.Fatalf("create infra through %s: %s", r.ID, a)
		}
		infraIDs = append(infraIDs, decode[v1.Infra](t, a).ID)
	}
	for i := range 2 {
		a := call(ctx, c, c.Replicas[i], http.MethodPost, "/v1/clusters", createClusterReq(fmt.Sprintf("cl-%d", i), 1), nil)
		if !a.ok() {
			t.Fatalf("create cluster: %s", a)
		}
		clusterIDs = append(clusterIDs, decodeCluster(a).ID)
	}

	c.StopAll()
	// A lone replica is never ready: start them all before waiting for any.
	errs := make([]error, len(c.Replicas))
	var wg sync.WaitGroup
	for i, r := range c.Replicas {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = r.StartAgain() }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %s again: %v", c.Replicas[i].ID, err)
		}
	}
	c.Leader(30 * time.Second)
	tables := converge(t, c.Replicas, 30*time.Second)
	infras := infrasByID(tables)
	for _, id := range infraIDs {
		if infras[id] == nil {
			t.Errorf("acknowledged infra %s lost in the restart", id)
		}
	}
	clusters := map[string]bool{}
	for _, cl := range tables.Clusters {
		clusters[cl.ID] = true
	}
	for _, id := range clusterIDs {
		if !clusters[id] {
			t.Errorf("acknowledged cluster %s lost in the restart", id)
		}
	}
	// And the API serves them on every replica.
	for _, r := range c.Replicas {
		for _, id := range []string{infraIDs[0], infraIDs[n-1]} {
			if a := call(ctx, c, r, http.MethodGet, "/v1/infras/"+id, nil, nil); !a.ok() {
				t.Errorf("GET infra %s on %s: %s", id, r.ID, a)
			}
		}
	}
}

// TestBarrierBeforeServing stops the leader right after a burst of writes: the first read
// any remaining replica answers already shows every acknowledged write, the new leader
// counts an established leadership, and followers never report themselves ready.
func TestBarrierBeforeServing(t *testing.T) {
	skipShort(t)
	const (
		writers   = 8
		perWriter = 10
		stopAfter = 40
	)
	c := clustertest.Start(t, clustertest.Options{Replicas: 3})
	ctx := context.Background()
	leader := c.Leader(30 * time.Second)
	var rest []*clustertest.Replica
	before := map[string]int64{}
	for _, r := range c.Replicas {
		before[r.ID] = r.Server().LeadershipsEstablished()
		if r != leader {
			rest = append(rest, r)
			if r.Server().LeaderReady() {
				t.Errorf("follower %s reports LeaderReady", r.ID)
			}
		}
	}

	var (
		mu    sync.Mutex
		acked []string
		n     atomic.Int64
	)
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				a := createInfra(ctx, c, leader, fmt.Sprintf("burst-%d-%d", w, i))
				if !a.ok() {
					return // the leader is going away
				}
				id := decode[v1.Infra](t, a).ID
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
				if n.Add(1) >= stopAfter {
					once.Do(func() { close(enough) })
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-enough:
	case <-done:
	}
	leader.Stop()
	// Every write acknowledged so far was committed before the old leader stopped.

	// Read from every remaining replica at once, as early as each answers.
	first := make([]answer, len(rest))
	firstAt := make([]time.Duration, len(rest))
	stopped := time.Now()
	var rg sync.WaitGroup
	for i, r := range rest {
		rg.Add(1)
		go func() {
			defer rg.Done()
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_ = poll.Until(rctx, 5*time.Millisecond, func() (bool, error) {
				first[i] = call(rctx, c, r, http.MethodGet, "/v1/infras", nil, nil)
				firstAt[i] = time.Since(stopped)
				return first[i].ok(), nil
			})
		}()
	}
	newLeader := leaderAmong(t, rest, 30*time.Second)
	rg.Wait()
	<-done

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes acknowledged before the leader stopped; new leader %s", len(acked), newLeader.ID)
	for i, r := range rest {
		if !first[i].ok() {
			t.Errorf("no read answered by %s: %s", r.ID, first[i])
			continue
		}
		t.Logf("first read answered by %s %v after the stop", r.ID, firstAt[i])
		// A read issued during the election is served once the new leader is ready, not
		// refused at the end of the 5 s leader wait.
		if firstAt[i] >= 4*time.Second {
			t.Errorf("first read answered by %s only %v after the stop, want < 4s", r.ID, firstAt[i])
		}
		have := map[string]bool{}
		for _, in := range decode[v1.InfraList](t, first[i]).Items {
			have[in.ID] = true
		}
		for _, id := range acked {
			if !have[id] {
				t.Errorf("first read answered by %s lacks acknowledged infra %s", r.ID, id)
			}
		}
	}
	if got := newLeader.Server().LeadershipsEstablished(); got <= before[newLeader.ID] {
		t.Errorf("%s: LeadershipsEstablished = %d, want more than %d", newLeader.ID, got, before[newLeader.ID])
	}
	for _, r := range rest {
		if r != newLeader && r.Server().LeaderReady() {
			t.Errorf("follower %s reports LeaderReady", r.ID)
		}
	}
}
