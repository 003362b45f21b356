package bench

// BenchmarkProvision measures orchestration: wall time from POST /v1/clusters to status
// running, with simulated hosts (coordinator --dev's fleet: the real agent client and step
// runner, kubeadm simulated in-process). With an instant kubeadm the figure is pure overhead
// (Raft commits, dispatch, agent round trips); with realistic kubeadm timings (scaled down)
// it is compared with the critical path, init + one control-plane join per extra control
// plane + one worker join, measured from the same run's step durations.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/coordinator/state"
)

type provRow struct {
	shape    string
	timing   string
	runs     int
	p50, max time.Duration
	// critical is the critical path of the last run (realistic timings only).
	critical time.Duration
	total    time.Duration
}

var provRows []provRow

// realisticScale shrinks the simulator's realistic timings (kubeadm init ≈ 40 s) so a run
// takes seconds; the total-to-critical-path ratio does not depend on it.
const realisticScale = 0.1

func BenchmarkProvision(b *testing.B) {
	for _, tc := range []struct {
		timing  string
		scale   float64
		cps, ws int
		runs    int
	}{
		{"instant", 0, 1, 1, 5},
		{"instant", 0, 3, 5, 5},
		{"instant", 0, 3, 50, 3},
		{fmt.Sprintf("realistic x%.1f", realisticScale), realisticScale, 1, 1, 1},
		{fmt.Sprintf("realistic x%.1f", realisticScale), realisticScale, 3, 5, 1},
	} {
		b.Run(fmt.Sprintf("%s/%d+%d", tc.timing, tc.cps, tc.ws), func(b *testing.B) {
			provision(b, tc.timing, tc.scale, tc.cps, tc.ws, tc.runs)
		})
	}
}

func provision(b *testing.B, timing string, scale float64, cps, ws, runs int) {
	hosts := cps + ws
	c := clustertest.Start(b, clustertest.Options{Configure: func(cfg *server.Config) {
		cfg.NoReconciler = false
		d := devmode.DefaultConfig()
		d.Agents, d.TimeScale = hosts, scale
		cfg.Dev = &d
	}})
	ctx := context.Background()
	cl := c.Client()
	waitHosts(b, cl, hosts)
	var times []time.Duration
	row := provRow{shape: fmt.Sprintf("%d+%d", cps, ws), timing: timing, runs: runs}
	for i := range runs {
		start := time.Now()
		cls, err := cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr(fmt.Sprintf("bench-%d", i)), ControlPlanes: ptr(cps), Workers: ptr(ws), NodeSize: ptr("small")})
		if err != nil {
			b.Fatal(err)
		}
		waitState(b, c, func(st *state.State) bool {
			x, ok := st.Cluster(cls.ID)
			if ok && x.Status == state.StatusError {
				b.Fatalf("cluster failed: %s", x.StatusReason)
			}
			return ok && x.Status == state.StatusRunning
		})
		times = append(times, time.Since(start))
		if scale > 0 {
			row.total = times[len(times)-1]
			c.Server().FSM().Read(func(st *state.State) { row.critical = criticalPath(st.NodesOf(cls.ID)) })
		}
		if err := cl.DeleteCluster(ctx, cls.ID); err != nil {
			b.Fatal(err)
		}
		waitState(b, c, func(st *state.State) bool { _, ok := st.Cluster(cls.ID); return !ok })
	}
	slices.Sort(times)
	row.p50, row.max = times[len(times)/2], times[len(times)-1]
	provRows = append(provRows, row)
}

// criticalPath sums what cannot overlap: the init, each extra control plane's join (they go
// one at a time), and the slowest worker join.
func criticalPath(nodes []*state.Node) time.Duration {
	var d, worker time.Duration
	for _, n := range nodes {
		for _, s := range n.Steps {
			took := s.EndedAt.Sub(s.StartedAt)
			switch {
			case s.Name == state.StepInit:
				d += took
			case s.Name == state.StepJoin && n.Role == state.RoleControlPlane:
				d += took
			case s.Name == state.StepJoin && n.Role == state.RoleWorker:
				worker = max(worker, took)
			}
		}
	}
	return d + worker
}

func waitHosts(b *testing.B, cl *client.Client, n int) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l, err := cl.ListHosts(context.Background(), client.ListOptions{State: v1.HostAvailable, PerPage: 100})
		if err == nil && l.Total >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("%d simulated hosts never became available", n)
}

// waitState blocks until cond holds on the replica's state, woken by every applied change.
func waitState(b *testing.B, c *clustertest.Cluster, cond func(*state.State) bool) {
	b.Helper()
	f := c.Server().FSM()
	deadline := time.After(5 * time.Minute)
	for {
		changed := f.Changed()
		ok := false
		f.Read(func(st *state.State) { ok = cond(st) })
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			b.Fatal("timed out")
		}
	}
}

func printProvisionTable() {
	fmt.Printf("\nProvisioning: POST /v1/clusters to running, 1 replica, simulated hosts in-process, %d CPUs, %s RAM\n\n", runtime.NumCPU(), memTotal())
	fmt.Println("| kubeadm timings | shape | runs |  p50 s |  max s | critical path s | total / critical |")
	fmt.Println("|-----------------|-------|-----:|-------:|-------:|----------------:|-----------------:|")
	for _, r := range provRows {
		crit, ratio := "", ""
		if r.critical > 0 {
			crit = fmt.Sprintf("%.2f", r.critical.Seconds())
			ratio = fmt.Sprintf("%.2f", r.total.Seconds()/r.critical.Seconds())
		}
		fmt.Printf("| %-15s | %-5s | %4d | %6.3f | %6.3f | %15s | %16s |\n", r.timing, r.shape, r.runs, r.p50.Seconds(), r.max.Seconds(), crit, ratio)
	}
	fmt.Println()
}
