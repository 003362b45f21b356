package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
)

// createResult is what one create under load answered.
type createResult struct {
	name    string
	ans     answer
	id      string
	patched string // "ok", "unknown", "failed" or "" (not attempted)
}

// TestLeaderKillUnderLoad stops the leader while 16 clients create, patch and read clusters
// through every replica, measures how long writes stall, and checks that every acknowledged
// write survives on every remaining replica and no refused one is half-applied.
func TestLeaderKillUnderLoad(t *testing.T) {
	skipShort(t)
	const (
		workers    = 16
		iterations = 4
		killAfter  = 16 // creates answered before the leader is stopped
	)
	c := clustertest.Start(t, clustertest.Options{Replicas: 3})
	start := time.Now()
	// Each iteration holds at most 3 hosts (1 control plane, 2 workers, one released by the
	// patch); a spare margin absorbs creates whose outcome is unknown.
	c.AddHosts(workers*iterations*3, clustertest.HostSpec{})
	t.Logf("registered %d hosts in %v", workers*iterations*3, time.Since(start))
	leader := c.Leader(30 * time.Second)

	var rr atomic.Int64
	pick := func() *clustertest.Replica {
		for range 2 * len(c.Replicas) {
			r := c.Replicas[int(rr.Add(1))%len(c.Replicas)]
			if r.Running() {
				return r
			}
		}
		return c.Replicas[int(rr.Add(1))%len(c.Replicas)]
	}

	var (
		mu         sync.Mutex
		results    []*createResult
		stopAt     time.Time // when the leader was told to stop (zero before)
		firstAfter time.Time // first successful write that started after stopAt
		answered   atomic.Int64
		reads      [2]atomic.Int64 // ok, failed
	)
	stopSignal := make(chan struct{})
	var stopOnce sync.Once
	wrote := func(begin time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if !stopAt.IsZero() && begin.After(stopAt) && firstAfter.IsZero() {
			firstAfter = time.Now()
		}
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iterations {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				res := &createResult{name: fmt.Sprintf("load-%d-%d", w, i)}
				begin := time.Now()
				res.ans = call(ctx, c, pick(), http.MethodPost, "/v1/clusters", createClusterReq(res.name, 2), nil)
				if res.ans.ok() {
					wrote(begin)
					res.id = decodeCluster(res.ans).ID
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
				if answered.Add(1) == killAfter {
					stopOnce.Do(func() { close(stopSignal) })
				}
				if res.id != "" {
					begin = time.Now()
					r := pick()
					var serr error = errors.New("replica stopped")
					if s := r.Server(); s != nil {
						serr = s.Service().SetClusterStatus(ctx, res.id, "running", "")
					}
					if serr != nil {
						t.Logf("set %s running through %s: %v", res.id, r.ID, serr)
					}
					if serr == nil {
						wrote(begin)
						begin = time.Now()
						a := call(ctx, c, pick(), http.MethodPatch, "/v1/clusters/"+res.id, v1.PatchClusterRequest{Workers: ptr(1)}, nil)
						switch {
						case a.ok():
							wrote(begin)
							res.patched = "ok"
						case a.unknownOutcome():
							res.patched = "unknown"
						default:
							res.patched = "failed"
						}
					}
					if a := call(ctx, c, pick(), http.MethodGet, "/v1/clusters/"+res.id, nil, nil); a.ok() {
						reads[0].Add(1)
					} else {
						reads[1].Add(1)
					}
				}
				cancel()
			}
		}()
	}

	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()
	select {
	case <-stopSignal:
	case <-loadDone:
		t.Fatal("the load ended before the leader was stopped")
	}
	mu.Lock()
	stopAt = time.Now()
	mu.Unlock()
	leader.Stop()
	t.Logf("stopped leader %s (took %v)", leader.ID, time.Since(stopAt))
	<-loadDone

	mu.Lock()
	gapEnd := firstAfter
	mu.Unlock()
	if gapEnd.IsZero() {
		t.Fatal("no write succeeded after the leader was stopped")
	}
	gap := gapEnd.Sub(stopAt)
	t.Logf("failover gap (leader stop -> first successful write): %v", gap)
	if gap >= 3*time.Second {
		t.Errorf("failover gap %v, want < 3s", gap)
	}
	t.Logf("reads: %d ok, %d failed", reads[0].Load(), reads[1].Load())

	rest := running(c)
	c.Leader(30 * time.Second)
	tables := converge(t, rest, 30*time.Second)
	byName := clustersByName(tables)
	var acked, unknownPresent, unknownAbsent, failed int
	patches := map[string]int{}
	for _, res := range results {
		got := byName[res.name]
		if len(got) > 1 {
			t.Errorf("%s: %d clusters with that name", res.name, len(got))
		}
		switch {
		case res.ans.ok():
			acked++
			if len(got) != 1 || got[0].ID != res.id {
				t.Errorf("acknowledged create %s (%s) missing after failover: %+v", res.name, res.id, got)
				continue
			}
			patches[res.patched]++
			switch res.patched {
			case "ok":
				if got[0].Workers != 1 {
					t.Errorf("acknowledged patch of %s lost: workers %d", res.id, got[0].Workers)
				}
			case "failed":
				if got[0].Workers != 2 {
					t.Errorf("refused patch of %s half-applied: workers %d", res.id, got[0].Workers)
				}
			}
		case res.ans.unknownOutcome():
			if len(got) == 1 {
				unknownPresent++
			} else {
				unknownAbsent++
			}
			t.Logf("create %s: outcome unknown (%s); applied: %v", res.name, res.ans, len(got) == 1)
		default:
			failed++
			if len(got) != 0 {
				t.Errorf("create %s answered %s but exists: %+v", res.name, res.ans, got[0])
			}
		}
	}
	t.Logf("creates: %d acknowledged, %d refused, %d unknown (%d applied, %d not)", acked, failed, unknownPresent+unknownAbsent, unknownPresent, unknownAbsent)
	t.Logf("patches of acknowledged creates: %d ok, %d refused, %d unknown, %d not attempted", patches["ok"], patches["failed"], patches["unknown"], patches[""])
	if acked == 0 {
		t.Error("no create was acknowledged")
	}
}

func decodeCluster(a answer) v1.Cluster {
	var cl v1.Cluster
	_ = json.Unmarshal(a.body, &cl)
	return cl
}
