package kubefake

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kubectlSplit runs the fake kubectl and returns its exit code, stdout and stderr apart.
func (e *env) kubectlSplit(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	o := e.options(&out)
	o.Stderr = &errOut
	code := Kubectl(context.Background(), args, o)
	return code, out.String(), errOut.String()
}

// joinWorker creates a token with admin and joins a fresh host as worker node.
func (e *env) joinWorker(admin, node string) string {
	e.t.Helper()
	tok := fmt.Sprintf("%-6.6s.0123456789abcdef", node+"tokenx")
	e.must(e.kubeadm("token", "create", tok, "--kubeconfig", admin))
	root := e.host(false)
	writeFile(e.t, root, joinPath, joinConfigYAML(node, tok, e.pki.caHash, ""), 0o600)
	e.must(e.kubeadm("join", "--config", joinPath, "--rootfs", root))
	return root
}

func (e *env) nodeRecord(name string) (nodeRecord, bool) {
	e.t.Helper()
	var n nodeRecord
	var ok bool
	if err := (store{e.state}).view(func(st *fakeState) error {
		n, ok = st.Clusters[testEndpoint].Nodes[name]
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return n, ok
}

func (e *env) journal() []string {
	e.t.Helper()
	j, err := Journal(e.state)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

// TestRemoveWorker: the control plane drains a worker, deletes its node, and the worker
// resets; the journal has the three steps in order.
func TestRemoveWorker(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	writeFile(t, cp1, cniPath, cniManifest, 0o644)
	e.must(e.kubectl("--kubeconfig", admin, "apply", "-f", filepath.Join(cp1, cniPath)))
	w1 := e.joinWorker(admin, "w1")

	code, out, errOut := e.kubectlSplit("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=5m0s")
	if code != 0 {
		t.Fatalf("drain: exit %d\n%s%s", code, out, errOut)
	}
	if want := "node/w1 cordoned\nnode/w1 drained\n"; out != want {
		t.Errorf("drain printed %q, want %q", out, want)
	}
	wantWarning := fmt.Sprintf("Warning: ignoring DaemonSet-managed Pods: kube-flannel/kube-flannel-ds-%s, kube-system/kube-proxy-%s\n",
		podSuffix("w1", "kube-flannel/kube-flannel-ds"), podSuffix("w1", "kube-system/kube-proxy"))
	if errOut != wantWarning {
		t.Errorf("drain warned %q, want %q", errOut, wantWarning)
	}
	if n, ok := e.nodeRecord("w1"); !ok || !n.Cordoned || !n.Drained {
		t.Errorf("after drain: %+v %v", n, ok)
	}
	out = e.must(e.kubectl("--kubeconfig", admin, "get", "node", "w1"))
	assertContains(t, out, "Ready,SchedulingDisabled")
	// Draining again finds the node cordoned already; every real flag is accepted.
	out = e.must(e.kubectl("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets", "--force", "--grace-period=-1",
		"--disable-eviction", "--pod-selector", "app!=critical", "--skip-wait-for-delete-timeout", "30", "--delete-emptydir-data=true", "--timeout", "90s"))
	assertContains(t, out, "node/w1 already cordoned\n", "node/w1 drained\n")

	if out := e.must(e.kubectl("--kubeconfig", admin, "delete", "node", "w1", "--timeout=2m", "--wait")); out != "node \"w1\" deleted\n" {
		t.Errorf("delete printed %q", out)
	}
	if _, ok := e.nodeRecord("w1"); ok {
		t.Error("w1 still registered after delete")
	}
	code, out = e.kubectl("--kubeconfig", admin, "get", "node", "w1")
	if code != exitError || out != "Error from server (NotFound): nodes \"w1\" not found\n" {
		t.Errorf("get after delete: exit %d %q", code, out)
	}
	code, out = e.kubectl("--kubeconfig", admin, "delete", "nodes", "w1")
	if code != exitError || out != "Error from server (NotFound): nodes \"w1\" not found\n" {
		t.Errorf("second delete: exit %d %q", code, out)
	}
	if out := e.must(e.kubectl("--kubeconfig", admin, "delete", "no", "w1", "--ignore-not-found")); out != "" {
		t.Errorf("delete --ignore-not-found printed %q", out)
	}
	code, out = e.kubectl("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets")
	if code != exitError || out != "Error from server (NotFound): nodes \"w1\" not found\n" {
		t.Errorf("drain of a deleted node: exit %d %q", code, out)
	}

	e.must(e.kubeadm("reset", "--force", "--rootfs", w1))
	e.must(e.kubeadm("reset", "--force", "--rootfs", w1)) // a clean host: no node any more
	e.must(e.kubeadm("reset", "--force", "--dry-run", "--rootfs", cp1))
	want := []string{
		"drain " + testEndpoint + " w1",
		"drain " + testEndpoint + " w1",
		"delete-node " + testEndpoint + " w1",
		"reset w1",
		"reset " + w1,
	}
	if diff := cmp.Diff(want, e.journal()); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
}

// TestDrainRefusals: drain and delete refuse what kubectl refuses, and change nothing then
// (except that kubectl cordons before it finds the DaemonSet pods).
func TestDrainRefusals(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := "ROOT/etc/kubernetes/admin.conf"
	e.joinWorker(filepath.Join(cp1, "etc/kubernetes/admin.conf"), "w1")
	stranger := func(t *testing.T, e *env, root string) {
		otherRoot := e.host(false)
		newPKI(t).place(t, otherRoot)
		h, err := openHostFS(otherRoot)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		strangerCA, err := loadCertAndKey(h, "/etc/kubernetes/pki", "ca")
		if err != nil {
			t.Fatal(err)
		}
		kp, key, err := issue(strangerCA, "mallory", []string{"kubeadm:cluster-admins"}, clientAuth, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := renderKubeconfig("test", "https://"+testEndpoint, clusterCA(t, e).certPEM, "mallory", kp.certPEM, key)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, root, "/stranger.conf", string(b), 0o600)
	}
	cases := []refusal{
		{name: "no node", args: []string{"--kubeconfig", admin, "drain", "--ignore-daemonsets"},
			want: []string{"error: USAGE: drain NODE [flags]\nSee 'kubectl drain -h' for help and examples"}},
		{name: "unknown flag", args: []string{"--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets", "--delete-pods"},
			want: []string{"error: unknown flag: --delete-pods\nSee 'kubectl drain --help' for usage."}},
		{name: "delete has no --ignore-daemonsets", args: []string{"--kubeconfig", admin, "delete", "node", "w1", "--ignore-daemonsets"},
			want: []string{"error: unknown flag: --ignore-daemonsets\nSee 'kubectl delete --help' for usage."}},
		{name: "bad grace period", args: []string{"--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets", "--grace-period=soon"},
			want: []string{`error: invalid argument "soon" for "--grace-period" flag: strconv.ParseInt: parsing "soon": invalid syntax`}},
		{name: "bad timeout", args: []string{"--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets", "--timeout", "5"},
			want: []string{`error: invalid argument "5" for "--timeout" flag: time: missing unit in duration "5"`}},
		{name: "real but unsimulated drain flag", args: []string{"--kubeconfig", admin, "drain", "-l", "a=b", "--ignore-daemonsets"},
			want: []string{"fakekube: kubectl drain -l exists in the real tool but is not simulated"}},
		{name: "real but unsimulated delete flag", args: []string{"--kubeconfig", admin, "delete", "node", "w1", "--cascade=orphan"},
			want: []string{"fakekube: kubectl delete --cascade exists in the real tool but is not simulated"}},
		{name: "several nodes", args: []string{"--kubeconfig", admin, "drain", "w1", "cp1", "--ignore-daemonsets"},
			want: []string{"fakekube: kubectl drain with more than one node is not simulated"}},
		{name: "unknown node", args: []string{"--kubeconfig", admin, "drain", "ghost", "--ignore-daemonsets"},
			want: []string{"Error from server (NotFound): nodes \"ghost\" not found\n"}},
		{name: "kubelet may not drain", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/kubelet.conf", "drain", "w1", "--ignore-daemonsets"},
			want: []string{`error: unable to cordon node "w1": nodes "w1" is forbidden: User "system:node:cp1" cannot patch resource "nodes" in API group "" at the cluster scope`}},
		{name: "kubelet may not delete", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/kubelet.conf", "delete", "node", "w1"},
			want: []string{`Error from server (Forbidden): nodes "w1" is forbidden: User "system:node:cp1" cannot delete resource "nodes" in API group "" at the cluster scope`}},
		{name: "unauthenticated drain", args: []string{"--kubeconfig", "ROOT/stranger.conf", "drain", "w1", "--ignore-daemonsets"}, setup: stranger,
			want: []string{"error: You must be logged in to the server (Unauthorized)"}},
		{name: "unauthenticated delete", args: []string{"--kubeconfig", "ROOT/stranger.conf", "delete", "node", "w1"}, setup: stranger,
			want: []string{"error: You must be logged in to the server (Unauthorized)"}},
		{name: "no kubeconfig", args: []string{"drain", "w1", "--ignore-daemonsets"},
			want: []string{"The connection to the server localhost:8080 was refused - did you specify the right host or port?"}},
		{name: "delete nothing", args: []string{"--kubeconfig", admin, "delete"},
			want: []string{"error: You must provide one or more resources by argument or filename."}},
		{name: "delete node without a name", args: []string{"--kubeconfig", admin, "delete", "node"},
			want: []string{"error: resource(s) were provided, but no name was specified"}},
		{name: "delete another resource", args: []string{"--kubeconfig", admin, "delete", "pods", "x"},
			want: []string{"fakekube: kubectl delete pods is not simulated"}},
		{name: "delete type/name", args: []string{"--kubeconfig", admin, "delete", "node/w1"},
			want: []string{"is not simulated"}},
		{name: "delete several nodes", args: []string{"--kubeconfig", admin, "delete", "node", "w1", "cp1"},
			want: []string{"fakekube: kubectl delete node with more than one name is not simulated"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t, e, cp1)
			}
			tc.run(t, e, "kubectl", cp1)
		})
	}
	if n, ok := e.nodeRecord("w1"); !ok || n.Cordoned || n.Drained {
		t.Errorf("refusals changed w1: %+v %v", n, ok)
	}

	// Without --ignore-daemonsets kubectl cordons, then refuses the DaemonSet pods.
	code, out, errOut := e.kubectlSplit("--kubeconfig", filepath.Join(cp1, "etc/kubernetes/admin.conf"), "drain", "w1", "--delete-emptydir-data")
	pods := "kube-system/kube-proxy-" + podSuffix("w1", "kube-system/kube-proxy")
	msg := "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): " + pods
	wantErr := "error: unable to drain node \"w1\" due to error: " + msg + ", continuing command...\n" +
		"There are pending nodes to be drained:\n w1\n" +
		"error: " + msg + "\n"
	if code != exitError || out != "node/w1 cordoned\n" || errOut != wantErr {
		t.Errorf("drain without --ignore-daemonsets: exit %d\nstdout %q\nstderr %q\nwant stderr %q", code, out, errOut, wantErr)
	}
	if n, _ := e.nodeRecord("w1"); !n.Cordoned || n.Drained {
		t.Errorf("after a refused drain: %+v", n)
	}
	if j := e.journal(); len(j) != 0 {
		t.Errorf("refusals were journaled: %q", j)
	}
}

// TestFailNextDrain: an armed drain runs into a PodDisruptionBudget once, leaving the node
// cordoned but not drained; the next drain succeeds.
func TestFailNextDrain(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	e.joinWorker(admin, "w1")
	e.joinWorker(admin, "w2")
	if err := FailNext(e.state, "drain", "w1", 1); err != nil {
		t.Fatal(err)
	}
	// Another node's drain does not use up w1's failure.
	e.must(e.kubectl("--kubeconfig", admin, "drain", "w2", "--ignore-daemonsets"))

	code, out, errOut := e.kubectlSplit("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=1m")
	pod := pdbPodPrefix + podSuffix("w1", pdbNamespace+"/"+pdbPodPrefix)
	evict := fmt.Sprintf("error when evicting pods/%q -n \"default\": Cannot evict pod as it would violate the pod's disruption budget.", pod)
	if code != exitError {
		t.Fatalf("armed drain: exit %d\n%s%s", code, out, errOut)
	}
	if want := "node/w1 cordoned\nevicting pod default/" + pod + "\n"; out != want {
		t.Errorf("armed drain printed %q, want %q", out, want)
	}
	assertContains(t, errOut, "Warning: ignoring DaemonSet-managed Pods: kube-system/kube-proxy-",
		"There are pending pods in node \"w1\" when an error occurred: "+evict+"\npod/"+pod+"\n",
		"error: unable to drain node \"w1\" due to error: "+evict+", continuing command...\nThere are pending nodes to be drained:\n w1\nerror: "+evict+"\n")
	if n, _ := e.nodeRecord("w1"); !n.Cordoned || n.Drained {
		t.Errorf("after a blocked drain: %+v", n)
	}
	out = e.must(e.kubectl("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets"))
	assertContains(t, out, "node/w1 already cordoned\n", "node/w1 drained\n")

	// --disable-eviction deletes instead of evicting: no budget applies, the count stays.
	if err := FailNext(e.state, "drain", "", 1); err != nil {
		t.Fatal(err)
	}
	e.must(e.kubectl("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets", "--disable-eviction"))
	if code, out := e.kubectl("--kubeconfig", admin, "drain", "w2", "--ignore-daemonsets"); code != exitError {
		t.Errorf("drain armed for any node: exit %d\n%s", code, out)
	}

	// delete: the API server refuses the connection once.
	if err := FailNext(e.state, "delete", "w2", 1); err != nil {
		t.Fatal(err)
	}
	code, out = e.kubectl("--kubeconfig", admin, "delete", "node", "w2")
	if code != exitError || out != "The connection to the server 10.0.0.10:6443 was refused - did you specify the right host or port?\n" {
		t.Errorf("armed delete: exit %d %q", code, out)
	}
	e.must(e.kubectl("--kubeconfig", admin, "delete", "node", "w2"))

	want := []string{"drain " + testEndpoint + " w2", "drain " + testEndpoint + " w1", "drain " + testEndpoint + " w1", "delete-node " + testEndpoint + " w2"}
	if diff := cmp.Diff(want, e.journal()); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
}

// TestJournalConcurrent: processes draining and deleting different nodes at once each
// leave their lines, a node's drain always before its delete.
func TestJournalConcurrent(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	const n = 6
	for i := range n {
		e.joinWorker(admin, fmt.Sprintf("w%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			node := fmt.Sprintf("w%d", i)
			if code, out := e.kubectl("--kubeconfig", admin, "drain", node, "--ignore-daemonsets"); code != 0 {
				errs <- out
				return
			}
			if code, out := e.kubectl("--kubeconfig", admin, "delete", "node", node); code != 0 {
				errs <- out
			}
		})
	}
	wg.Wait()
	close(errs)
	for out := range errs {
		t.Error(out)
	}
	j := e.journal()
	if len(j) != 2*n {
		t.Fatalf("journal has %d lines, want %d: %q", len(j), 2*n, j)
	}
	seen := map[string]int{}
	for i, line := range j {
		seen[line] = i
	}
	for i := range n {
		node := fmt.Sprintf("w%d", i)
		d, ok1 := seen["drain "+testEndpoint+" "+node]
		x, ok2 := seen["delete-node "+testEndpoint+" "+node]
		if !ok1 || !ok2 || d > x {
			t.Errorf("%s: drain at %d (%v), delete at %d (%v)", node, d, ok1, x, ok2)
		}
	}
}
