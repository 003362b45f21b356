package e2e

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/coordinator/state"
)

// The binary cannot be given hosts over REST (they come from agents), so hosts, and the
// clusters, nodes and events that need them, are checked across restarts here, with the
// in-process harness: same server code, real Raft on 127.0.0.1, real bolt store.

// fillCluster puts something in every table through the service and the API: hosts of two
// infras (one discovered, one decommissioned), clusters in several states with nodes and
// events, tokens, infras, join tokens, and objects deleted again.
func fillCluster(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := c.Client()
	populate(t, cl)
	dc, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("dc2"), Kind: ptr("onpremise"), VIPPool: ptr("10.30.0.0/29")})
	must(err)
	_, err = cl.CreateJoinToken(ctx, dc.ID, v1.CreateJoinTokenRequest{})
	must(err)

	for _, rack := range []string{"r1", "r2", "r3"} {
		c.AddHosts(2, clustertest.HostSpec{Labels: map[string]string{"rack": rack, "zone": "z" + rack[1:]}})
	}
	c.AddHosts(3, clustertest.HostSpec{InfraID: dc.ID, CPUs: 4, MemoryBytes: 16 << 30})
	c.AddHosts(1, clustertest.HostSpec{InfraID: dc.ID, Discovered: true})
	old := c.AddHosts(1, clustertest.HostSpec{CPUs: 2, MemoryBytes: 4 << 30})
	must(cl.DecommissionHost(ctx, old[0].ID))

	prod, err := cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("prod"), ControlPlanes: ptr(3), Workers: ptr(1), NodeSize: ptr("large")})
	must(err)
	_, err = cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("site"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("medium"), Phase: ptr("onpremise"), InfraID: &dc.ID})
	must(err)
	gone, err := cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("gone"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
	must(err)
	must(cl.DeleteCluster(ctx, gone.ID))

	// The reconciler's writes: prod comes up, then scales.
	svc := c.Service()
	nodes, err := cl.ClusterNodes(ctx, prod.ID)
	must(err)
	for _, n := range nodes.Items {
		must(svc.SetNodeState(ctx, n.HostID, state.NodeJoining, "kubeadm"))
		must(svc.SetNodeState(ctx, n.HostID, state.NodeJoined, ""))
	}
	must(svc.SetClusterStatus(ctx, prod.ID, v1.StatusRunning, ""))
	_, err = cl.PatchCluster(ctx, prod.ID, v1.PatchClusterRequest{Workers: ptr(2)})
	must(err)
}

func TestInProcessDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts coordinators")
	}
	tests := []struct {
		name string
		// snapshot forces a snapshot before the restart; with 4 trailing entries the log is
		// compacted, so the restart must restore from it.
		snapshot bool
	}{
		{name: "log replay"},
		{name: "snapshot restore", snapshot: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) {
				cfg.Stdout = io.Discard // the generated admin token belongs in no log
				cfg.Raft.TrailingLogs = 4
			}})
			fillCluster(t, c)
			wantTables := c.Server().FSM().Tables()
			wantAPI := dumpState(t, c.Client())
			if len(wantAPI.Hosts) == 0 || len(wantAPI.Clusters) == 0 {
				t.Fatalf("fill left no hosts or clusters: %d, %d", len(wantAPI.Hosts), len(wantAPI.Clusters))
			}
			if tc.snapshot {
				if err := c.Server().Raft().Snapshot(); err != nil {
					t.Fatalf("snapshot: %v", err)
				}
			}
			c.Stop()
			if tc.snapshot {
				store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(c.DataDir(), "raft", "raft.db")})
				if err != nil {
					t.Fatal(err)
				}
				first, err := store.FirstIndex()
				store.Close()
				if err != nil || first <= 1 {
					t.Fatalf("log starts at %d (%v): not compacted, the restart would not need the snapshot", first, err)
				}
			}
			c.Restart()
			// /readyz can answer before the log is replayed (see TestReadyMeansCaughtUp); a
			// barrier waits for it.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Server().Raft().Barrier(ctx); err != nil {
				t.Fatalf("barrier: %v", err)
			}
			if diff := cmp.Diff(wantTables, c.Server().FSM().Tables()); diff != "" {
				t.Errorf("state tables after restart (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(wantAPI, dumpState(t, c.Client())); diff != "" {
				t.Errorf("API listings after restart (-before +after):\n%s", diff)
			}

			// Derived indexes were rebuilt, not just the tables: free-host accounting and name
			// uniqueness answer as before the restart.
			cl := c.Client()
			_, err := cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("big"), ControlPlanes: ptr(3), Workers: ptr(100), NodeSize: ptr("small")})
			var apiErr *client.APIError
			if client.Code(err) != v1.CodeInsufficientCapacity {
				t.Fatalf("oversized create after restart: %v, want insufficient_capacity", err)
			}
			if errors.As(err, &apiErr) && apiErr.Body.Details["available"] != float64(1) {
				t.Errorf("free managed hosts after restart: details %v, want available 1", apiErr.Body.Details)
			}
			_, err = cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("prod"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
			if client.Code(err) != v1.CodeConflict {
				t.Errorf("create with a taken name after restart: %v, want conflict", err)
			}
		})
	}
}
