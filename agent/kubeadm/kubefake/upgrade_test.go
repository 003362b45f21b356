package kubefake

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// installBinary puts the stand-in of a kubeadm or kubelet package's binary in a root.
func installBinary(t *testing.T, root, name, version string) {
	t.Helper()
	writeFile(t, root, "/usr/bin/"+name, "fake-kube-binary\nname="+name+"\nversion="+version+"\n", 0o755)
}

func (e *env) nodes() map[string]NodeInfo {
	e.t.Helper()
	ns, err := Nodes(e.state, testEndpoint)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]NodeInfo{}
	for _, n := range ns {
		out[n.Name] = n
	}
	return out
}

func (e *env) clusterVersion() string {
	e.t.Helper()
	v, err := ClusterVersion(e.state, testEndpoint)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// images returns the image of each static Pod in a root.
func images(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, comp := range controlPlaneComponents {
		b, err := os.ReadFile(filepath.Join(root, manifestPath(comp)))
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.SplitSeq(string(b), "\n") {
			if img, ok := strings.CutPrefix(strings.TrimSpace(l), "image: "); ok {
				out[comp] = img
			}
		}
	}
	return out
}

func imagesAt(version string) map[string]string {
	return map[string]string{
		"etcd":                    "registry.k8s.io/etcd:" + etcdImageTag,
		"kube-apiserver":          "registry.k8s.io/kube-apiserver:" + version,
		"kube-controller-manager": "registry.k8s.io/kube-controller-manager:" + version,
		"kube-scheduler":          "registry.k8s.io/kube-scheduler:" + version,
	}
}

// TestUpgrade upgrades a cluster a minor version the way kubeadm's documentation orders
// it: upgrade apply on the first control plane, upgrade node on the others and on the
// workers, each after its kubeadm (and then its kubelet) package was upgraded.
func TestUpgrade(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	cp2 := e.cpJoinHost(admin, "cp2", "10.0.0.12")
	e.must(e.join(cp2))
	w1 := e.joinWorker(admin, "w1")
	want := map[string]NodeInfo{
		"cp1": {Name: "cp1", ControlPlane: true, KubeletVersion: "v1.37.2", ControlPlaneVersion: "v1.37.2"},
		"cp2": {Name: "cp2", ControlPlane: true, KubeletVersion: "v1.37.2", ControlPlaneVersion: "v1.37.2"},
		"w1":  {Name: "w1", KubeletVersion: "v1.37.2"},
	}
	if diff := cmp.Diff(want, e.nodes()); diff != "" {
		t.Fatalf("nodes before (-want +got):\n%s", diff)
	}

	installBinary(t, cp1, "kubeadm", "v1.38.0")
	out := e.must(e.kubeadm("upgrade", "apply", "v1.38.0", "--yes", "--rootfs", cp1))
	assertContains(t, out, "[upgrade/config] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...\n",
		"[upgrade/preflight] You have chosen to upgrade the cluster version to \"v1.38.0\"\n",
		"[upgrade/versions] Cluster version: v1.37.2\n[upgrade/versions] kubeadm version: v1.38.0\n",
		"[upgrade/apply] Upgrading your Static Pod-hosted control plane to version \"v1.38.0\" (timeout: 5m0s)...\n",
		"\n[upgrade] SUCCESS! A control plane node of your cluster was upgraded to \"v1.38.0\".\n")
	if diff := cmp.Diff(imagesAt("v1.38.0"), images(t, cp1)); diff != "" {
		t.Errorf("cp1's static Pods (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(imagesAt("v1.37.2"), images(t, cp2)); diff != "" {
		t.Errorf("apply changed cp2's static Pods (-want +got):\n%s", diff)
	}
	if v := e.clusterVersion(); v != "v1.38.0" {
		t.Errorf("cluster version %s", v)
	}
	// The kubelet package comes after; apply again at the same version is kubeadm's way to
	// retry, and the kubelet now reports its new version.
	installBinary(t, cp1, "kubelet", "v1.38.0")
	e.must(e.kubeadm("upgrade", "apply", "v1.38.0", "-y", "--rootfs", cp1, "--kubeconfig", "/etc/kubernetes/super-admin.conf"))
	want["cp1"] = NodeInfo{Name: "cp1", ControlPlane: true, KubeletVersion: "v1.38.0", ControlPlaneVersion: "v1.38.0"}
	if diff := cmp.Diff(want, e.nodes()); diff != "" {
		t.Errorf("nodes after apply (-want +got):\n%s", diff)
	}

	// The other control plane catches up; its kubelet keeps its version until its package
	// is upgraded.
	installBinary(t, cp2, "kubeadm", "v1.38.0")
	out = e.must(e.kubeadm("upgrade", "node", "--rootfs", cp2))
	assertContains(t, out, "[upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version \"v1.38.0\"...\n",
		"[upgrade] The configuration for this node was successfully upgraded!\n")
	if diff := cmp.Diff(imagesAt("v1.38.0"), images(t, cp2)); diff != "" {
		t.Errorf("cp2's static Pods (-want +got):\n%s", diff)
	}
	want["cp2"] = NodeInfo{Name: "cp2", ControlPlane: true, KubeletVersion: "v1.37.2", ControlPlaneVersion: "v1.38.0"}
	installBinary(t, cp2, "kubelet", "v1.38.0")
	e.must(e.kubeadm("upgrade", "node", "--rootfs", cp2)) // nothing to do: it succeeds
	want["cp2"] = NodeInfo{Name: "cp2", ControlPlane: true, KubeletVersion: "v1.38.0", ControlPlaneVersion: "v1.38.0"}

	// A worker only gets its kubelet configuration; it needs no new kubeadm for that.
	config := filepath.Join(w1, "var/lib/kubelet/config.yaml")
	before, _ := os.ReadFile(config)
	if err := os.WriteFile(config, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = e.must(e.kubeadm("upgrade", "node", "--rootfs", w1))
	assertContains(t, out, "[upgrade/control-plane] Skipping phase. Not a control plane node.\n",
		"[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!\n")
	if after, _ := os.ReadFile(config); string(after) != string(before) {
		t.Errorf("the worker's kubelet configuration:\n%s\nwant:\n%s", after, before)
	}
	if n := e.nodes()["w1"]; n.KubeletVersion != "v1.37.2" {
		t.Errorf("w1's kubelet before its package was upgraded: %+v", n)
	}
	// The agent's order: the kubelet package after kubeadm upgrade node, then a restart
	// the fake cannot see: the installed kubelet is the one that reports.
	installBinary(t, w1, "kubelet", "v1.38.0")
	want["w1"] = NodeInfo{Name: "w1", KubeletVersion: "v1.38.0"}
	if n := e.nodes()["w1"]; n != want["w1"] {
		t.Errorf("w1 after its kubelet was upgraded: %+v", n)
	}
	e.must(e.kubeadm("upgrade", "node", "--rootfs", w1))
	if diff := cmp.Diff(want, e.nodes()); diff != "" {
		t.Errorf("nodes after the upgrade (-want +got):\n%s", diff)
	}
	out = e.must(e.kubectl("--kubeconfig", admin, "get", "node", "w1"))
	assertContains(t, out, " v1.38.0\n")

	// A patch release of the new minor, and nodes joining at the new version.
	installBinary(t, cp1, "kubeadm", "v1.38.2")
	e.must(e.kubeadm("upgrade", "apply", "v1.38.2", "--yes", "--rootfs", cp1))
	w2 := e.joinWorker(admin, "w2")
	if n := e.nodes()["w2"]; n.KubeletVersion != "v1.38.2" {
		t.Errorf("w2 joined as %+v", n)
	}
	manifest, _ := os.ReadFile(filepath.Join(w2, "var/lib/kubelet/config.yaml"))
	if string(manifest) != string(before) {
		t.Errorf("w2's kubelet configuration differs from w1's")
	}

	wantJournal := []string{
		"upgrade-apply " + testEndpoint + " cp1 v1.38.0",
		"upgrade-apply " + testEndpoint + " cp1 v1.38.0",
		"upgrade-node " + testEndpoint + " cp2 v1.38.0",
		"upgrade-node " + testEndpoint + " cp2 v1.38.0",
		"upgrade-node " + testEndpoint + " w1 v1.38.0",
		"upgrade-node " + testEndpoint + " w1 v1.38.0",
		"upgrade-apply " + testEndpoint + " cp1 v1.38.2",
	}
	var got []string
	for _, l := range e.journal() {
		if strings.HasPrefix(l, "upgrade-") {
			got = append(got, l)
		}
	}
	if diff := cmp.Diff(wantJournal, got); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
	if _, err := ClusterVersion(e.state, "10.0.0.99:6443"); !errors.Is(err, ErrNoCluster) {
		t.Errorf("ClusterVersion of nothing: %v", err)
	}
	if v, err := ClusterVersion(e.state, "10.0.0.12:6443"); err != nil || v != "v1.38.2" {
		t.Errorf("ClusterVersion at cp2's API endpoint: %q %v", v, err)
	}
}

// TestUpgradeRefusals: every refused upgrade leaves the cluster, the journal and the
// static Pods as they were.
func TestUpgradeRefusals(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	w1 := e.joinWorker(admin, "w1")
	w2 := e.joinWorker(admin, "w2")
	e.must(e.kubectl("--kubeconfig", admin, "delete", "node", "w2"))
	stranger := e.host(false)
	roots := map[string]string{"cp1": cp1, "w1": w1, "w2": w2, "stranger": stranger}
	kubeadmAt := func(v string) func(*testing.T, string) {
		return func(t *testing.T, root string) { installBinary(t, root, "kubeadm", v) }
	}
	fileAt := func(content string) func(*testing.T, string) {
		return func(t *testing.T, root string) { writeFile(t, root, "/usr/bin/kubeadm", content, 0o755) }
	}
	apply := func(v string, more ...string) []string {
		return append([]string{"upgrade", "apply", v, "--yes", "--rootfs", "ROOT"}, more...)
	}
	fatal := func(problem string) []string {
		return []string{"error: error execution phase preflight: [upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n\t- " + problem + "\n\nPlease fix the misalignments highlighted above and try upgrading again\n"}
	}
	cases := []struct {
		refusal
		host    string                   // the root the case runs on; cp1 by default
		install func(*testing.T, string) // puts binaries in the root's (emptied) /usr
		want2   []string                 // more wanted output
	}{
		{refusal: refusal{name: "no version", args: []string{"upgrade", "apply", "--yes", "--rootfs", "ROOT"},
			want: []string{"error: missing one or more required arguments. Required arguments: [version]\n"}}},
		{refusal: refusal{name: "two versions", args: apply("v1.38.0", "v1.38.1"),
			want: []string{"error: too many arguments. Required arguments: [version]\n"}}},
		{refusal: refusal{name: "not a version", args: apply("1.38"),
			want: []string{`error: version "1.38" doesn't match patterns for neither semantic version nor labels (stable, latest, ...)`}}},
		{refusal: refusal{name: "a label", args: apply("stable-1.38"),
			want: []string{"fakekube: kubeadm upgrade apply stable-1.38 (a version label: the fake cannot look it up) is not simulated"}}},
		{refusal: refusal{name: "unknown flag", args: apply("v1.38.0", "--frobnicate"),
			want: []string{"error: unknown flag: --frobnicate\n"}}},
		{refusal: refusal{name: "real but unsimulated flag", args: apply("v1.38.0", "--dry-run"),
			want: []string{"fakekube: kubeadm upgrade apply --dry-run exists in the real tool but is not simulated"}}},
		{refusal: refusal{name: "force", args: apply("v1.38.0", "-f"),
			want: []string{"fakekube: kubeadm upgrade apply -f exists in the real tool but is not simulated"}}},
		{refusal: refusal{name: "upgrade node has no --yes", args: []string{"upgrade", "node", "--yes", "--rootfs", "ROOT"},
			want: []string{"error: unknown flag: --yes\n"}}},
		{refusal: refusal{name: "upgrade node takes no version", args: []string{"upgrade", "node", "v1.38.0", "--rootfs", "ROOT"},
			want: []string{`error: unknown command "v1.38.0" for "kubeadm upgrade node"`}}},
		{refusal: refusal{name: "words swapped", args: []string{"apply", "upgrade", "v1.38.0", "--yes", "--rootfs", "ROOT"},
			want: []string{`error: unknown command "apply" for "kubeadm"`}}},
		{refusal: refusal{name: "upgrade alone", args: []string{"upgrade", "--rootfs", "ROOT"},
			want: []string{`error: missing subcommand; "upgrade" is not meant to be run on its own`}}},
		{refusal: refusal{name: "upgrade plan", args: []string{"upgrade", "plan", "--rootfs", "ROOT"},
			want: []string{"fakekube: kubeadm upgrade plan is not simulated"}}},
		{refusal: refusal{name: "unknown upgrade command", args: []string{"upgrade", "frobnicate"},
			want: []string{`error: unknown command "frobnicate" for "kubeadm upgrade"`}}},
		{refusal: refusal{name: "no rootfs", args: []string{"upgrade", "apply", "v1.38.0", "--yes"},
			want: []string{"refusing to work on the real host root without --rootfs"}}},
		{refusal: refusal{name: "two minors at once", args: apply("v1.39.0")}, install: kubeadmAt("v1.39.0"),
			want2: fatal(`Specified version to upgrade to "v1.39.0" is too high; kubeadm can upgrade only 1 minor version at a time`)},
		{refusal: refusal{name: "next major", args: apply("v2.0.0")}, install: kubeadmAt("v2.0.0"),
			want2: fatal(`Specified version to upgrade to "v2.0.0" is too high; kubeadm can upgrade only 1 minor version at a time`)},
		{refusal: refusal{name: "downgrade", args: apply("v1.37.1")}, install: kubeadmAt("v1.37.1"),
			want2: fatal(`Specified version to upgrade to "v1.37.1" is equal to or lower than the cluster version "v1.37.2". Downgrades are not supported yet`)},
		{refusal: refusal{name: "no kubeadm installed", args: apply("v1.38.0")},
			want2: fatal(`fakekube: cannot tell which kubeadm is installed: open /usr/bin/kubeadm: no such file or directory (the fake upgrades to v1.38.0 only with a fake-kube-binary artifact of kubeadm v1.38.0 there)`)},
		{refusal: refusal{name: "old kubeadm", args: apply("v1.38.0")}, install: kubeadmAt("v1.37.2"),
			want2: fatal(`Specified version to upgrade to "v1.38.0" is higher than the kubeadm version "v1.37.2". Upgrade kubeadm first using the tool you used to install kubeadm`)},
		{refusal: refusal{name: "another kubeadm", args: apply("v1.38.0")}, install: kubeadmAt("v1.38.1"),
			want2: fatal(`fakekube: the installed kubeadm is v1.38.1: the fake upgrades to v1.38.0 only with kubeadm v1.38.0`)},
		{refusal: refusal{name: "a real binary", args: apply("v1.38.0")}, install: fileAt("\x7fELF\x02\x01\x01"),
			want2: []string{"\t- " + `fakekube: cannot tell which kubeadm is installed: /usr/bin/kubeadm is not a fake-kube-binary artifact` + " (the fake upgrades to v1.38.0 only with a fake-kube-binary artifact of kubeadm v1.38.0 there)\n"}},
		{refusal: refusal{name: "the kubelet's artifact", args: apply("v1.38.0")}, install: fileAt("fake-kube-binary\nname=kubelet\nversion=v1.38.0\n"),
			want2: []string{"\t- " + `fakekube: cannot tell which kubeadm is installed: /usr/bin/kubeadm is the fake-kube-binary artifact of "kubelet", not of "kubeadm"` + " (the fake upgrades to v1.38.0 only with a fake-kube-binary artifact of kubeadm v1.38.0 there)\n"}},
		{refusal: refusal{name: "no version in the artifact", args: apply("v1.38.0")}, install: fileAt("fake-kube-binary\nname=kubeadm\n"),
			want2: []string{"\t- " + `fakekube: cannot tell which kubeadm is installed: /usr/bin/kubeadm has no valid version= line` + " (the fake upgrades to v1.38.0 only with a fake-kube-binary artifact of kubeadm v1.38.0 there)\n"}},
		{refusal: refusal{name: "not confirmed", args: []string{"upgrade", "apply", "v1.38.0", "--rootfs", "ROOT"}}, install: kubeadmAt("v1.38.0"),
			want2: []string{"[upgrade] Are you sure you want to proceed? [y/N]: error: error execution phase preflight: won't proceed; the user didn't answer (Y|y) in order to continue\n"}},
		{refusal: refusal{name: "apply on a worker", args: apply("v1.38.0")}, host: "w1", install: kubeadmAt("v1.38.0"),
			want2: []string{`error: couldn't create a Kubernetes client from file "/etc/kubernetes/admin.conf": failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or directory`}},
		{refusal: refusal{name: "apply on a worker with its kubelet's credentials", args: apply("v1.38.0", "--kubeconfig", "/etc/kubernetes/kubelet.conf")}, host: "w1", install: kubeadmAt("v1.38.0"),
			want2: []string{`error: [upgrade/config] FATAL: failed to getAPIEndpoint: could not retrieve API endpoints for node "w1" using pod annotations: timed out waiting for the condition`}},
		{refusal: refusal{name: "upgrade node on no node", args: []string{"upgrade", "node", "--rootfs", "ROOT"}}, host: "stranger",
			want2: []string{`error: couldn't create a Kubernetes client from file "/etc/kubernetes/kubelet.conf": failed to load admin kubeconfig: open /etc/kubernetes/kubelet.conf: no such file or directory`}},
		{refusal: refusal{name: "upgrade node on a deleted node", args: []string{"upgrade", "node", "--rootfs", "ROOT"}}, host: "w2",
			want2: []string{`error: [upgrade/config] FATAL: failed to get node registration: failed to get corresponding node: nodes "w2" not found`}},
		{refusal: refusal{name: "upgrade node without kubeadm", args: []string{"upgrade", "node", "--rootfs", "ROOT"}},
			want2: fatal(`fakekube: cannot tell which kubeadm is installed: open /usr/bin/kubeadm: no such file or directory (the fake upgrades to v1.37.2 only with a fake-kube-binary artifact of kubeadm v1.37.2 there)`)},
		{refusal: refusal{name: "upgrade node with an old kubeadm", args: []string{"upgrade", "node", "--rootfs", "ROOT"}}, install: kubeadmAt("v1.37.1"),
			want2: fatal(`The cluster version "v1.37.2" is higher than the kubeadm version "v1.37.1". Upgrade kubeadm first using the tool you used to install kubeadm`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == "" {
				host = "cp1"
			}
			root := roots[host]
			if err := os.RemoveAll(filepath.Join(root, "usr")); err != nil {
				t.Fatal(err)
			}
			if tc.install != nil {
				tc.install(t, root)
			}
			r := tc.refusal
			r.want = append(r.want, tc.want2...)
			r.run(t, e, "kubeadm", root)
		})
	}
	if v := e.clusterVersion(); v != "v1.37.2" {
		t.Errorf("cluster version %s after refusals", v)
	}
	if diff := cmp.Diff(imagesAt("v1.37.2"), images(t, cp1)); diff != "" {
		t.Errorf("refusals changed cp1's static Pods (-want +got):\n%s", diff)
	}
	for _, l := range e.journal() {
		if strings.HasPrefix(l, "upgrade") {
			t.Errorf("refusal journaled: %s", l)
		}
	}

	// A control plane missing a static Pod cannot be upgraded; the others stay as they were.
	installBinary(t, cp1, "kubeadm", "v1.38.0")
	scheduler := filepath.Join(cp1, manifestPath("kube-scheduler"))
	saved, _ := os.ReadFile(scheduler)
	os.Remove(scheduler)
	code, out := e.kubeadm("upgrade", "apply", "v1.38.0", "--yes", "--rootfs", cp1)
	if code != exitError || !strings.Contains(out, "error: error execution phase control-plane: couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: failed to read the static Pod manifest of kube-scheduler: open /etc/kubernetes/manifests/kube-scheduler.yaml: no such file or directory\n") {
		t.Errorf("upgrade without a manifest: exit %d\n%s", code, out)
	}
	writeFile(t, cp1, manifestPath("kube-scheduler"), string(saved), 0o600)
	if diff := cmp.Diff(imagesAt("v1.37.2"), images(t, cp1)); diff != "" {
		t.Errorf("a failed upgrade changed cp1's static Pods (-want +got):\n%s", diff)
	}
	if v := e.clusterVersion(); v != "v1.37.2" {
		t.Errorf("cluster version %s after a failed upgrade", v)
	}
}

// TestFailNextUpgrade: an armed upgrade fails reading the cluster's configuration,
// changing nothing; the next one succeeds.
func TestFailNextUpgrade(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	w1 := e.joinWorker(admin, "w1")
	installBinary(t, cp1, "kubeadm", "v1.38.0")
	if err := FailNext(e.state, "upgrade", "cp1", 1); err != nil {
		t.Fatal(err)
	}
	// Another node's upgrade does not use it up.
	e.must(e.kubeadm("upgrade", "node", "--rootfs", w1))
	code, out := e.kubeadm("upgrade", "apply", "v1.38.0", "--yes", "--rootfs", cp1)
	want := "[upgrade/config] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...\n" +
		"[upgrade/config] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n" +
		"error: [upgrade/config] FATAL: failed to get config map: Get \"https://10.0.0.10:6443/api/v1/namespaces/kube-system/configmaps/kubeadm-config?timeout=10s\": dial tcp 10.0.0.10:6443: connect: connection refused\n" +
		"To see the stack trace of this error execute with --v=5 or higher\n"
	if code != exitError || out != want {
		t.Errorf("armed apply: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	if v := e.clusterVersion(); v != "v1.37.2" {
		t.Errorf("cluster version %s after a failed apply", v)
	}
	e.must(e.kubeadm("upgrade", "apply", "v1.38.0", "--yes", "--rootfs", cp1))
	if err := FailNext(e.state, "upgrade", "", 1); err != nil {
		t.Fatal(err)
	}
	if code, out := e.kubeadm("upgrade", "node", "--rootfs", w1); code != exitError || !strings.Contains(out, "connection refused") {
		t.Errorf("armed upgrade node: exit %d\n%s", code, out)
	}
	e.must(e.kubeadm("upgrade", "node", "--rootfs", w1))
	want2 := []string{
		"upgrade-node " + testEndpoint + " w1 v1.37.2",
		"upgrade-apply " + testEndpoint + " cp1 v1.38.0",
		"upgrade-node " + testEndpoint + " w1 v1.38.0",
	}
	if diff := cmp.Diff(want2, e.journal()); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
}

// TestUncordon: a drained node is uncordoned (and counts as drained no more), can be
// drained again, and uncordon refuses what kubectl refuses.
func TestUncordon(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	e.joinWorker(admin, "w1")
	e.must(e.kubectl("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets"))
	if out := e.must(e.kubectl("--kubeconfig", admin, "uncordon", "w1")); out != "node/w1 uncordoned\n" {
		t.Errorf("uncordon printed %q", out)
	}
	if n, _ := e.nodeRecord("w1"); n.Cordoned || n.Drained {
		t.Errorf("after uncordon: %+v", n)
	}
	if n := e.nodes()["w1"]; n.Cordoned {
		t.Errorf("Nodes after uncordon: %+v", n)
	}
	out := e.must(e.kubectl("--kubeconfig", admin, "get", "node", "w1"))
	if strings.Contains(out, "SchedulingDisabled") {
		t.Errorf("get after uncordon:\n%s", out)
	}
	if out := e.must(e.kubectl("--kubeconfig", admin, "uncordon", "w1")); out != "node/w1 already uncordoned\n" {
		t.Errorf("second uncordon printed %q", out)
	}
	if code, out, _ := e.kubectlSplit("--kubeconfig", admin, "drain", "w1", "--ignore-daemonsets"); code != 0 || out != "node/w1 cordoned\nnode/w1 drained\n" {
		t.Errorf("drain after uncordon: exit %d %q", code, out)
	}
	if n := e.nodes()["w1"]; !n.Cordoned {
		t.Errorf("Nodes after the second drain: %+v", n)
	}

	cases := []refusal{
		{name: "no node", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/admin.conf", "uncordon"},
			want: []string{"error: USAGE: uncordon NODE [flags]\nSee 'kubectl uncordon -h' for help and examples\n"}},
		{name: "two nodes", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/admin.conf", "uncordon", "w1", "cp1"},
			want: []string{"fakekube: kubectl uncordon with more than one node is not simulated"}},
		{name: "unknown node", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/admin.conf", "uncordon", "ghost"},
			want: []string{"Error from server (NotFound): nodes \"ghost\" not found\n"}},
		{name: "unknown flag", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/admin.conf", "uncordon", "w1", "--force"},
			want: []string{"error: unknown flag: --force\nSee 'kubectl uncordon --help' for usage.\n"}},
		{name: "selector", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/admin.conf", "uncordon", "-l", "a=b"},
			want: []string{"fakekube: kubectl uncordon -l exists in the real tool but is not simulated"}},
		{name: "dry run", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/admin.conf", "uncordon", "w1", "--dry-run=client"},
			want: []string{"fakekube: kubectl uncordon --dry-run exists in the real tool but is not simulated"}},
		{name: "kubelet may not", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/kubelet.conf", "uncordon", "w1"},
			want: []string{`Error from server (Forbidden): nodes "w1" is forbidden: User "system:node:cp1" cannot patch resource "nodes" in API group "" at the cluster scope`}},
		{name: "no kubeconfig", args: []string{"uncordon", "w1"},
			want: []string{"The connection to the server localhost:8080 was refused - did you specify the right host or port?"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, e, "kubectl", cp1) })
	}
	if n := e.nodes()["w1"]; !n.Cordoned {
		t.Errorf("refusals uncordoned w1: %+v", n)
	}

	// An armed uncordon finds the API server refusing connections, once.
	if err := FailNext(e.state, "uncordon", "w1", 1); err != nil {
		t.Fatal(err)
	}
	code, out := e.kubectl("--kubeconfig", admin, "uncordon", "w1")
	if code != exitError || out != "The connection to the server 10.0.0.10:6443 was refused - did you specify the right host or port?\n" {
		t.Errorf("armed uncordon: exit %d %q", code, out)
	}
	e.must(e.kubectl("--kubeconfig", admin, "uncordon", "w1"))

	want := []string{
		"drain " + testEndpoint + " w1",
		"uncordon " + testEndpoint + " w1",
		"uncordon " + testEndpoint + " w1",
		"drain " + testEndpoint + " w1",
		"uncordon " + testEndpoint + " w1",
	}
	if diff := cmp.Diff(want, e.journal()); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
}
