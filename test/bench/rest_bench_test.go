// Package bench measures the coordinator's REST API end to end: real HTTP on 127.0.0.1,
// real Raft with fsync'd raft-boltdb, one in-process replica. `make bench` runs it and
// prints one table of requests/s and latency percentiles per operation and concurrency.
package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
)

// result is one row of the table.
type result struct {
	op        string
	clients   int
	ops       int
	reqPerSec float64
	p50, p99  time.Duration
	errors    int
}

var (
	resultsMu sync.Mutex
	results   []result
)

func TestMain(m *testing.M) {
	code := m.Run()
	if len(results) > 0 {
		printTable()
	}
	if len(replRows) > 0 || len(failover) > 0 || len(replNotes) > 0 {
		printReplicationTable()
	}
	if len(provRows) > 0 {
		printProvisionTable()
	}
	if len(upgradeRows) > 0 {
		printUpgradeTable()
	}
	os.Exit(code)
}

func printTable() {
	fmt.Printf("\nREST API, single replica, %d CPUs, %s RAM, %s (%s/%s)\n\n", runtime.NumCPU(), memTotal(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Println("| op     | clients |   ops |   req/s |   p50 ms |   p99 ms | errors |")
	fmt.Println("|--------|--------:|------:|--------:|---------:|---------:|-------:|")
	for _, r := range results {
		fmt.Printf("| %-6s | %7d | %5d | %7.0f | %8.2f | %8.2f | %6d |\n", r.op, r.clients, r.ops, r.reqPerSec,
			float64(r.p50.Microseconds())/1000, float64(r.p99.Microseconds())/1000, r.errors)
	}
	fmt.Println()
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func ptr[T any](v T) *T { return &v }

// opsPerRun is how many requests each (operation, concurrency) cell makes. Fixed counts make
// the percentiles of different cells comparable.
var opsPerRun = map[string]int{"create": 600, "get": 4000, "patch": 600, "list": 2000}

var concurrency = []int{1, 8, 64}

// BenchmarkREST runs create, get, patch and list at 1, 8 and 64 concurrent clients. It
// ignores b.N (run with -benchtime 1x): each cell is a fixed number of requests.
func BenchmarkREST(b *testing.B) {
	c := clustertest.Start(b, clustertest.Options{})
	ctx := context.Background()
	// Each create takes 3 hosts (1 control plane + 2 workers of size small).
	creates := 0
	for _, n := range concurrency {
		creates += opsPerRun["create"] + n
	}
	addHostsParallel(b, c, 3*creates+64)

	// Keep-alive connections, as a real API client would use.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}, Timeout: 30 * time.Second}
	admin := c.Client().WithHTTPClient(hc)
	// Every cell gets a fresh enterprise token: its 10,000 requests a minute cover a cell,
	// so the rate limiter is measured as it runs in production without ever refusing.
	var cl *client.Client
	fresh := func() {
		tok, err := admin.CreateToken(ctx, v1.CreateTokenRequest{Name: ptr("bench"), Permissions: ptr([]string{"read", "write"}), Plan: ptr("enterprise")})
		if err != nil {
			b.Fatal(err)
		}
		cl = admin.WithToken(tok.Secret)
	}

	var ids []string
	var idsMu sync.Mutex
	var seq atomic.Int64
	for _, n := range concurrency {
		fresh()
		r := run(b, "create", n, opsPerRun["create"], func() error {
			k := seq.Add(1)
			got, err := cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr(fmt.Sprintf("bench-%d", k)), ControlPlanes: ptr(1), Workers: ptr(2), NodeSize: ptr("small")})
			if err == nil {
				idsMu.Lock()
				ids = append(ids, got.ID)
				idsMu.Unlock()
			}
			return err
		})
		record(r)
	}
	for _, n := range concurrency {
		var i atomic.Int64
		fresh()
		record(run(b, "get", n, opsPerRun["get"], func() error {
			_, err := cl.GetCluster(ctx, ids[int(i.Add(1))%len(ids)])
			return err
		}))
	}
	for _, n := range concurrency {
		fresh()
		record(run(b, "list", n, opsPerRun["list"], func() error {
			_, err := cl.ListClusters(ctx, client.ListOptions{Page: 1, PerPage: 20})
			return err
		}))
	}
	// PATCH needs a settled cluster: put every cluster in running (the reconciler's write),
	// then each PATCH scales a different cluster's workers 2 -> 1 (a write that needs no
	// free host, so every PATCH succeeds).
	setRunning(b, c, ids)
	var pi atomic.Int64
	for _, n := range concurrency {
		fresh()
		record(run(b, "patch", n, opsPerRun["patch"], func() error {
			_, err := cl.PatchCluster(ctx, ids[int(pi.Add(1)-1)], v1.PatchClusterRequest{Workers: ptr(1)})
			return err
		}))
	}
}

func record(r result) {
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
}

// run makes ops calls of fn from n goroutines and measures each call.
func run(b *testing.B, op string, n, ops int, fn func() error) result {
	b.Helper()
	lat := make([]time.Duration, ops)
	var next atomic.Int64
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= ops {
					return
				}
				t0 := time.Now()
				err := fn()
				lat[i] = time.Since(t0)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil {
		b.Errorf("%s with %d clients: %d errors, first: %v", op, n, errs.Load(), e)
	}
	slices.Sort(lat)
	return result{
		op: op, clients: n, ops: ops, errors: int(errs.Load()),
		reqPerSec: float64(ops) / elapsed.Seconds(),
		p50:       lat[ops*50/100],
		p99:       lat[min(ops*99/100, ops-1)],
	}
}

func addHostsParallel(b *testing.B, c *clustertest.Cluster, n int) {
	b.Helper()
	const workers = 32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.AddHosts(n/workers+boolInt(w < n%workers), clustertest.HostSpec{CPUs: 2, MemoryBytes: 4 << 30})
		}()
	}
	wg.Wait()
}

func setRunning(b *testing.B, c *clustertest.Cluster, ids []string) {
	b.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				if err := c.Service().SetClusterStatus(context.Background(), ids[i], v1.StatusRunning, ""); err != nil {
					b.Errorf("set running: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
