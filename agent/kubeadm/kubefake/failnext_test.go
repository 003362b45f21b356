package kubefake

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestFailNext(t *testing.T) {
	e := newEnv(t)

	// init: fails in preflight pulling images, touching nothing, once.
	cp1 := e.host(true)
	writeFile(t, cp1, initPath, initConfigYAML("cp1", "10.0.0.11"), 0o600)
	if err := FailNext(e.state, "init", "cp1", 1); err != nil {
		t.Fatal(err)
	}
	before := listFiles(t, cp1)
	code, out := e.kubeadm("init", "--config", initPath, "--rootfs", cp1)
	if code != exitError {
		t.Fatalf("armed init: exit %d\n%s", code, out)
	}
	assertContains(t, out, "[init] Using Kubernetes version: v1.37.2", "[preflight] Pulling images required for setting up a Kubernetes cluster",
		"\t[ERROR ImagePull]: failed to pull image registry.k8s.io/kube-apiserver:v1.37.2", "error: error execution phase preflight: preflight checks failed")
	if after := listFiles(t, cp1); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("failed init changed the host: %v", after)
	}
	e.must(e.kubeadm("init", "--config", initPath, "--rootfs", cp1))
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")

	// token create: for the node whose admin.conf is used.
	if err := FailNext(e.state, "token create", "cp1", 1); err != nil {
		t.Fatal(err)
	}
	code, out = e.kubeadm("token", "create", "w1toke.0123456789abcdef", "--kubeconfig", admin)
	if code != exitError || !strings.Contains(out, "failed to create or update bootstrap token with name bootstrap-token-w1toke: unable to create Secret: Post \"https://10.0.0.10:6443/api/v1/namespaces/kube-system/secrets?timeout=10s\": dial tcp 10.0.0.10:6443: connect: connection refused") {
		t.Errorf("armed token create: exit %d\n%s", code, out)
	}
	e.must(e.kubeadm("token", "create", "w1toke.0123456789abcdef", "--kubeconfig", admin))
	e.must(e.kubeadm("token", "create", "w2toke.0123456789abcdef", "--kubeconfig", admin))

	// join: twice for w1 only; w2 is not affected, a counter for any node comes after.
	if err := FailNext(e.state, "join", "w1", 2); err != nil {
		t.Fatal(err)
	}
	w1, w2 := e.host(false), e.host(false)
	writeFile(t, w1, joinPath, joinConfigYAML("w1", "w1toke.0123456789abcdef", e.pki.caHash, ""), 0o600)
	writeFile(t, w2, joinPath, joinConfigYAML("w2", "w2toke.0123456789abcdef", e.pki.caHash, ""), 0o600)
	e.must(e.kubeadm("join", "--config", joinPath, "--rootfs", w2))
	for i := range 2 {
		code, out := e.kubeadm("join", "--config", joinPath, "--rootfs", w1)
		if code != exitError {
			t.Fatalf("armed join %d: exit %d\n%s", i, code, out)
		}
		want := "[preflight] Running pre-flight checks\n" +
			"error: error execution phase preflight: couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap: " +
			"Get \"https://10.0.0.10:6443/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s\": dial tcp 10.0.0.10:6443: connect: connection refused\n" +
			"To see the stack trace of this error execute with --v=5 or higher\n"
		if out != want {
			t.Errorf("armed join printed:\n%s\nwant:\n%s", out, want)
		}
		if files := listFiles(t, w1); len(files) != 2 {
			t.Errorf("failed join left files: %v", files)
		}
	}
	e.must(e.kubeadm("join", "--config", joinPath, "--rootfs", w1))

	// kubectl apply and get.
	writeFile(t, cp1, cniPath, cniManifest, 0o644)
	if err := FailNext(e.state, "apply", "", 1); err != nil {
		t.Fatal(err)
	}
	code, out = e.kubectl("--kubeconfig", admin, "apply", "-f", filepath.Join(cp1, cniPath))
	if code != exitError || out != "The connection to the server 10.0.0.10:6443 was refused - did you specify the right host or port?\n" {
		t.Errorf("armed apply: exit %d %q", code, out)
	}
	e.must(e.kubectl("--kubeconfig", admin, "apply", "-f", filepath.Join(cp1, cniPath)))
	if err := FailNext(e.state, "get", "w1", 1); err != nil {
		t.Fatal(err)
	}
	w1conf := filepath.Join(w1, "etc/kubernetes/kubelet.conf")
	if code, out := e.kubectl("--kubeconfig", w1conf, "get", "node", "w1", "-o", readyJSONPath); code != exitError {
		t.Errorf("armed get: exit %d %q", code, out)
	}
	if out := e.must(e.kubectl("--kubeconfig", w1conf, "get", "node", "w1", "-o", readyJSONPath)); out != "True" {
		t.Errorf("get after the failure: %q", out)
	}

	// reset: for the node found through the host's kubelet.conf.
	if err := FailNext(e.state, "reset", "w2", 1); err != nil {
		t.Fatal(err)
	}
	code, out = e.kubeadm("reset", "--force", "--rootfs", w2)
	if code != exitError || !strings.Contains(out, "[ERROR IsPrivilegedUser]: user is not running as root") {
		t.Errorf("armed reset: exit %d\n%s", code, out)
	}
	e.must(e.kubeadm("reset", "--force", "--rootfs", w2))

	// Clearing, and refusing what cannot fail.
	if err := FailNext(e.state, "join", "w9", 3); err != nil {
		t.Fatal(err)
	}
	if err := FailNext(e.state, "join", "w9", 0); err != nil {
		t.Fatal(err)
	}
	if err := (store{e.state}).view(func(st *fakeState) error {
		if len(st.Failures) != 0 {
			t.Errorf("failures left: %v", st.Failures)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		sub string
		n   int
	}{{"version", 1}, {"token", 1}, {"join", -1}} {
		if err := FailNext(e.state, bad.sub, "", bad.n); err == nil {
			t.Errorf("FailNext(%q, %d) accepted", bad.sub, bad.n)
		}
	}
}
