package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/server"
)

// upgradeVersions is the catalog of the upgrade tests: the fake kubeadm is v1.37.2.
var upgradeVersions = []v1.KubernetesVersion{{Version: "v1.37.2", Default: true}, {Version: "v1.38.0"}, {Version: "v1.39.0"}}

// withArtifacts gives every replica the catalog and an artifact store holding each version's
// (fake) binaries.
func withArtifacts(t *testing.T) func(*server.Config) {
	dir := t.TempDir()
	var versions []string
	for _, v := range upgradeVersions {
		versions = append(versions, v.Version)
	}
	if err := devmode.SeedKubeArtifacts(dir, versions); err != nil {
		t.Fatal(err)
	}
	return func(cfg *server.Config) {
		cfg.KubeArtifactsDir = dir
		cfg.Service.KubernetesVersions = upgradeVersions
	}
}

// binaryVersion reads the version of one of our fake binaries installed on a host.
func binaryVersion(t *testing.T, h *host, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.root, "usr/bin", name))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "version="); ok {
			return v
		}
	}
	return "(no version)"
}

// TestUpgradeOneMinor (issue 6, acceptance 4): a 3+2 cluster on v1.37.2 is upgraded to
// v1.38.0. A skip of two minors is refused first, changing nothing. The upgrade is
// `upgrading`, then `running`: the initial control plane runs kubeadm upgrade apply, then the
// other control planes kubeadm upgrade node one at a time, then each worker is drained,
// upgraded and uncordoned before the next; every host got the target's kubeadm, kubelet and
// kubectl from the coordinators' artifact store (checked by hash), and the fake cluster
// reports the new version on every node.
func TestUpgradeOneMinor(t *testing.T) {
	f := newFleetWith(t, 3, 6, withArtifacts(t))
	ctx := context.Background()
	c := f.create("up", 3, 2)
	c = f.waitStatus(c.ID, "running", 90*time.Second)
	endpoint := strings.TrimPrefix(c.Endpoint, "https://")

	_, err := f.anyClient().UpgradeCluster(ctx, c.ID, "v1.39.0")
	if client.Code(err) != v1.CodeInvalidRequest || !strings.Contains(err.Error(), "one minor version at a time") {
		t.Fatalf("upgrade v1.37.2 -> v1.39.0: %v, want 400 one minor at a time", err)
	}
	if got, _ := f.anyClient().GetCluster(ctx, c.ID); got.Status != "running" || got.KubernetesVersion != "v1.37.2" {
		t.Fatalf("after a refused upgrade: %s %s", got.Status, got.KubernetesVersion)
	}

	got, err := f.anyClient().UpgradeCluster(ctx, c.ID, "v1.38.0")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "upgrading" || got.KubernetesVersion != "v1.38.0" {
		t.Errorf("after POST upgrade: %s %s, want upgrading v1.38.0", got.Status, got.KubernetesVersion)
	}
	if _, err := f.anyClient().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(3)}); client.Code(err) != v1.CodeConflict || !strings.Contains(err.Error(), "upgrading") {
		t.Errorf("PATCH during the upgrade: %v, want 409 naming upgrading", err)
	}
	f.waitStatus(c.ID, "running", 120*time.Second)
	checkUpgraded(t, f, c.ID, endpoint, "v1.38.0")

	// A worker added afterwards gets v1.38.0 too: its plan starts with install, and its
	// preflight finds that kubeadm.
	if _, err := f.anyClient().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(3)}); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(c.ID, "running", 60*time.Second)
	nodes, err := f.anyClient().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if len(n.Steps) > 0 && n.Steps[0].Name == "install" {
			if v := binaryVersion(t, f.hostByID(n.HostID), "kubeadm"); v != "v1.38.0" {
				t.Errorf("new worker %s has kubeadm %s", n.Hostname, v)
			}
			knodes, err := kubefake.Nodes(f.fakeState, endpoint)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range knodes {
				if k.Name == n.Hostname && k.KubeletVersion != "v1.38.0" {
					t.Errorf("new worker %s runs kubelet %s", k.Name, k.KubeletVersion)
				}
			}
			return
		}
	}
	t.Errorf("no node added after the upgrade starts with install: %+v", nodes.Items)
}

// checkUpgraded checks the order of an upgrade in the fake's journal, and the versions.
func checkUpgraded(t *testing.T, f *fleet, clusterID, endpoint, version string) {
	t.Helper()
	ctx := context.Background()
	nodes, err := f.anyClient().ClusterNodes(ctx, clusterID)
	if err != nil {
		t.Fatal(err)
	}
	role := map[string]string{}
	for _, n := range nodes.Items {
		role[n.Hostname] = n.Role
		h := f.hostByID(n.HostID)
		for _, b := range []string{"kubeadm", "kubelet", "kubectl"} {
			if v := binaryVersion(t, h, b); v != version {
				t.Errorf("host %s: %s is %s, want %s", n.Hostname, b, v, version)
			}
		}
	}
	journal, err := kubefake.Journal(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	// The upgrade's part of the journal, as "<op> <role>" per line, and per worker.
	var ops []string
	perNode := map[string][]string{}
	for _, line := range journal {
		fs := strings.Fields(line)
		if len(fs) < 3 {
			continue
		}
		var node string
		switch fs[0] {
		case "upgrade-apply", "upgrade-node", "uncordon":
			node = fs[2]
		case "drain":
			node = fs[len(fs)-1]
		default:
			continue
		}
		ops = append(ops, fs[0]+" "+role[node])
		perNode[node] = append(perNode[node], fs[0])
	}
	want := []string{"upgrade-apply control-plane-init", "upgrade-node control-plane", "upgrade-node control-plane",
		"drain worker", "upgrade-node worker", "uncordon worker", "drain worker", "upgrade-node worker", "uncordon worker"}
	if !slices.Equal(ops, want) {
		t.Errorf("upgrade order:\n  %s\nwant\n  %s\njournal:\n%s", strings.Join(ops, "\n  "), strings.Join(want, "\n  "), strings.Join(journal, "\n"))
	}
	knodes, err := kubefake.Nodes(f.fakeState, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range knodes {
		if n.KubeletVersion != version || n.Cordoned || (n.ControlPlane && n.ControlPlaneVersion != version) {
			t.Errorf("node %s after the upgrade: %+v", n.Name, n)
		}
	}
	if v, err := kubefake.ClusterVersion(f.fakeState, endpoint); err != nil || v != version {
		t.Errorf("cluster version %q (%v), want %s", v, err, version)
	}
}

// TestFailedOperationsResume: an upgrade whose worker step keeps failing ends in error with
// the reason; asking for the same upgrade again resumes it where it stopped (the control
// plane is not upgraded twice). Likewise a scale-up whose join keeps failing resumes on the
// same PATCH again.
func TestFailedOperationsResume(t *testing.T) {
	f := newFleetWith(t, 1, 4, withArtifacts(t))
	ctx := context.Background()
	c := f.create("resume", 1, 1)
	c = f.waitStatus(c.ID, "running", 60*time.Second)

	// An upgrade whose kubeadm upgrade node fails on every attempt.
	nodes, err := f.anyClient().ClusterNodes(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var worker v1.Node
	for _, n := range nodes.Items {
		if n.Role == "worker" {
			worker = n
		}
	}
	if err := kubefake.FailNext(f.fakeState, "upgrade", worker.Hostname, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := f.anyClient().UpgradeCluster(ctx, c.ID, "v1.38.0"); err != nil {
		t.Fatal(err)
	}
	got := f.waitStatus(c.ID, "error", 60*time.Second)
	if !strings.Contains(got.StatusReason, "upgrade-node") {
		t.Errorf("status_reason %q does not name the failed step", got.StatusReason)
	}
	if _, err := f.anyClient().UpgradeCluster(ctx, c.ID, "v1.38.0"); err != nil {
		t.Fatalf("asking for the failed upgrade again: %v", err)
	}
	f.waitStatus(c.ID, "running", 60*time.Second)
	ops := journalSince(t, f, 0)
	applies := 0
	for _, o := range ops {
		if strings.HasPrefix(o, "upgrade-apply ") {
			applies++
		}
	}
	if applies != 1 || !slices.Contains(ops, "upgrade-node "+worker.Hostname) || !slices.Contains(ops, "uncordon "+worker.Hostname) {
		t.Errorf("journal %v: want one upgrade-apply, then the worker upgraded and uncordoned", ops)
	}
	// Asking once more when it is done: the cluster already runs it.
	if _, err := f.anyClient().UpgradeCluster(ctx, c.ID, "v1.38.0"); client.Code(err) != v1.CodeInvalidRequest {
		t.Errorf("upgrade to the version it runs: %v, want 400", err)
	}

	// A scale-up whose join keeps failing, then the same PATCH again.
	if err := kubefake.FailNext(f.fakeState, "join", "", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := f.anyClient().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(c.ID, "error", 60*time.Second)
	got, err = f.anyClient().PatchCluster(ctx, c.ID, v1.PatchClusterRequest{Workers: ptr(2)})
	if err != nil || got.Status != "scaling" {
		t.Fatalf("the same PATCH again: %v, status %v; want scaling", err, got)
	}
	got = f.waitStatus(c.ID, "running", 60*time.Second)
	if got.NodeCount != 3 {
		t.Errorf("node_count %d, want 3", got.NodeCount)
	}
	if !strings.Contains(f.eventLog(c.ID), "cluster.resumed") {
		t.Errorf("no cluster.resumed event:\n%s", f.eventLog(c.ID))
	}
}
