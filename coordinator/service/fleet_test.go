package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
)

// TestAcceptHost: bare-metal hosts register discovered and no cluster can use them until
// they are accepted; then they are placed like any other. Accepting is idempotent, and
// refused for a missing or decommissioned host.
func TestAcceptHost(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, cl := c.Service(), c.Client()
	rack, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("rack"), Kind: ptr("baremetal")})
	if err != nil {
		t.Fatal(err)
	}
	hosts := c.AddHosts(3, clustertest.HostSpec{InfraID: rack.ID, Discovered: true})
	create := func(name string) (*v1.Cluster, error) {
		return cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr(name), Phase: ptr("baremetal"), InfraID: ptr(rack.ID),
			ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
	}
	if _, err := create("early"); client.Code(err) != v1.CodeInsufficientCapacity {
		t.Fatalf("cluster on discovered hosts: %v, want %s", err, v1.CodeInsufficientCapacity)
	}

	for _, h := range hosts[:2] {
		for range 2 { // the second time is a retry: the same answer
			got, err := svc.AcceptHost(ctx, h.ID)
			if err != nil {
				t.Fatalf("accept %s: %v", h.ID, err)
			}
			if got.ID != h.ID || got.State != v1.HostAvailable {
				t.Fatalf("accept %s = %s %s, want %s available", h.ID, got.ID, got.State, h.ID)
			}
		}
	}
	cls, err := create("accepted")
	if err != nil {
		t.Fatalf("cluster on accepted hosts: %v", err)
	}
	nodes, err := cl.ClusterNodes(ctx, cls.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.HostID != hosts[0].ID && n.HostID != hosts[1].ID {
			t.Errorf("node on host %s, want one of the accepted hosts", n.HostID)
		}
	}
	// An assigned host is accepted already: it stays assigned.
	if got, err := svc.AcceptHost(ctx, hosts[0].ID); err != nil || got.State != v1.HostAssigned {
		t.Errorf("accept an assigned host = %+v, %v; want it assigned, unchanged", got, err)
	}

	if err := svc.DecommissionHost(ctx, hosts[2].ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, id, code string }{
		{"decommissioned", hosts[2].ID, v1.CodeConflict},
		{"missing", "host_missing", v1.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.AcceptHost(ctx, tc.id)
			var e *v1.Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Errorf("accept a %s host: %v, want %s", tc.name, err, tc.code)
			}
		})
	}
}
