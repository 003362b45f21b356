package bench

// BenchmarkUpgrade measures an upgrade's orchestration: wall time from POST .../upgrade to
// status running again, for a 3+5 cluster of simulated hosts (development mode). An upgrade
// is serial by design (apply, each other control plane, then each worker drained, upgraded
// and uncordoned in turn), so its critical path is the sum of its steps' durations; with an
// instant kubeadm the figure is the overhead alone (Raft writes, dispatch, agent round
// trips, each host's binaries checked against the artifact store).

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/coordinator/state"
)

type upgradeRow struct {
	timing          string
	runs            int
	p50, max        time.Duration
	critical, total time.Duration
}

var upgradeRows []upgradeRow

func BenchmarkUpgrade(b *testing.B) {
	for _, tc := range []struct {
		timing string
		scale  float64
		runs   int
	}{
		{"instant", 0, 3},
		{fmt.Sprintf("realistic x%.1f", realisticScale), realisticScale, 1},
	} {
		b.Run(tc.timing, func(b *testing.B) { upgrade(b, tc.timing, tc.scale, tc.runs) })
	}
}

func upgrade(b *testing.B, timing string, scale float64, runs int) {
	const cps, ws = 3, 5
	c := clustertest.Start(b, clustertest.Options{Configure: func(cfg *server.Config) {
		cfg.NoReconciler = false
		d := devmode.DefaultConfig()
		d.Agents, d.TimeScale = cps+ws, scale
		cfg.Dev = &d
	}})
	ctx := context.Background()
	cl := c.Client()
	waitHosts(b, cl, cps+ws)
	row := upgradeRow{timing: timing, runs: runs}
	var times []time.Duration
	for i := range runs {
		cls, err := cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr(fmt.Sprintf("up-%d", i)), ControlPlanes: ptr(cps), Workers: ptr(ws),
			NodeSize: ptr("small"), KubernetesVersion: ptr("v1.36.6")})
		if err != nil {
			b.Fatal(err)
		}
		running := func(st *state.State) bool {
			x, ok := st.Cluster(cls.ID)
			if ok && x.Status == state.StatusError {
				b.Fatalf("cluster failed: %s", x.StatusReason)
			}
			return ok && x.Status == state.StatusRunning
		}
		waitState(b, c, running)
		start := time.Now()
		if _, err := cl.UpgradeCluster(ctx, cls.ID, "v1.37.2"); err != nil {
			b.Fatal(err)
		}
		waitState(b, c, running)
		times = append(times, time.Since(start))
		row.total = times[len(times)-1]
		c.Server().FSM().Read(func(st *state.State) {
			row.critical = 0
			for _, n := range st.NodesOf(cls.ID) {
				for _, s := range n.Steps {
					if state.IsUpgradeStep(s.Name) {
						row.critical += s.EndedAt.Sub(s.StartedAt)
					}
				}
			}
		})
		if err := cl.DeleteCluster(ctx, cls.ID); err != nil {
			b.Fatal(err)
		}
		waitState(b, c, func(st *state.State) bool { _, ok := st.Cluster(cls.ID); return !ok })
	}
	slices.Sort(times)
	row.p50, row.max = times[len(times)/2], times[len(times)-1]
	upgradeRows = append(upgradeRows, row)
}

func printUpgradeTable() {
	fmt.Printf("\nUpgrade v1.36.6 -> v1.37.2 of a 3+5 cluster: POST .../upgrade to running, 1 replica, simulated hosts in-process, %d CPUs, %s RAM\n\n", runtime.NumCPU(), memTotal())
	fmt.Println("| kubeadm timings | runs |  p50 s |  max s | sum of upgrade steps s | total / sum |")
	fmt.Println("|-----------------|-----:|-------:|-------:|-----------------------:|------------:|")
	for _, r := range upgradeRows {
		fmt.Printf("| %-15s | %4d | %6.3f | %6.3f | %22.3f | %11.2f |\n", r.timing, r.runs, r.p50.Seconds(), r.max.Seconds(),
			r.critical.Seconds(), r.total.Seconds()/max(r.critical.Seconds(), 1e-9))
	}
	fmt.Println()
}
