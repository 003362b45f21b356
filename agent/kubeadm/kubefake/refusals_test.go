package kubefake

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// refusal is one command the fake must refuse: its exit code and what it prints.
type refusal struct {
	name string
	// args are the command's arguments; "ROOT" is replaced by the case's host root.
	args []string
	// setup prepares the host root (after the default content is in place).
	setup func(t *testing.T, e *env, root string)
	want  []string // substrings of the output
}

func (tc refusal) run(t *testing.T, e *env, tool string, root string) {
	t.Helper()
	args := make([]string, len(tc.args))
	for i, a := range tc.args {
		args[i] = strings.ReplaceAll(a, "ROOT", root)
	}
	var code int
	var out string
	if tool == "kubeadm" {
		code, out = e.kubeadm(args...)
	} else {
		code, out = e.kubectl(args...)
	}
	if code != exitError {
		t.Errorf("exit code %d, want %d; output:\n%s", code, exitError, out)
	}
	for _, w := range tc.want {
		w = strings.ReplaceAll(w, "ROOT", root)
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// withInit writes the default init configuration, changed by edit.
func withInit(edit func(string) string) func(*testing.T, *env, string) {
	return func(t *testing.T, e *env, root string) {
		writeFile(t, root, initPath, edit(initConfigYAML("cp1", "10.0.0.11")), 0o600)
	}
}

func replace(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("test config lacks " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

var initArgs = []string{"init", "--config", initPath, "--rootfs", "ROOT", "--skip-token-print"}

func TestInitRefusals(t *testing.T) {
	e := newEnv(t)
	cases := []refusal{
		{name: "no rootfs", args: []string{"init", "--config", initPath},
			want: []string{"error: fakekube: refusing to work on the real host root without --rootfs"}},
		{name: "rootfs missing", args: []string{"init", "--config", initPath, "--rootfs", "ROOT/nonexistent"},
			want: []string{"unable to chroot to ROOT/nonexistent: no such file or directory"}},
		{name: "no config", args: []string{"init", "--rootfs", "ROOT"},
			want: []string{"fakekube: kubeadm init without --config is not simulated"}},
		{name: "config missing", args: initArgs,
			want: []string{`error: unable to read config from "/etc/deployme/kubeadm-init.yaml" : open /etc/deployme/kubeadm-init.yaml: no such file or directory`}},
		{name: "config outside the root is not read", args: []string{"init", "--config", "../../../../../../../../etc/passwd", "--rootfs", "ROOT"},
			want: []string{`unable to read config from "../../../../../../../../etc/passwd" : open /etc/passwd: no such file or directory`}},
		{name: "unknown field", args: initArgs, setup: withInit(replace("  name: cp1", "  nmae: cp1")),
			want: []string{`error unmarshaling configuration schema.GroupVersionKind{Group:"kubeadm.k8s.io", Version:"v1beta4", Kind:"InitConfiguration"}: strict decoding error: unknown field "nodeRegistration.nmae"`}},
		{name: "unknown fields in a list", args: initArgs, setup: withInit(replace("  ttl: 10m0s", "  ttl: 10m0s\n  tll: 1h\n  Description: x")),
			want: []string{`strict decoding error: unknown field "bootstrapTokens[0].Description", unknown field "bootstrapTokens[0].tll"`}},
		{name: "unknown top-level field", args: initArgs, setup: withInit(replace("clusterName: test", "clusterName: test\npodSubnet: 10.0.0.0/8")),
			want: []string{`Kind:"ClusterConfiguration"}: strict decoding error: unknown field "podSubnet"`}},
		{name: "duplicate key", args: initArgs, setup: withInit(replace("clusterName: test", "clusterName: test\nclusterName: other")),
			want: []string{`key "clusterName" already set in map`}},
		{name: "wrong type", args: initArgs, setup: withInit(replace("  bindPort: 6443", "  bindPort: high")),
			want: []string{"error unmarshaling configuration", "cannot unmarshal string"}},
		{name: "bad ttl", args: initArgs, setup: withInit(replace("ttl: 10m0s", "ttl: 10 minutes")),
			want: []string{`time: unknown unit " minutes" in duration "10 minutes"`}},
		{name: "old API version", args: initArgs, setup: withInit(replace("kubeadm.k8s.io/v1beta4\nkind: InitConfiguration", "kubeadm.k8s.io/v1beta3\nkind: InitConfiguration")),
			want: []string{`your configuration file uses an old API spec: "kubeadm.k8s.io/v1beta3" (kind: "InitConfiguration"). Please use kubeadm v1.36 instead`}},
		{name: "no kind", args: initArgs, setup: withInit(replace("kind: InitConfiguration\n", "")),
			want: []string{"invalid configuration for GroupVersionKind {Group:kubeadm.k8s.io Version:v1beta4 Kind:}: kind and apiVersion is mandatory information that must be specified"}},
		{name: "kind twice", args: initArgs, setup: withInit(func(s string) string {
			return s + "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
		}),
			want: []string{`invalid configuration: kind "ClusterConfiguration" is specified twice in YAML file`}},
		{name: "unknown kind", args: initArgs, setup: withInit(func(s string) string { return s + "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfig\n" }),
			want: []string{`unknown configuration schema.GroupVersionKind{Group:"kubeadm.k8s.io", Version:"v1beta4", Kind:"InitConfig"}`}},
		{name: "component config", args: initArgs, setup: withInit(func(s string) string {
			return s + "---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
		}), want: []string{`fakekube: configuration document schema.GroupVersionKind{Group:"kubelet.config.k8s.io", Version:"v1beta1", Kind:"KubeletConfiguration"} (only InitConfiguration and ClusterConfiguration are) is not simulated`}},
		{name: "join kind in init", args: initArgs, setup: withInit(func(s string) string { return s + "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n" }),
			want: []string{"is not simulated"}},
		{name: "older Kubernetes", args: initArgs, setup: withInit(replace("kubernetesVersion: v1.37.2", "kubernetesVersion: v1.36.0")),
			want: []string{"this version of kubeadm only supports deploying clusters with the control plane version >= 1.37.0. Current version: v1.36.0"}},
		{name: "newer Kubernetes", args: initArgs, setup: withInit(replace("kubernetesVersion: v1.37.2", "kubernetesVersion: v1.38.0")),
			want: []string{"\t[ERROR KubernetesVersion]: Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes version: 1.38.0. Kubeadm version: 1.37.x",
				"error: error execution phase preflight: preflight checks failed"}},
		{name: "no Kubernetes version", args: initArgs, setup: withInit(replace("kubernetesVersion: v1.37.2\n", "")),
			want: []string{"kubernetesVersion must be set"}},
		{name: "bad Kubernetes version", args: initArgs, setup: withInit(replace("kubernetesVersion: v1.37.2", "kubernetesVersion: latest-ish")),
			want: []string{`version "latest-ish" doesn't match patterns`}},
		{name: "no endpoint", args: initArgs, setup: withInit(replace("controlPlaneEndpoint: 10.0.0.10:6443\n", "")),
			want: []string{"controlPlaneEndpoint: Required value"}},
		{name: "endpoint without port", args: initArgs, setup: withInit(replace("controlPlaneEndpoint: 10.0.0.10:6443", "controlPlaneEndpoint: 10.0.0.10")),
			want: []string{`controlPlaneEndpoint: Invalid value: "10.0.0.10": endpoint is not valid`}},
		{name: "advertise address not an IP", args: initArgs, setup: withInit(replace("advertiseAddress: 10.0.0.11", "advertiseAddress: cp1.example.com")),
			want: []string{`localAPIEndpoint.advertiseAddress: Invalid value: "cp1.example.com": ip address is not valid`}},
		{name: "no advertise address", args: initArgs, setup: withInit(replace("  advertiseAddress: 10.0.0.11\n", "")),
			want: []string{"localAPIEndpoint.advertiseAddress: Required value"}},
		{name: "bad node name", args: initArgs, setup: withInit(replace("  name: cp1", "  name: CP_1")),
			want: []string{`nodeRegistration.name: Invalid value: "CP_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters`}},
		{name: "no node name", args: initArgs, setup: withInit(replace("  name: cp1\n", "")),
			want: []string{"nodeRegistration: Required value: --node-name or .nodeRegistration.name in the config file is a required value"}},
		{name: "bad pod subnet", args: initArgs, setup: withInit(replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0/33")),
			want: []string{`networking.podSubnet: Invalid value: "10.244.0.0/33": couldn't parse subnet`}},
		{name: "pod subnet too small", args: initArgs, setup: withInit(replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0/26")),
			want: []string{"the size of pod subnet with mask 26 is smaller than the size of node subnet with mask 24"}},
		{name: "bad service subnet", args: initArgs, setup: withInit(replace("serviceSubnet: 10.96.0.0/12", "serviceSubnet: banana")),
			want: []string{`networking.serviceSubnet: Invalid value: "banana": couldn't parse subnet`}},
		{name: "several errors", args: initArgs, setup: withInit(func(s string) string {
			return replace("serviceSubnet: 10.96.0.0/12", "serviceSubnet: banana")(replace("  name: cp1", "  name: CP_1")(s))
		}), want: []string{`error: [nodeRegistration.name: Invalid value: "CP_1"`, `, networking.serviceSubnet: Invalid value: "banana": couldn't parse subnet]`}},
		{name: "bad token", args: initArgs, setup: withInit(replace("token: "+testToken, "token: abcdef.0123")),
			want: []string{`bootstrapTokens[0].token: Invalid value: "abcdef.0123": the bootstrap token is invalid`}},
		{name: "bad cert SAN", args: initArgs, setup: withInit(replace("  - api.test.example.com", "  - api_test")),
			want: []string{`apiServer.certSANs: Invalid value: "api_test": altname is not a valid IP address`}},
		{name: "unknown feature gate", args: initArgs, setup: withInit(replace("clusterName: test", "clusterName: test\nfeatureGates:\n  Foo: true")),
			want: []string{"Foo is not a valid feature name."}},
		{name: "no CA", args: initArgs,
			setup: func(t *testing.T, e *env, root string) {
				withInit(func(s string) string { return s })(t, e, root)
				os.Remove(filepath.Join(root, "etc/kubernetes/pki/ca.crt"))
			},
			want: []string{"error execution phase certs/ca: failure loading certificate for CA: couldn't load the certificate file /etc/kubernetes/pki/ca.crt: open /etc/kubernetes/pki/ca.crt: no such file or directory"}},
		{name: "no CA key", args: initArgs,
			setup: func(t *testing.T, e *env, root string) {
				withInit(func(s string) string { return s })(t, e, root)
				os.Remove(filepath.Join(root, "etc/kubernetes/pki/etcd/ca.key"))
			},
			want: []string{"failure loading certificate for etcd CA: couldn't load the private key file /etc/kubernetes/pki/etcd/ca.key: open /etc/kubernetes/pki/etcd/ca.key: no such file or directory"}},
		{name: "CA and key do not match", args: initArgs,
			setup: func(t *testing.T, e *env, root string) {
				withInit(func(s string) string { return s })(t, e, root)
				writeFile(t, root, "/etc/kubernetes/pki/front-proxy-ca.key", string(e.pki.files["/etc/kubernetes/pki/ca.key"]), 0o600)
			},
			want: []string{"failure loading certificate for front-proxy CA: fakekube: the certificate /etc/kubernetes/pki/front-proxy-ca.crt does not match the private key /etc/kubernetes/pki/front-proxy-ca.key"}},
		{name: "CA not a certificate", args: initArgs,
			setup: func(t *testing.T, e *env, root string) {
				withInit(func(s string) string { return s })(t, e, root)
				writeFile(t, root, "/etc/kubernetes/pki/ca.crt", "garbage", 0o644)
			},
			want: []string{"couldn't load the certificate file /etc/kubernetes/pki/ca.crt: data does not contain any valid RSA or ECDSA certificates"}},
		{name: "service-account keys do not match", args: initArgs,
			setup: func(t *testing.T, e *env, root string) {
				withInit(func(s string) string { return s })(t, e, root)
				writeFile(t, root, "/etc/kubernetes/pki/sa.pub", string(newPKI(t).files["/etc/kubernetes/pki/sa.pub"]), 0o644)
			},
			want: []string{"failure loading key for service account: fakekube: the public key /etc/kubernetes/pki/sa.pub does not match the private key /etc/kubernetes/pki/sa.key"}},
		{name: "leaf certificate as CA", args: initArgs,
			setup: func(t *testing.T, e *env, root string) {
				withInit(func(s string) string { return s })(t, e, root)
				leaf, keyPEM, err := issue(clusterCA(t, e), "not-a-ca", nil, clientAuth, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, root, "/etc/kubernetes/pki/etcd/ca.crt", string(leaf.certPEM), 0o644)
				writeFile(t, root, "/etc/kubernetes/pki/etcd/ca.key", string(keyPEM), 0o600)
			},
			want: []string{"certificate etcd CA is not a CA"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := e.host(true)
			if tc.setup != nil {
				tc.setup(t, e, root)
			}
			tc.run(t, e, "kubeadm", root)
			// A refused init leaves no trace of kubeadm on the host.
			if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/admin.conf")); err == nil {
				t.Error("refused init wrote admin.conf")
			}
		})
	}
}

// clusterCA loads the env's cluster CA with its key, as the fake reads it.
func clusterCA(t *testing.T, e *env) *keyPair {
	t.Helper()
	root := t.TempDir()
	e.pki.place(t, root)
	h, err := openHostFS(root)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	kp, err := loadCertAndKey(h, "/etc/kubernetes/pki", "ca")
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestInitTwiceRefused(t *testing.T) {
	e := newEnv(t)
	root := e.initCluster("cp1", "10.0.0.11")
	before := listFiles(t, root)
	code, out := e.kubeadm(initArgs[0], initArgs[1], initArgs[2], initArgs[3], root)
	if code != exitError {
		t.Fatalf("second init: exit %d\n%s", code, out)
	}
	want := `[init] Using Kubernetes version: v1.37.2
[preflight] Running pre-flight checks
[preflight] Some fatal errors occurred:
	[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already exists
	[ERROR FileAvailable--etc-kubernetes-manifests-kube-controller-manager.yaml]: /etc/kubernetes/manifests/kube-controller-manager.yaml already exists
	[ERROR FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml]: /etc/kubernetes/manifests/kube-scheduler.yaml already exists
	[ERROR FileAvailable--etc-kubernetes-manifests-etcd.yaml]: /etc/kubernetes/manifests/etcd.yaml already exists
	[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty
[preflight] If you know what you are doing, you can make a check non-fatal with ` + "`--ignore-preflight-errors=...`" + `
error: error execution phase preflight: preflight checks failed
To see the stack trace of this error execute with --v=5 or higher
`
	if out != want {
		t.Errorf("second init printed:\n%s\nwant:\n%s", out, want)
	}
	if after := listFiles(t, root); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("refused init changed the host: %v", after)
	}
	// kubeadm's own escape hatch still works, as on a real host.
	e.must(e.kubeadm("init", "--config", initPath, "--rootfs", root, "--ignore-preflight-errors=all"))
	code, out = e.kubeadm("init", "--config", initPath, "--rootfs", root, "--ignore-preflight-errors=all,Port-6443")
	if code != exitError || !strings.Contains(out, `ignore-preflight-errors: Invalid value: "all,port-6443": don't specify individual checks if 'all' is used`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// joinEnv is a cluster with one control plane and tokens for the join cases.
func joinEnv(t *testing.T) (*env, string) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	e.must(e.kubeadm("token", "create", "expire.0123456789abcdef", "--ttl", "1ns", "--kubeconfig", admin))
	e.must(e.kubeadm("token", "create", "nosign.0123456789abcdef", "--usages", "authentication", "--kubeconfig", admin))
	e.must(e.kubeadm("token", "create", "noauth.0123456789abcdef", "--usages", "signing", "--groups", "", "--kubeconfig", admin))
	return e, cp1
}

func withJoin(node, token, hash, address string, edit func(string) string) func(*testing.T, *env, string) {
	return func(t *testing.T, e *env, root string) {
		if hash == "" {
			hash = e.pki.caHash
		}
		if edit == nil {
			edit = func(s string) string { return s }
		}
		writeFile(t, root, joinPath, edit(joinConfigYAML(node, token, hash, address)), 0o600)
	}
}

var joinArgs = []string{"join", "--config", joinPath, "--rootfs", "ROOT"}

func TestJoinRefusals(t *testing.T) {
	e, _ := joinEnv(t)
	otherHash := newPKI(t).caHash
	cases := []refusal{
		{name: "unknown endpoint", args: joinArgs,
			setup: withJoin("w1", testToken, "", "", replace("apiServerEndpoint: 10.0.0.10:6443", "apiServerEndpoint: 10.9.9.9:6443")),
			want:  []string{`error: error execution phase preflight: couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap: Get "https://10.9.9.9:6443/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s": dial tcp 10.9.9.9:6443: connect: connection refused`}},
		{name: "unknown token", args: joinArgs, setup: withJoin("w1", "zzzzzz.0123456789abcdef", "", "", nil),
			want: []string{`couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID "zzzzzz"`}},
		{name: "expired token", args: joinArgs, setup: withJoin("w1", "expire.0123456789abcdef", "", "", nil),
			want: []string{`could not find a JWS signature in the cluster-info ConfigMap for token ID "expire"`}},
		{name: "token that cannot sign", args: joinArgs, setup: withJoin("w1", "nosign.0123456789abcdef", "", "", nil),
			want: []string{`could not find a JWS signature in the cluster-info ConfigMap for token ID "nosign"`}},
		{name: "token that cannot authenticate", args: joinArgs, setup: withJoin("w1", "noauth.0123456789abcdef", "", "", nil),
			want: []string{"error execution phase kubelet-wait-bootstrap: failed while waiting for TLS bootstrap: timed out waiting for the condition"}},
		{name: "wrong secret", args: joinArgs, setup: withJoin("w1", "abcdef.ffffffffffffffff", "", "", nil),
			want: []string{"failed to verify JWS signature of received cluster info object, can't trust this API Server"}},
		{name: "CA not pinned", args: joinArgs, setup: withJoin("w1", testToken, otherHash, "", nil),
			want: []string{`cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "` + e.pki.caHash + `" are pinned`}},
		{name: "malformed CA hash", args: joinArgs, setup: withJoin("w1", testToken, "sha256:abc", "", nil),
			want: []string{`invalid discovery token CA certificate hash: invalid hash "sha256:abc", expected a 32 byte SHA-256 hash, found 1 bytes`}},
		{name: "unknown hash format", args: joinArgs, setup: withJoin("w1", testToken, "md5:abc", "", nil),
			want: []string{`unknown hash format "md5". Known format(s) are: sha256`}},
		{name: "no CA hash", args: joinArgs, setup: withJoin("w1", testToken, "", "", func(s string) string {
			i := strings.Index(s, "    caCertHashes:")
			return s[:i] + s[i+strings.Index(s[i:], "    token:"):]
		}),
			want: []string{"discovery.bootstrapToken.caCertHashes: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe"}},
		{name: "unsafe skip", args: joinArgs, setup: withJoin("w1", testToken, "", "", replace("    token:", "    unsafeSkipCAVerification: true\n    token:")),
			want: []string{"unsafeSkipCAVerification: deployme always pins the cluster CA is not simulated"}},
		{name: "bad token format", args: joinArgs, setup: withJoin("w1", "abcdef", "", "", nil),
			want: []string{`discovery.bootstrapToken.token: Invalid value: "abcdef": the bootstrap token is invalid`}},
		{name: "bad node name", args: joinArgs, setup: withJoin("Worker.1", testToken, "", "", nil),
			want: []string{`nodeRegistration.name: Invalid value: "Worker.1": a lowercase RFC 1123 subdomain`}},
		{name: "node exists", args: joinArgs, setup: withJoin("cp1", testToken, "", "", nil),
			want: []string{`error execution phase kubelet-start: a Node with name "cp1" and status "Ready" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node`}},
		{name: "unknown field", args: joinArgs, setup: withJoin("w1", testToken, "", "", replace("  name: w1", "  name: w1\n  labels: {}")),
			want: []string{`Kind:"JoinConfiguration"}: strict decoding error: unknown field "nodeRegistration.labels"`}},
		{name: "already joined", args: joinArgs,
			setup: func(t *testing.T, e *env, root string) {
				withJoin("w1", testToken, "", "", nil)(t, e, root)
				writeFile(t, root, "/etc/kubernetes/kubelet.conf", "stale", 0o600)
			},
			want: []string{"\t[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: /etc/kubernetes/kubelet.conf already exists", "error execution phase preflight: preflight checks failed"}},
		{name: "worker with a CA in place", args: joinArgs,
			setup: func(t *testing.T, e *env, root string) {
				withJoin("w1", testToken, "", "", nil)(t, e, root)
				e.pki.place(t, root)
			},
			want: []string{"\t[ERROR FileAvailable--etc-kubernetes-pki-ca.crt]: /etc/kubernetes/pki/ca.crt already exists"}},
		{name: "control plane without the CAs", args: joinArgs, setup: withJoin("cp2", testToken, "", "10.0.0.12", nil),
			want: []string{"error execution phase preflight: \nOne or more conditions for hosting a new control plane instance is not satisfied.",
				"failure loading certificate for CA: couldn't load the certificate file /etc/kubernetes/pki/ca.crt: open /etc/kubernetes/pki/ca.crt: no such file or directory",
				"* The certificates that must be shared among control plane instances are provided."}},
		{name: "control plane with another cluster's CAs", args: joinArgs,
			setup: func(t *testing.T, e *env, root string) {
				withJoin("cp2", testToken, "", "10.0.0.12", nil)(t, e, root)
				newPKI(t).place(t, root)
			},
			want: []string{"fakekube: /etc/kubernetes/pki/ca.crt is not the CA of the cluster at 10.0.0.10:6443"}},
		{name: "control plane with a bad address", args: joinArgs, setup: withJoin("cp2", testToken, "", "10.0.0.300", nil),
			want: []string{`controlPlane.localAPIEndpoint.advertiseAddress: Invalid value: "10.0.0.300": ip address is not valid`}},
		{name: "certificate key", args: joinArgs, setup: withJoin("cp2", testToken, "", "10.0.0.12", replace("    bindPort: 6443", "    bindPort: 6443\n  certificateKey: "+strings.Repeat("ab", 32))),
			want: []string{"controlPlane.certificateKey (certificate download)", "is not simulated"}},
		{name: "file discovery", args: joinArgs, setup: withJoin("w1", testToken, "", "", replace("discovery:\n", "discovery:\n  file:\n    kubeConfigPath: /etc/x.conf\n")),
			want: []string{`discovery: Invalid value: "": bootstrapToken and file cannot both be set`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := e.host(false)
			if tc.setup != nil {
				tc.setup(t, e, root)
			}
			tc.run(t, e, "kubeadm", root)
		})
	}
}
