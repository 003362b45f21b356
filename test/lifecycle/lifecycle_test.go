package lifecycle

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/state"
)

// stepOrder returns, per host, the names of its steps in the order their success was
// recorded in the cluster's events.
func stepOrder(events []v1.Event) map[string][]string {
	out := map[string][]string{}
	for _, e := range events {
		if e.Type != "step.succeeded" {
			continue
		}
		msg := strings.TrimPrefix(e.Message, "[simulated] ")
		name, _, _ := strings.Cut(msg, " ")
		out[e.HostID] = append(out[e.HostID], name)
	}
	return out
}

// Acceptance 1 and 3: 3 replicas, 10 real agents, a 3+5 cluster reaches running with a
// working kubeconfig and every host's steps in order; deleting it leaves every host
// available and clean.
func TestClusterLifecycle(t *testing.T) {
	f := newFleet(t, 3, 10)
	ctx := context.Background()
	start := time.Now()
	c := f.create("prod", 3, 5)
	c = f.waitStatus(c.ID, "running", 90*time.Second)
	t.Logf("3+5 cluster running after %v", time.Since(start).Round(time.Millisecond))
	if c.NodeCount != 8 {
		t.Errorf("node_count = %d, want 8", c.NodeCount)
	}
	if runs := f.initRuns(t); len(runs) != 1 {
		t.Errorf("kubeadm init ran on %d hosts (%v), want exactly one run", len(runs), runs)
	} else {
		for root, n := range runs {
			if n != 1 {
				t.Errorf("kubeadm init ran %d times on %s", n, root)
			}
		}
	}

	// Every host's steps succeeded in its plan's order.
	nodes, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	order := stepOrder(f.events(c.ID))
	var initHost *host
	for _, n := range nodes.Items {
		if diff := cmp.Diff(state.NodePlan(n.Role, true), order[n.HostID]); diff != "" {
			t.Errorf("host %s (%s): steps in events (-plan +events):\n%s", n.HostID, n.Role, diff)
		}
		if n.State != state.NodeJoined {
			t.Errorf("node %s is %s, want joined", n.HostID, n.State)
		}
		if n.Role == state.RoleInitControlPlane {
			initHost = f.hostByID(n.HostID)
		}
	}

	// The kubeconfig: parses, points at the endpoint, and its client certificate is signed
	// by the CA the control planes were given.
	kc, err := f.c.Client().Kubeconfig(ctx, c.ID, "24h")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatalf("kubeconfig does not parse: %v\n%s", err, kc)
	}
	cur := cfg.Contexts[cfg.CurrentContext]
	if cur == nil {
		t.Fatalf("kubeconfig has no current context")
	}
	cl, user := cfg.Clusters[cur.Cluster], cfg.AuthInfos[cur.AuthInfo]
	if cl == nil || user == nil {
		t.Fatalf("kubeconfig context %q is incomplete", cfg.CurrentContext)
	}
	if cl.Server != c.Endpoint {
		t.Errorf("kubeconfig server %q, want the endpoint %q", cl.Server, c.Endpoint)
	}
	caOnHost, err := os.ReadFile(filepath.Join(initHost.root, "etc/kubernetes/pki/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(cl.CertificateAuthorityData) != string(caOnHost) {
		t.Errorf("kubeconfig CA differs from the CA on the control plane")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caOnHost) {
		t.Fatal("bad CA on the control plane")
	}
	blk, _ := pem.Decode(user.ClientCertificateData)
	if blk == nil {
		t.Fatal("kubeconfig has no client certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify against the cluster CA: %v", err)
	}
	if got := leaf.Subject.Organization; len(got) != 1 || got[0] != "kubeadm:cluster-admins" {
		t.Errorf("client certificate organization %v, want kubeadm:cluster-admins", got)
	}
	if d := leaf.NotAfter.Sub(time.Now()); d > 24*time.Hour+time.Minute || d < 23*time.Hour {
		t.Errorf("client certificate lives %v, want about 24h (?ttl=24h)", d)
	}

	// Acceptance 3: deletion.
	var used []*host
	for _, n := range nodes.Items {
		used = append(used, f.hostByID(n.HostID))
	}
	if err := f.c.Client().DeleteCluster(ctx, c.ID); err != nil { // no replica is stopped here
		t.Fatal(err)
	}
	f.waitGone(c.ID, 60*time.Second)
	hosts, err := f.c.Client().ListHosts(ctx, clientListHosts(f.infraID))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts.Items {
		if h.State != v1.HostAvailable || h.ClusterID != "" {
			t.Errorf("host %s is %s (cluster %q) after the delete, want available", h.Hostname, h.State, h.ClusterID)
		}
	}
	for _, h := range used {
		if left := leftovers(t, h.root); len(left) > 0 {
			t.Errorf("host %s still holds files we wrote: %v", h.name, left)
		}
	}
}

// Acceptance 5: a join that fails three times puts the cluster in error, saying why, with
// the command's output in the events.
func TestJoinFailureGivesError(t *testing.T) {
	f := newFleet(t, 1, 2)
	for _, h := range f.hosts {
		if err := kubefake.FailNext(f.fakeState, "join", h.name, 3); err != nil {
			t.Fatal(err)
		}
	}
	c := f.create("flaky", 1, 1)
	c = f.waitStatus(c.ID, "error", 60*time.Second)
	if !strings.Contains(c.StatusReason, "join") || !strings.Contains(c.StatusReason, "kubeadm.exit_1") || !strings.Contains(c.StatusReason, "3 times") {
		t.Errorf("status_reason %q does not say the join failed 3 times with kubeadm.exit_1", c.StatusReason)
	}
	failed := 0
	for _, e := range f.events(c.ID) {
		if e.Type == "step.failed" && strings.HasPrefix(e.Message, "join failed") {
			failed++
			if !strings.Contains(e.Message, "\n") {
				t.Errorf("failed join event has no output tail: %q", e.Message)
			}
		}
	}
	if failed != 3 {
		t.Errorf("%d failed join events, want 3:\n%s", failed, f.eventLog(c.ID))
	}
	// The API says why on the node too.
	nodes, err := f.c.Client().ClusterNodes(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range nodes.Items {
		for _, s := range n.Steps {
			if s.Name == "join" && s.State == "failed" {
				found = true
				if s.Reason != "kubeadm.exit_1" || s.Output == "" || s.Attempt != 3 {
					t.Errorf("join step %+v, want attempt 3, reason kubeadm.exit_1 and output", s)
				}
			}
		}
	}
	if !found {
		t.Error("no failed join step in /nodes")
	}
}

// Acceptance 2: the leader, or the agent that just finished a step, is killed at every step
// boundary of a provisioning run; each run still reaches running with one kubeadm init.
//
// An agent is killed the moment it has stored a step's success and before it could tell
// anyone (its update is swallowed): the coordinator learns the result only from the
// restarted agent. The leader is killed as soon as the step's success is committed.
func TestKillsAtEveryStepBoundary(t *testing.T) {
	if testing.Short() {
		t.Skip("16 provisioning runs; skipped with -short")
	}
	f := newFleet(t, 3, 2)
	boundaries := []struct {
		step string
		role string
	}{
		{"preflight", state.RoleInitControlPlane}, {"prepare", state.RoleInitControlPlane}, {"pki", state.RoleInitControlPlane},
		{"init", state.RoleInitControlPlane}, {"cni", state.RoleInitControlPlane},
		{"credentials", state.RoleWorker}, {"join", state.RoleWorker}, {"ready", state.RoleWorker},
	}
	for _, kill := range []string{"leader", "agent"} {
		for _, b := range boundaries {
			t.Run(kill+"-after-"+b.step, func(t *testing.T) {
				before := total(f.initRuns(t))
				killed := make(chan struct{})
				if kill == "agent" {
					// Every host may end up running the step (placement decides who gets
					// which role, and credentials runs on the control plane).
					var once sync.Once
					for _, h := range f.hosts {
						h.onStepDone(&once, b.step, func() {
							f.stop(h)
							for _, o := range f.hosts {
								o.clearHook()
							}
							f.start(h)
							close(killed)
						})
					}
				}
				c := f.create(fmt.Sprintf("k-%s-%s", kill, b.step), 1, 1)
				switch kill {
				case "leader":
					waitFor(t, 60*time.Second, b.step+" to succeed", func() bool { return stepDone(f, c.ID, b.role, b.step) })
					l := f.c.Leader(10 * time.Second)
					l.Stop()
					defer func() {
						if err := l.StartAgain(); err != nil {
							t.Fatal(err)
						}
					}()
				case "agent":
					select {
					case <-killed:
					case <-time.After(60 * time.Second):
						t.Fatalf("no agent finished %s\n%s", b.step, f.eventLog(c.ID))
					}
				}
				f.waitStatus(c.ID, "running", 60*time.Second)
				if got := total(f.initRuns(t)) - before; got != 1 {
					t.Errorf("kubeadm init ran %d times for this cluster, want 1\n%s", got, f.eventLog(c.ID))
				}
				f.deleteCluster(c.ID)
				f.waitGone(c.ID, 60*time.Second)
			})
		}
	}
}

// stepDone tells whether the cluster's node of that role has the step succeeded.
func stepDone(f *fleet, clusterID, role, step string) bool {
	nodes, err := f.anyClient().ClusterNodes(context.Background(), clusterID)
	if err != nil {
		return false
	}
	for _, n := range nodes.Items {
		if n.Role != role {
			continue
		}
		for _, s := range n.Steps {
			if s.Name == step && s.State == state.StepSucceeded {
				return true
			}
		}
	}
	return false
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Adding workers to a running cluster provisions only the new nodes (scaling, then running)
// with the same steps and fresh join tokens; init does not run again.
func TestScaleUpWorkers(t *testing.T) {
	f := newFleet(t, 1, 4)
	ctx := context.Background()
	c := f.create("grow", 1, 1)
	f.waitStatus(c.ID, "running", 60*time.Second)
	before := total(f.initRuns(t))
	got, err := f.c.Client().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(3)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "scaling" {
		t.Errorf("status after PATCH = %s, want scaling", got.Status)
	}
	c = f.waitStatus(c.ID, "running", 60*time.Second)
	if c.NodeCount != 4 || c.Workers != 3 {
		t.Errorf("node_count %d, workers %d; want 4 and 3", c.NodeCount, c.Workers)
	}
	if n := total(f.initRuns(t)) - before; n != 0 {
		t.Errorf("kubeadm init ran %d more times while scaling", n)
	}
	nodes, err := f.c.Client().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	order := stepOrder(f.events(c.ID))
	for _, n := range nodes.Items {
		if diff := cmp.Diff(state.NodePlan(n.Role, true), order[n.HostID]); diff != "" {
			t.Errorf("host %s (%s): steps (-plan +events):\n%s", n.HostID, n.Role, diff)
		}
	}
}
