package devmode_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/internal/poll"
)

func ptr[T any](v T) *T { return &v }

// TestDevModeCluster is `make run` in small: a coordinator with simulated hosts takes a
// managed cluster to running, every simulated event says so, and deletion frees the hosts.
func TestDevModeCluster(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) {
		cfg.NoReconciler = false
		d := devmode.DefaultConfig()
		d.Agents, d.TimeScale = 3, 0
		cfg.Dev = &d
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Client()
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		l, err := cl.ListHosts(ctx, clientOpts())
		return err == nil && l.Total == 3, nil
	}); err != nil {
		t.Fatalf("simulated hosts never registered: %v", err)
	}
	l, _ := cl.ListHosts(ctx, clientOpts())
	for _, h := range l.Items {
		if h.Labels["simulated"] != "true" || h.InfraID != "infra_managed" {
			t.Errorf("host %s: labels %v infra %s, want simulated=true in infra_managed", h.Hostname, h.Labels, h.InfraID)
		}
	}
	// The older offered version, so the upgrade to the default can be tried.
	cls, err := cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("demo"), ControlPlanes: ptr(1), Workers: ptr(2), NodeSize: ptr("small"),
		KubernetesVersion: ptr("v1.36.6")})
	if err != nil {
		t.Fatal(err)
	}
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		got, err := cl.GetCluster(ctx, cls.ID)
		return err == nil && got.Status == "running" && got.NodeCount == 3, nil
	}); err != nil {
		t.Fatalf("cluster never running: %v", err)
	}
	ev, err := cl.ClusterEvents(ctx, cls.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, e := range ev.Items {
		if strings.HasPrefix(e.Type, "step.") {
			steps++
			if !strings.HasPrefix(e.Message, "[simulated] ") || strings.Count(e.Message, "[simulated]") != 1 {
				t.Errorf("event %d %q does not say once that it is simulated", e.Seq, e.Message)
			}
		}
	}
	if steps == 0 {
		t.Error("no step events")
	}
	if _, err := cl.Kubeconfig(ctx, cls.ID, ""); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
	// An upgrade works in development mode too: the simulated hosts install the fake
	// binaries of the target from the coordinator's seeded artifact store.
	if _, err := cl.UpgradeCluster(ctx, cls.ID, "v1.37.2"); err != nil {
		t.Fatal(err)
	}
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		got, err := cl.GetCluster(ctx, cls.ID)
		return err == nil && got.Status == "running" && got.KubernetesVersion == "v1.37.2", nil
	}); err != nil {
		got, _ := cl.GetCluster(ctx, cls.ID)
		t.Fatalf("upgrade never finished: %v (%+v)", err, got)
	}
	if err := cl.DeleteCluster(ctx, cls.ID); err != nil {
		t.Fatal(err)
	}
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		l, err := cl.ListHosts(ctx, clientOpts())
		if err != nil {
			return false, nil
		}
		for _, h := range l.Items {
			if h.State != v1.HostAvailable {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Fatalf("hosts never available again: %v", err)
	}
}

func clientOpts() client.ListOptions { return client.ListOptions{PerPage: 100} }
