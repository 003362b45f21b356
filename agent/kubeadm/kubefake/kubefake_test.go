package kubefake

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deployme/deployme/agent/kubeadm"
)

// initWrites is everything a control-plane init writes, besides the PKI placed before it.
var initWrites = []string{
	"/etc/kubernetes/admin.conf",
	"/etc/kubernetes/controller-manager.conf",
	"/etc/kubernetes/kubelet.conf",
	"/etc/kubernetes/manifests/etcd.yaml",
	"/etc/kubernetes/manifests/kube-apiserver.yaml",
	"/etc/kubernetes/manifests/kube-controller-manager.yaml",
	"/etc/kubernetes/manifests/kube-scheduler.yaml",
	"/etc/kubernetes/pki/apiserver.crt",
	"/etc/kubernetes/pki/apiserver.key",
	"/etc/kubernetes/scheduler.conf",
	"/etc/kubernetes/super-admin.conf",
	"/var/lib/kubelet/config.yaml",
	"/var/lib/kubelet/kubeadm-flags.env",
}

// TestClusterLifecycle builds a cluster the way the coordinator drives the steps: init,
// CNI, a token per joining node, a worker and a control-plane join, and Ready polls.
func TestClusterLifecycle(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")

	// init's files, its phases in kubeadm's order, and real credentials.
	var got []string
	for _, f := range listFiles(t, cp1) {
		if _, placed := e.pki.files[f]; !placed && f != initPath && f != "/etc/deployme/simulated-host.txt" {
			got = append(got, f)
		}
	}
	if diff := cmp.Diff(initWrites, got); diff != "" {
		t.Errorf("init wrote (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(cp1, "var/lib/etcd/member")); err != nil || !fi.IsDir() {
		t.Errorf("etcd member directory: %v", err)
	}
	checkAPIServerCert(t, e, cp1)
	for _, conf := range []string{"admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"} {
		checkKubeconfig(t, e, filepath.Join(cp1, "etc/kubernetes", conf))
	}

	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	e.must(e.kubectl("--kubeconfig", admin, "get", "node", "cp1", "-o", readyJSONPath))

	// The worker's credentials, minted on the control plane right before its join.
	const workerToken = "w1toke.0123456789abcdef"
	out := e.must(e.kubeadm("token", "create", workerToken, "--ttl", "15m0s", "--kubeconfig", admin, "--description", "deployme join w1"))
	if out != workerToken+"\n" {
		t.Errorf("token create printed %q", out)
	}
	w1 := e.host(false)
	writeFile(t, w1, joinPath, joinConfigYAML("w1", workerToken, e.pki.caHash, ""), 0o600)
	out = e.must(e.kubeadm("join", "--config", joinPath, "--rootfs", w1))
	assertContains(t, out, "[preflight] Running pre-flight checks", "[kubelet-start] Starting the kubelet",
		"[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap", "This node has joined the cluster:")
	wantWorker := []string{"/etc/deployme/kubeadm-join.yaml", "/etc/deployme/simulated-host.txt", "/etc/kubernetes/kubelet.conf",
		"/etc/kubernetes/pki/ca.crt", "/var/lib/kubelet/config.yaml", "/var/lib/kubelet/kubeadm-flags.env"}
	if diff := cmp.Diff(wantWorker, listFiles(t, w1)); diff != "" {
		t.Errorf("worker join wrote (-want +got):\n%s", diff)
	}
	w1kubelet := filepath.Join(w1, "etc/kubernetes/kubelet.conf")
	checkKubeconfig(t, e, w1kubelet)

	ready := func(kubeconfig, node string) string {
		t.Helper()
		return e.must(e.kubectl("--kubeconfig", kubeconfig, "get", "node", node, "-o", readyJSONPath))
	}
	if got := ready(w1kubelet, "w1"); got != "False" {
		t.Errorf("w1 before CNI: %q, want False", got)
	}

	writeFile(t, cp1, cniPath, cniManifest, 0o644)
	out = e.must(e.kubectl("--kubeconfig", admin, "apply", "-f", filepath.Join(cp1, cniPath)))
	if want := "namespace/kube-flannel created\ndaemonset.apps/kube-flannel-ds created\n"; out != want {
		t.Errorf("first apply printed %q, want %q", out, want)
	}
	out = e.must(e.kubectl("--kubeconfig", admin, "apply", "-f", filepath.Join(cp1, cniPath)))
	if want := "namespace/kube-flannel unchanged\ndaemonset.apps/kube-flannel-ds unchanged\n"; out != want {
		t.Errorf("second apply printed %q, want %q", out, want)
	}
	for _, n := range []struct{ kubeconfig, node string }{{w1kubelet, "w1"}, {admin, "cp1"}, {admin, "w1"}} {
		if got := ready(n.kubeconfig, n.node); got != "True" {
			t.Errorf("%s after CNI: %q, want True", n.node, got)
		}
	}

	// A second control plane with the shared PKI, joining at the endpoint's virtual IP.
	const cpToken = "cp2tok.0123456789abcdef"
	e.must(e.kubeadm("token", "create", cpToken, "--ttl=15m0s", "--kubeconfig="+admin))
	cp2 := e.host(true)
	writeFile(t, cp2, joinPath, joinConfigYAML("cp2", cpToken, e.pki.caHash, "10.0.0.12"), 0o600)
	out = e.must(e.kubeadm("join", "--rootfs="+cp2, "--config="+joinPath))
	assertContains(t, out, "[preflight] Running pre-flight checks before initializing the new control plane instance",
		"[control-plane] Creating static Pod manifest for \"kube-apiserver\"", "[etcd] Creating static Pod manifest for \"etcd\"",
		"[mark-control-plane] Marking the node cp2 as control-plane", "a new control plane instance was created")
	for _, f := range []string{"/etc/kubernetes/admin.conf", "/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/pki/apiserver.crt"} {
		if _, err := os.Stat(filepath.Join(cp2, f)); err != nil {
			t.Errorf("control-plane join did not write %s: %v", f, err)
		}
	}
	etcdManifest, _ := os.ReadFile(filepath.Join(cp2, "etc/kubernetes/manifests/etcd.yaml"))
	assertContains(t, string(etcdManifest), "--initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380", "--initial-cluster-state=existing")
	// The new control plane's admin.conf works too.
	cp2admin := filepath.Join(cp2, "etc/kubernetes/admin.conf")
	if got := ready(cp2admin, "cp2"); got != "True" {
		t.Errorf("cp2: %q, want True", got)
	}
	out = e.must(e.kubectl("--kubeconfig", admin, "get", "nodes", "cp2"))
	assertContains(t, out, "NAME", "cp2", "Ready", "control-plane", "v1.37.2")

	invs, err := Invocations(e.state)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, inv := range invs {
		summary = append(summary, inv.Root+" "+inv.Tool+" "+inv.Args[0])
	}
	want := []string{
		cp1 + " kubeadm init",
		"/ kubectl --kubeconfig",
		"/ kubeadm token",
		w1 + " kubeadm join",
		"/ kubectl --kubeconfig", "/ kubectl --kubeconfig", "/ kubectl --kubeconfig",
		"/ kubectl --kubeconfig", "/ kubectl --kubeconfig", "/ kubectl --kubeconfig",
		"/ kubeadm token",
		cp2 + " kubeadm join",
		"/ kubectl --kubeconfig", "/ kubectl --kubeconfig",
	}
	if diff := cmp.Diff(want, summary); diff != "" {
		t.Errorf("invocations (-want +got):\n%s", diff)
	}
	if got := invs[len(invs)-2].Args; !slices.Equal(got, []string{"--kubeconfig", cp2admin, "get", "node", "cp2", "-o", readyJSONPath}) {
		t.Errorf("logged args %q", got)
	}
}

func TestInitOutput(t *testing.T) {
	e := newEnv(t)
	root := e.host(true)
	writeFile(t, root, initPath, initConfigYAML("cp1", "10.0.0.11"), 0o600)
	var phases []string
	var lines []string
	res, err := Runner{Options{StateDir: e.state}}.Run(context.Background(),
		kubeadm.Command{Path: "/usr/bin/kubeadm", Args: []string{"init", "--config", initPath, "--rootfs", root, "--skip-token-print"}},
		func(l string) {
			lines = append(lines, l)
			if p, ok := kubeadm.Phase(l); ok && (len(phases) == 0 || phases[len(phases)-1] != p) {
				phases = append(phases, p)
			}
		})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("init: %v, exit %d:\n%s", err, res.ExitCode, strings.Join(lines, "\n"))
	}
	want := []string{"init", "preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start",
		"wait-control-plane", "kubelet-check", "control-plane-check", "upload-config", "kubelet", "upload-certs",
		"mark-control-plane", "bootstrap-token", "kubelet-finalize", "addons"}
	if diff := cmp.Diff(want, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	all := strings.Join(lines, "\n")
	assertContains(t, all, "[init] Using Kubernetes version: v1.37.2", "Your Kubernetes control-plane has initialized successfully!",
		"--token <value withheld>", "--discovery-token-ca-cert-hash "+e.pki.caHash)
	if strings.Contains(all, testToken) {
		t.Error("--skip-token-print printed the token")
	}
	if len(res.Tail) != kubeadm.TailLines || res.Tail[len(res.Tail)-1] != lines[len(lines)-1] {
		t.Errorf("tail %q", res.Tail)
	}
}

// checkAPIServerCert: the serving certificate is signed by the placed CA and carries
// kubeadm's SANs.
func checkAPIServerCert(t *testing.T, e *env, root string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc/kubernetes/pki/apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.pki.files["/etc/kubernetes/pki/ca.crt"])
	for _, name := range []string{"cp1", "kubernetes.default.svc.cluster.local", "api.test.example.com"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("apiserver cert for %s: %v", name, err)
		}
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"10.96.0.1", "10.0.0.11", "10.0.0.10"}, ips); diff != "" {
		t.Errorf("apiserver IP SANs (-want +got):\n%s", diff)
	}
}

// checkKubeconfig loads a written kubeconfig with client-go, as a real kubectl would, and
// checks that its client certificate chains to the cluster CA.
func checkKubeconfig(t *testing.T, e *env, path string) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("%s: client-go cannot load it: %v", path, err)
	}
	host := strings.TrimPrefix(cfg.Host, "https://")
	if _, _, err := net.SplitHostPort(host); err != nil || !strings.HasPrefix(cfg.Host, "https://") {
		t.Errorf("%s: server %q", path, cfg.Host)
	}
	if base := filepath.Base(path); (base == "admin.conf" || base == "kubelet.conf") && host != testEndpoint {
		t.Errorf("%s: server %q, want the control-plane endpoint", path, cfg.Host)
	}
	block, _ := pem.Decode(cfg.TLSClientConfig.CertData)
	if block == nil {
		t.Fatalf("%s: no client certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.pki.files["/etc/kubernetes/pki/ca.crt"])
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("%s: client certificate: %v", path, err)
	}
	if string(cfg.TLSClientConfig.CAData) != string(e.pki.files["/etc/kubernetes/pki/ca.crt"]) {
		t.Errorf("%s: does not trust the cluster CA", path)
	}
}

// TestResetRemovesEverything: reset leaves a host as it was before init (directories may
// stay, as kubeadm keeps them), takes the node out of the cluster, and may run again.
func TestResetRemovesEverything(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	e.must(e.kubeadm("token", "create", "w1toke.0123456789abcdef", "--kubeconfig", admin))
	w1 := e.host(false)
	writeFile(t, w1, joinPath, joinConfigYAML("w1", "w1toke.0123456789abcdef", e.pki.caHash, ""), 0o600)
	e.must(e.kubeadm("join", "--config", joinPath, "--rootfs", w1))

	for _, tc := range []struct {
		name string
		root string
		left []string
	}{
		{"worker", w1, []string{joinPath, "/etc/deployme/simulated-host.txt"}},
		{"control plane", cp1, []string{initPath, "/etc/deployme/simulated-host.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // the second run finds nothing to do
				out := e.must(e.kubeadm("reset", "--force", "--rootfs", tc.root))
				assertContains(t, out, "[preflight] Running pre-flight checks", "[reset] Deleting contents of directories: [/etc/kubernetes/manifests /var/lib/kubelet /etc/kubernetes/pki]")
				if diff := cmp.Diff(tc.left, listFiles(t, tc.root)); diff != "" {
					t.Errorf("after reset (-want +got):\n%s", diff)
				}
			}
		})
	}
	// The worker is gone from the cluster, then the cluster itself with its last control
	// plane: its endpoint no longer answers.
	if err := (store{e.state}).view(func(st *fakeState) error {
		if len(st.Clusters) != 0 || len(st.Kubeconfigs) != 0 {
			t.Errorf("state after resets: %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A reset host can be initialised again.
	e.pki.place(t, cp1)
	e.must(e.kubeadm("init", "--config", initPath, "--rootfs", cp1))
}

// TestRunnerCancel: an interrupted run returns the context's error promptly.
func TestRunnerCancel(t *testing.T) {
	e := newEnv(t)
	root := e.host(true)
	writeFile(t, root, initPath, initConfigYAML("cp1", "10.0.0.11"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	r := Runner{Options{StateDir: e.state, Delay: func(p string) time.Duration {
		if p == "init/certs" {
			return time.Hour
		}
		return 0
	}}}
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, kubeadm.Command{Path: "kubeadm", Args: []string{"init", "--config", initPath, "--rootfs", root}}, func(l string) {
			if strings.HasPrefix(l, "[certs]") {
				cancel()
			}
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := (Runner{}).Run(context.Background(), kubeadm.Command{Path: "helm"}, nil); err == nil {
		t.Error("running an unknown tool succeeded")
	}
}

// TestRealisticDelays: the timings the simulator relies on.
func TestRealisticDelays(t *testing.T) {
	d := RealisticDelays(1)
	sum := func(prefix string) time.Duration {
		var total time.Duration
		for p := range realistic {
			if strings.HasPrefix(p, prefix) {
				total += d(p)
			}
		}
		return total
	}
	worker := d("join/preflight") + d("join/kubelet-start") + d("join/kubelet-wait-bootstrap")
	for _, tc := range []struct {
		name string
		got  time.Duration
		want time.Duration
	}{
		{"init", sum("init/"), 40 * time.Second},
		{"worker join", worker, 15 * time.Second},
		{"token create", d("token/create"), 300 * time.Millisecond},
		{"kubectl apply", d("kubectl/apply"), time.Second},
		{"node ready", d("node-ready"), 5 * time.Second},
		{"scaled", RealisticDelays(0.1)("node-ready"), 500 * time.Millisecond},
		{"unknown phase", d("init/nonsense"), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestConcurrentHosts: hosts sharing one state directory join in parallel, each with its
// own token, as workers do once init has succeeded.
func TestConcurrentHosts(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	const n = 8
	roots := make([]string, n)
	for i := range roots {
		roots[i] = e.host(false)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 2*n)
	for i := range n {
		wg.Go(func() {
			tok := string(rune('a'+i)) + "token.0123456789abcdef"
			if code, out := e.kubeadm("token", "create", tok, "--kubeconfig", admin); code != 0 {
				errs <- out
				return
			}
			node := "w" + string(rune('a'+i))
			writeFile(t, roots[i], joinPath, joinConfigYAML(node, tok, e.pki.caHash, ""), 0o600)
			if code, out := e.kubeadm("join", "--config", joinPath, "--rootfs", roots[i]); code != 0 {
				errs <- out
			}
		})
	}
	wg.Wait()
	close(errs)
	for out := range errs {
		t.Error(out)
	}
	if err := (store{e.state}).view(func(st *fakeState) error {
		if got := len(st.Clusters[testEndpoint].Nodes); got != n+1 {
			t.Errorf("%d nodes registered, want %d", got, n+1)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	invs, err := Invocations(e.state)
	if err != nil {
		t.Fatal(err)
	}
	if len(invs) != 1+2*n {
		t.Errorf("%d invocations logged, want %d", len(invs), 1+2*n)
	}
}

func TestVersion(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version", "-o", "short"}, "v1.37.2\n"},
		{[]string{"version", "-oshort"}, "v1.37.2\n"},
		{[]string{"version", "--output=short"}, "v1.37.2\n"},
		{[]string{"--rootfs", "/", "version", "-o=short"}, "v1.37.2\n"},
	} {
		if got := e.must(e.kubeadm(tc.args...)); got != tc.want {
			t.Errorf("%q printed %q, want %q", tc.args, got, tc.want)
		}
	}
	out := e.must(e.kubeadm("version", "-o", "json"))
	assertContains(t, out, `"gitVersion": "v1.37.2"`, `"clientVersion"`)
	out = e.must(e.kubeadm("version"))
	assertContains(t, out, `kubeadm version: &version.Info{Major:"1", Minor:"37", GitVersion:"v1.37.2"`)

	var buf strings.Builder
	if code := Kubeadm(context.Background(), []string{"version", "-o", "short"}, Options{StateDir: e.state, Version: "v1.36.4", Stdout: &buf}); code != 0 || buf.String() != "v1.36.4\n" {
		t.Errorf("Version option: exit %d, %q", code, buf.String())
	}
}

// TestDelays: every phase the fake waits in has a realistic duration and the other way
// round, and a node turns Ready only once "node-ready" has passed.
func TestDelays(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	asked := map[string]bool{}
	readyAfter := time.Hour
	e.delay = func(p string) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		asked[p] = true
		if p == "node-ready" {
			return readyAfter
		}
		return 0
	}
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	writeFile(t, cp1, cniPath, cniManifest, 0o644)
	e.must(e.kubectl("--kubeconfig", admin, "apply", "-f", filepath.Join(cp1, cniPath)))
	if out := e.must(e.kubectl("--kubeconfig", admin, "get", "node", "cp1", "-o", readyJSONPath)); out != "False" {
		t.Errorf("Ready before node-ready passed: %q", out)
	}
	mu.Lock()
	readyAfter = 0
	mu.Unlock()
	if out := e.must(e.kubectl("--kubeconfig", admin, "get", "node", "cp1", "-o", readyJSONPath)); out != "True" {
		t.Errorf("not Ready after node-ready passed: %q", out)
	}
	e.must(e.kubeadm("token", "create", "cp2tok.0123456789abcdef", "--kubeconfig", admin))
	cp2 := e.host(true)
	writeFile(t, cp2, joinPath, joinConfigYAML("cp2", "cp2tok.0123456789abcdef", e.pki.caHash, "10.0.0.12"), 0o600)
	e.must(e.kubeadm("join", "--config", joinPath, "--rootfs", cp2))
	e.must(e.kubectl(etcdctlArgs(admin, "cp1", "endpoint", "health", "--cluster", "-w", "json")...))
	for _, root := range []string{cp1, cp2} {
		installBinary(t, root, "kubeadm", "v1.37.3")
	}
	e.must(e.kubeadm("upgrade", "apply", "v1.37.3", "--yes", "--rootfs", cp1))
	e.must(e.kubeadm("upgrade", "node", "--rootfs", cp2))
	e.must(e.kubectl("--kubeconfig", admin, "drain", "cp2", "--ignore-daemonsets"))
	e.must(e.kubectl("--kubeconfig", admin, "delete", "node", "cp2"))
	e.must(e.kubeadm("reset", "--force", "--rootfs", cp2))

	var unknown, unused []string
	for p := range asked {
		if _, ok := realistic[p]; !ok {
			unknown = append(unknown, p)
		}
	}
	for p := range realistic {
		if !asked[p] {
			unused = append(unused, p)
		}
	}
	slices.Sort(unknown)
	slices.Sort(unused)
	if len(unknown) > 0 || len(unused) > 0 {
		t.Errorf("phases without a realistic duration: %v; durations no phase asks for: %v", unknown, unused)
	}
}
