package clustertest_test

import (
	"context"
	"testing"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
)

func ptr[T any](v T) *T { return &v }

func TestStartCreateRestart(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	ctx := context.Background()
	c.AddHosts(2, clustertest.HostSpec{})
	cl, err := c.Client().CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("one"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
	if err != nil {
		t.Fatal(err)
	}
	c.Restart()
	got, err := c.Client().GetCluster(ctx, cl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "one" || got.Status != v1.StatusProvisioning {
		t.Fatalf("after restart: %+v", got)
	}
}

// TestThreeReplicas writes through every replica (followers forward to the leader) and reads
// each write back from every replica.
func TestThreeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three replicas")
	}
	c := clustertest.Start(t, clustertest.Options{Replicas: 3})
	ctx := context.Background()
	c.AddHosts(6, clustertest.HostSpec{})
	for i, r := range c.Replicas {
		cl, err := r.Client().CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("c" + string(rune('a'+i))), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
		if err != nil {
			t.Fatalf("create through %s: %v", r.ID, err)
		}
		for _, other := range c.Replicas {
			if _, err := other.Client().GetCluster(ctx, cl.ID); err != nil {
				t.Fatalf("read %s written through %s from %s: %v", cl.ID, r.ID, other.ID, err)
			}
		}
	}
	members, err := c.Replicas[1].Client().Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members.Items) != 3 {
		t.Fatalf("members: %+v", members)
	}
	for _, m := range members.Items {
		if !m.Voter || !m.Reachable || m.HTTPAddress == "" {
			t.Errorf("member %+v: want a reachable voter with its addresses", m)
		}
	}
}
