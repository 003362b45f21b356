package kubefake

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTokenCreateRefusals runs against a cluster whose first control plane is ROOT.
func TestTokenCreateRefusals(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := "ROOT/etc/kubernetes/admin.conf"

	// A kubeconfig with a client certificate from a CA the cluster does not know.
	other := newEnv(t)
	strangerRoot := other.host(true)
	h, err := openHostFS(strangerRoot)
	if err != nil {
		t.Fatal(err)
	}
	strangerCA, err := loadCertAndKey(h, "/etc/kubernetes/pki", "ca")
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	ca := clusterCA(t, e)
	stranger := func(t *testing.T, e *env, root string) {
		kp, key, err := issue(strangerCA, "mallory", []string{"kubeadm:cluster-admins"}, clientAuth, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := renderKubeconfig("test", "https://"+testEndpoint, ca.certPEM, "mallory", kp.certPEM, key)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, root, "/stranger.conf", string(b), 0o600)
		b, err = renderKubeconfig("test", "https://"+testEndpoint, strangerCA.certPEM, "mallory", kp.certPEM, key)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, root, "/untrusting.conf", string(b), 0o600)
		conf, _ := os.ReadFile(filepath.Join(root, "etc/kubernetes/admin.conf"))
		writeFile(t, root, "/elsewhere.conf", strings.Replace(string(conf), testEndpoint, "10.0.0.99:6443", 1), 0o600)
	}

	cases := []refusal{
		{name: "bad token", args: []string{"token", "create", "abc", "--kubeconfig", admin},
			want: []string{`error: the bootstrap token "abc" was not of the form "\\A([a-z0-9]{6})\\.([a-z0-9]{16})\\z"`}},
		{name: "existing token", args: []string{"token", "create", testToken, "--kubeconfig", admin},
			want: []string{`error: a token with id "abcdef" already exists`}},
		{name: "missing kubeconfig", args: []string{"token", "create", "--kubeconfig", "ROOT/nonexistent.conf"},
			want: []string{"failed to load admin kubeconfig: open ROOT/nonexistent.conf: no such file or directory"}},
		{name: "default kubeconfig inside rootfs", args: []string{"token", "create", "--rootfs", "ROOT/etc"},
			want: []string{"failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or directory"}},
		{name: "kubelet credentials", args: []string{"token", "create", "--kubeconfig", "ROOT/etc/kubernetes/kubelet.conf"},
			want: []string{`unable to create Secret: secrets is forbidden: User "system:node:cp1" cannot create resource "secrets" in API group "" in the namespace "kube-system"`}},
		{name: "client certificate from another CA", args: []string{"token", "create", "--kubeconfig", "ROOT/stranger.conf"}, setup: stranger,
			want: []string{"failed to create or update bootstrap token with name bootstrap-token-", "unable to create Secret: Unauthorized"}},
		{name: "server not trusted", args: []string{"token", "create", "--kubeconfig", "ROOT/untrusting.conf"}, setup: stranger,
			want: []string{"x509: certificate signed by unknown authority"}},
		{name: "no cluster there", args: []string{"token", "create", "qwerty.0123456789abcdef", "--kubeconfig", "ROOT/elsewhere.conf"}, setup: stranger,
			want: []string{`failed to create or update bootstrap token with name bootstrap-token-qwerty: unable to create Secret: Post "https://10.0.0.99:6443/api/v1/namespaces/kube-system/secrets?timeout=10s": dial tcp 10.0.0.99:6443: connect: connection refused`}},
		{name: "bad usage", args: []string{"token", "create", "--usages", "signing,frobnicate", "--kubeconfig", admin},
			want: []string{"invalid bootstrap token usage string: frobnicate, valid usage options: signing,authentication"}},
		{name: "groups without authentication", args: []string{"token", "create", "--usages", "signing", "--kubeconfig", admin},
			want: []string{`token groups cannot be specified unless --usages includes "authentication"`}},
		{name: "bad group", args: []string{"token", "create", "--groups", "system:masters", "--kubeconfig", admin},
			want: []string{`bootstrap group "system:masters" is invalid`}},
		{name: "bad ttl", args: []string{"token", "create", "--ttl", "fortnight", "--kubeconfig", admin},
			want: []string{`error: invalid argument "fortnight" for "--ttl" flag: time: invalid duration "fortnight"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t, e, cp1)
			}
			tc.run(t, e, "kubeadm", cp1)
		})
	}

	// A dry run checks everything and creates nothing.
	e.must(e.kubeadm("token", "create", "dryrun.0123456789abcdef", "--dry-run", "--kubeconfig", filepath.Join(cp1, "etc/kubernetes/admin.conf")))
	e.must(e.kubeadm("token", "create", "dryrun.0123456789abcdef", "--kubeconfig", filepath.Join(cp1, "etc/kubernetes/admin.conf")))
	// --rootfs resolves --kubeconfig inside the root, as the chrooted kubeadm does.
	out := e.must(e.kubeadm("token", "create", "--rootfs", cp1, "--kubeconfig", "/etc/kubernetes/super-admin.conf", "--ttl", "0"))
	if !tokenRE.MatchString(strings.TrimSpace(out)) {
		t.Errorf("generated token %q", out)
	}
}

func TestKubectlRefusals(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := "ROOT/etc/kubernetes/admin.conf"
	manifest := func(content string) func(*testing.T, *env, string) {
		return func(t *testing.T, e *env, root string) { writeFile(t, root, "/m.yaml", content, 0o644) }
	}
	cases := []refusal{
		{name: "no apiVersion or kind", args: []string{"--kubeconfig", admin, "apply", "-f", "ROOT/m.yaml"},
			setup: manifest("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\nmetadata:\n  name: b\n"),
			want:  []string{`error: error validating "ROOT/m.yaml": error validating data: [apiVersion not set, kind not set]; if you choose to ignore these errors, turn validation off with --validate=false`}},
		{name: "no kind", args: []string{"--kubeconfig", admin, "apply", "-f", "ROOT/m.yaml"},
			setup: manifest("apiVersion: v1\nmetadata:\n  name: b\n"),
			want:  []string{"error validating data: [kind not set]"}},
		{name: "no name", args: []string{"--kubeconfig", admin, "apply", "-f", "ROOT/m.yaml"},
			setup: manifest("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  namespace: kube-flannel\n"),
			want:  []string{`error when retrieving current configuration of:`, `Resource: "daemonset.apps"`, "resource name may not be empty"}},
		{name: "not YAML", args: []string{"--kubeconfig", admin, "apply", "-f", "ROOT/m.yaml"},
			setup: manifest("kind: [unclosed\n"),
			want:  []string{"error: error parsing ROOT/m.yaml: error converting YAML to JSON"}},
		{name: "no file flag", args: []string{"--kubeconfig", admin, "apply"},
			want: []string{"error: must specify one of -f and -k"}},
		{name: "missing file", args: []string{"--kubeconfig", admin, "apply", "-f", "ROOT/none.yaml"},
			want: []string{`error: the path "ROOT/none.yaml" does not exist`}},
		{name: "kubelet may not apply", args: []string{"--kubeconfig", "ROOT/etc/kubernetes/kubelet.conf", "apply", "-f", "ROOT/m.yaml"},
			setup: manifest(cniManifest),
			want:  []string{`Error from server (Forbidden): error when creating "ROOT/m.yaml": namespace "kube-flannel" is forbidden: User "system:node:cp1" cannot create resource "namespace"`}},
		{name: "unknown node", args: []string{"--kubeconfig", admin, "get", "node", "ghost", "-o", readyJSONPath},
			want: []string{`Error from server (NotFound): nodes "ghost" not found`}},
		{name: "no kubeconfig", args: []string{"get", "node", "cp1"},
			want: []string{"The connection to the server localhost:8080 was refused - did you specify the right host or port?"}},
		{name: "missing kubeconfig", args: []string{"--kubeconfig", "ROOT/none.conf", "get", "node", "cp1"},
			want: []string{"error: stat ROOT/none.conf: no such file or directory"}},
		{name: "other jsonpath", args: []string{"--kubeconfig", admin, "get", "node", "cp1", "-o", "jsonpath={.metadata.name}"},
			want: []string{"is not simulated"}},
		{name: "bad output", args: []string{"--kubeconfig", admin, "get", "node", "cp1", "-o", "fancy"},
			want: []string{`error: unable to match a printer suitable for the output format "fancy"`}},
		{name: "other resource", args: []string{"--kubeconfig", admin, "get", "pods", "x"},
			want: []string{"fakekube: kubectl get pods is not simulated"}},
		{name: "unknown command", args: []string{"--kubeconfig", admin, "frobnicate"},
			want: []string{`error: unknown command "frobnicate" for "kubectl"`}},
		{name: "unsimulated command", args: []string{"--kubeconfig", admin, "cordon", "cp1"},
			want: []string{"fakekube: kubectl cordon is not simulated"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t, e, cp1)
			}
			tc.run(t, e, "kubectl", cp1)
		})
	}
	// None of the refused applies counts as the CNI.
	if err := (store{e.state}).view(func(st *fakeState) error {
		if cl := st.Clusters[testEndpoint]; !cl.CNIAppliedAt.IsZero() || len(cl.Objects) > 0 {
			t.Errorf("refused applies were recorded: %+v", cl.Objects)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestResetRefusals(t *testing.T) {
	e := newEnv(t)
	cases := []refusal{
		{name: "without force", args: []string{"reset", "--rootfs", "ROOT"},
			want: []string{"[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted.",
				"[reset] Are you sure you want to proceed? [y/N]: ", "won't proceed; the user didn't answer (Y|y) in order to continue"}},
		{name: "without rootfs", args: []string{"reset", "--force"},
			want: []string{"refusing to work on the real host root without --rootfs"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := e.host(false)
			writeFile(t, root, "/etc/kubernetes/manifests/kube-apiserver.yaml", "kept", 0o600)
			tc.run(t, e, "kubeadm", root)
			if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/manifests/kube-apiserver.yaml")); err != nil {
				t.Errorf("refused reset removed files: %v", err)
			}
		})
	}
	// -f is --force's shorthand; --dry-run removes nothing.
	root := e.host(false)
	writeFile(t, root, "/etc/kubernetes/manifests/kube-apiserver.yaml", "kept", 0o600)
	e.must(e.kubeadm("reset", "-f", "--dry-run", "--rootfs", root))
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/manifests/kube-apiserver.yaml")); err != nil {
		t.Errorf("dry run removed files: %v", err)
	}
	e.must(e.kubeadm("reset", "-f", "--rootfs", root))
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/manifests/kube-apiserver.yaml")); err == nil {
		t.Error("reset -f kept the manifest")
	}
}

// TestFlags: each subcommand takes exactly the flags the real one has (of those deployme
// uses), in all of pflag's spellings.
func TestFlags(t *testing.T) {
	e := newEnv(t)
	cases := []refusal{
		{name: "init has no --kubeconfig", args: []string{"init", "--kubeconfig", "/etc/kubernetes/admin.conf"}, want: []string{"error: unknown flag: --kubeconfig\nTo see the stack trace of this error execute with --v=5 or higher"}},
		{name: "init has no --force", args: []string{"init", "--force"}, want: []string{"unknown flag: --force"}},
		{name: "init has no --ttl", args: []string{"init", "--ttl=10m"}, want: []string{"unknown flag: --ttl"}},
		{name: "join has no --skip-token-print", args: []string{"join", "--skip-token-print"}, want: []string{"unknown flag: --skip-token-print"}},
		{name: "join has no --force", args: []string{"join", "-f"}, want: []string{"unknown shorthand flag: 'f' in -f"}},
		{name: "reset has no --skip-token-print", args: []string{"reset", "--skip-token-print"}, want: []string{"unknown flag: --skip-token-print"}},
		{name: "token create has no --force", args: []string{"token", "create", "--force"}, want: []string{"unknown flag: --force"}},
		{name: "token create has no --config here", args: []string{"token", "create", "--config", "x"}, want: []string{"fakekube: kubeadm token create --config exists in the real tool but is not simulated"}},
		{name: "version has no --kubeconfig", args: []string{"version", "--kubeconfig", "x"}, want: []string{"unknown flag: --kubeconfig"}},
		{name: "unknown shorthand", args: []string{"version", "-x"}, want: []string{"unknown shorthand flag: 'x' in -x"}},
		{name: "missing value", args: []string{"init", "--config"}, want: []string{"flag needs an argument: --config"}},
		{name: "missing shorthand value", args: []string{"version", "-o"}, want: []string{"flag needs an argument: 'o' in -o"}},
		{name: "bad bool", args: []string{"init", "--dry-run=maybe"}, want: []string{`invalid argument "maybe" for "--dry-run" flag: strconv.ParseBool: parsing "maybe": invalid syntax`}},
		{name: "bad shorthand bool", args: []string{"reset", "-f=maybe"}, want: []string{`invalid argument "maybe" for "-f, --force" flag`}},
		{name: "unknown flag", args: []string{"init", "--foo"}, want: []string{"unknown flag: --foo"}},
		{name: "real but unsimulated", args: []string{"init", "--token", "abcdef.0123456789abcdef"}, want: []string{"fakekube: kubeadm init --token exists in the real tool but is not simulated"}},
		{name: "verbosity", args: []string{"init", "-v=5"}, want: []string{"fakekube: kubeadm init -v exists in the real tool but is not simulated"}},
		{name: "bad output", args: []string{"version", "-o", "xml"}, want: []string{"error: invalid output format: xml"}},
		{name: "unknown command", args: []string{"frobnicate"}, want: []string{`error: unknown command "frobnicate" for "kubeadm"`}},
		{name: "unknown token command", args: []string{"token", "frobnicate"}, want: []string{`unknown command "frobnicate" for "kubeadm token"`}},
		{name: "token alone", args: []string{"token"}, want: []string{`missing subcommand; "token" is not meant to be run on its own`}},
		{name: "unsimulated command", args: []string{"token", "list"}, want: []string{"fakekube: kubeadm token list is not simulated"}},
		{name: "unsimulated certs", args: []string{"certs", "renew", "all"}, want: []string{"fakekube: kubeadm certs is not simulated"}},
		{name: "stray argument", args: []string{"init", "now", "--config", "x"}, want: []string{`unknown command "now" for "kubeadm init"`}},
		{name: "no command", args: []string{"--rootfs", "/x"}, want: []string{"kubeadm without a subcommand is not simulated"}},
		{name: "rootfs missing", args: []string{"version", "--rootfs", "ROOT/none"}, want: []string{"error: unable to chroot to ROOT/none: no such file or directory"}},
	}
	for _, tc := range cases {
		t.Run("kubeadm "+tc.name, func(t *testing.T) { tc.run(t, e, "kubeadm", t.TempDir()) })
	}
	kubectlCases := []refusal{
		{name: "apply has no --ttl", args: []string{"apply", "--ttl", "1m", "-f", "x"}, want: []string{"error: unknown flag: --ttl\nSee 'kubectl apply --help' for usage."}},
		{name: "get has no --force", args: []string{"get", "node", "x", "--force"}, want: []string{"unknown flag: --force\nSee 'kubectl get --help' for usage."}},
		{name: "apply -o is real but unsimulated", args: []string{"apply", "-o", "yaml", "-f", "x"}, want: []string{"fakekube: kubectl apply -o exists in the real tool but is not simulated"}},
		{name: "get -f is real but unsimulated", args: []string{"get", "-f", "x"}, want: []string{"fakekube: kubectl get -f exists in the real tool but is not simulated"}},
		{name: "no --rootfs in kubectl", args: []string{"--rootfs", "/x", "get", "node", "x"}, want: []string{"unknown flag: --rootfs"}},
		{name: "namespace", args: []string{"-n", "kube-system", "get", "node", "x"}, want: []string{"fakekube: kubectl -n exists in the real tool but is not simulated"}},
	}
	for _, tc := range kubectlCases {
		t.Run("kubectl "+tc.name, func(t *testing.T) { tc.run(t, e, "kubectl", t.TempDir()) })
	}
	// Every spelling of the same flags parses the same.
	cmd := kubeadmCommands[3] // token create
	for _, args := range [][]string{
		{"--ttl", "15m0s", "--usages", "signing", "--usages", "authentication", "tok", "--dry-run"},
		{"--ttl=15m0s", "--usages=signing,authentication", "--dry-run=true", "tok"},
		{"tok", "--usages", "signing,authentication", "--ttl", "15m0s", "--dry-run", "--", "--not-a-flag"},
	} {
		p, err := parseFlags(cmd, kubeadmRootFlags, kubeadmRootUnsimulated, args)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		ttl, _ := p.duration("ttl")
		got := []string{ttl.String(), strings.Join(p.slice("usages"), ","), p.args[0]}
		if want := []string{"15m0s", "signing,authentication", "tok"}; !cmp.Equal(want, got) || !p.boolean("dry-run") {
			t.Errorf("%q parsed as %q dry-run=%v", args, got, p.boolean("dry-run"))
		}
	}
}

// TestNeverWritesOutsideRoot: a symlink planted in the root cannot lead kubeadm out.
func TestNeverWritesOutsideRoot(t *testing.T) {
	e := newEnv(t)
	root := e.host(true)
	writeFile(t, root, initPath, initConfigYAML("cp1", "10.0.0.11"), 0o600)
	outside := t.TempDir()
	rel, err := filepath.Rel(filepath.Join(root, "etc/kubernetes"), outside)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(root, "etc/kubernetes/manifests")); err != nil {
		t.Fatal(err)
	}
	code, out := e.kubeadm("init", "--config", initPath, "--rootfs", root)
	if code != exitError || !strings.Contains(out, "path escapes from parent") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if left := listFiles(t, outside); len(left) > 0 {
		t.Errorf("wrote outside the root: %v", left)
	}
}

// TestAllowHostRoot: only an explicit option lets init touch "/"; the fake then works on
// "/" like the real tool (here only as far as reading a config that does not exist).
func TestAllowHostRoot(t *testing.T) {
	e := newEnv(t)
	var out strings.Builder
	code := Kubeadm(t.Context(), []string{"init", "--config", "/nonexistent/deployme-kubefake-test.yaml"},
		Options{StateDir: e.state, Stdout: &out, AllowHostRoot: true})
	if code != exitError || !strings.Contains(out.String(), `unable to read config from "/nonexistent/deployme-kubefake-test.yaml"`) {
		t.Errorf("exit %d:\n%s", code, out.String())
	}
}
