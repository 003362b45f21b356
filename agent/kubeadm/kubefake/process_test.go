package kubefake

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deployme/deployme/agent/kubeadm"
)

// TestBinary builds test/fakekube, installs it as kubeadm and kubectl, and drives a
// cluster through real processes, as the agent's end-to-end tests do.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "kubeadm"), "github.com/deployme/deployme/test/fakekube")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Symlink("kubeadm", filepath.Join(bin, "kubectl")); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	env := []string{"FAKEKUBE_STATE=" + e.state}
	ctx := context.Background()
	run := func(tool string, env []string, args ...string) (kubeadm.Result, string) {
		t.Helper()
		var lines []string
		res, err := kubeadm.ExecRunner{}.Run(ctx, kubeadm.Command{Path: filepath.Join(bin, tool), Args: args, Env: env},
			func(l string) { lines = append(lines, l) })
		if err != nil {
			t.Fatalf("%s %q: %v", tool, args, err)
		}
		return res, strings.Join(lines, "\n")
	}
	must := func(tool string, args ...string) string {
		t.Helper()
		res, out := run(tool, env, args...)
		if res.ExitCode != 0 {
			t.Fatalf("%s %q: exit %d\n%s", tool, args, res.ExitCode, out)
		}
		return out
	}

	if res, out := run("kubeadm", []string{"FAKEKUBE_STATE="}, "version", "-o", "short"); res.ExitCode != 2 || !strings.Contains(out, "FAKEKUBE_STATE is not set") {
		t.Errorf("without FAKEKUBE_STATE: exit %d %q", res.ExitCode, out)
	}
	if out := must("kubeadm", "version", "-o", "short"); out != "v1.37.2" {
		t.Errorf("version %q", out)
	}
	if res, out := run("kubeadm", append(env, "FAKEKUBE_VERSION=v1.36.1"), "version", "-o", "short"); res.ExitCode != 0 || out != "v1.36.1" {
		t.Errorf("FAKEKUBE_VERSION: exit %d %q", res.ExitCode, out)
	}
	if res, out := run("kubeadm", env, "init", "--bogus"); res.ExitCode != 1 || !strings.Contains(out, "error: unknown flag: --bogus") {
		t.Errorf("unknown flag: exit %d %q", res.ExitCode, out)
	}

	cp1 := e.host(true)
	writeFile(t, cp1, initPath, initConfigYAML("cp1", "10.0.0.11"), 0o600)
	out := must("kubeadm", "init", "--config", initPath, "--rootfs", cp1, "--skip-token-print")
	assertContains(t, out, "[certs] Using certificateDir folder", "Your Kubernetes control-plane has initialized successfully!")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	writeFile(t, cp1, cniPath, cniManifest, 0o644)
	must("kubectl", "--kubeconfig", admin, "apply", "-f", filepath.Join(cp1, cniPath))
	must("kubeadm", "token", "create", "w1toke.0123456789abcdef", "--ttl", "15m0s", "--kubeconfig", admin)

	// A failure armed in this process reaches the next one.
	if err := FailNext(e.state, "join", "w1", 1); err != nil {
		t.Fatal(err)
	}
	w1 := e.host(false)
	writeFile(t, w1, joinPath, joinConfigYAML("w1", "w1toke.0123456789abcdef", e.pki.caHash, ""), 0o600)
	if res, out := run("kubeadm", env, "join", "--config", joinPath, "--rootfs", w1); res.ExitCode != 1 || !strings.Contains(out, "connection refused") {
		t.Errorf("armed join: exit %d\n%s", res.ExitCode, out)
	}
	must("kubeadm", "join", "--config", joinPath, "--rootfs", w1)
	if out := must("kubectl", "--kubeconfig", filepath.Join(w1, "etc/kubernetes/kubelet.conf"), "get", "node", "w1", "-o", readyJSONPath); out != "True" {
		t.Errorf("w1 Ready: %q", out)
	}
	if res, out := run("kubectl", env, "--kubeconfig", admin, "get", "node", "ghost"); res.ExitCode != 1 || out != `Error from server (NotFound): nodes "ghost" not found` {
		t.Errorf("unknown node: exit %d %q", res.ExitCode, out)
	}

	// Any other name is refused.
	if err := os.Symlink("kubeadm", filepath.Join(bin, "helm")); err != nil {
		t.Fatal(err)
	}
	if res, out := run("helm", env, "version"); res.ExitCode != 2 || !strings.Contains(out, `run me as "kubeadm" or "kubectl"`) {
		t.Errorf("as helm: exit %d %q", res.ExitCode, out)
	}

	invs, err := Invocations(e.state)
	if err != nil {
		t.Fatal(err)
	}
	// Neither the call without a state directory nor the one as "helm" is a tool run.
	if len(invs) != 10 {
		t.Errorf("%d invocations logged, want 10: %+v", len(invs), invs)
	}
}
