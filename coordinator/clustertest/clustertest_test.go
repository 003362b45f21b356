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
