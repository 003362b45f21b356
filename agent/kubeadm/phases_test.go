package kubeadm

import "testing"

func TestPhase(t *testing.T) {
	tests := []struct {
		line   string
		phase  string
		isLine bool
	}{
		{`[init] Using Kubernetes version: v1.37.2`, "init", true},
		{`[preflight] Running pre-flight checks`, "preflight", true},
		{`[certs] Using certificateDir folder "/etc/kubernetes/pki"`, "certs", true},
		{`[kubeconfig] Writing "admin.conf" kubeconfig file`, "kubeconfig", true},
		{`[etcd] Creating static Pod manifest for local etcd in "/etc/kubernetes/manifests"`, "etcd", true},
		{`[control-plane] Creating static Pod manifest for "kube-apiserver"`, "control-plane", true},
		{`[kubelet-start]`, "kubelet-start", true},
		{`[wait-control-plane] Waiting for the kubelet to boot up the control plane`, "wait-control-plane", true},
		{`[control-plane-check] kube-apiserver is healthy after 3.5s`, "control-plane-check", true},
		{`[upload-config] Storing the configuration used in ConfigMap "kubeadm-config"`, "upload-config", true},
		{`[upload-certs] Skipping phase. Please see --upload-certs`, "upload-certs", true},
		{`[mark-control-plane] Marking the node cp1 as control-plane`, "mark-control-plane", true},
		{`[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles`, "bootstrap-token", true},
		{`[kubelet-finalize] Updating "/etc/kubernetes/kubelet.conf"`, "kubelet-finalize", true},
		{`[addons] Applied essential addon: CoreDNS`, "addons", true},
		{`[reset] Deleting contents of directories: [/etc/kubernetes/manifests]`, "reset", true},
		{`[discovery] Trying to connect to API Server "10.0.0.1:6443"`, "discovery", true},
		{"[kubelet-check]\tThe kubelet is healthy", "kubelet-check", true},

		{`[WARNING Swap]: swap is supported for cgroup v2 only`, "", false},
		{"\t[WARNING SystemVerification]: missing optional cgroups: hugetlb", "", false},
		{`[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: already exists`, "", false},
		{"\t[ERROR Port-6443]: Port 6443 is in use", "", false},
		{`I1127 10:00:00.000000    1234 version.go:256] remote version is much newer`, "", false},
		{`W1127 10:00:00.000000    1234 checks.go:846] detected that the sandbox image`, "", false},
		{`error execution phase preflight: preflight checks failed`, "", false},
		{`Your Kubernetes control-plane has initialized successfully!`, "", false},
		{``, "", false},
		{`[`, "", false},
		{`[]`, "", false},
		{`[] empty`, "", false},
		{` [certs] indented`, "", false},
		{`[certs]glued`, "", false},
		{`[Certs] capitalised`, "", false},
		{`[-certs] leading hyphen`, "", false},
		{`[certs-] trailing hyphen`, "", false},
		{`[control--plane] double hyphen`, "", false},
		{`[1phase] leading digit`, "", false},
		{`[a very long sentence in brackets that is not a phase at all] x`, "", false},
		{`[preflight-checks-for-something-that-goes-on-and-on-forever] x`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			phase, ok := Phase(tt.line)
			if phase != tt.phase || ok != tt.isLine {
				t.Errorf("Phase(%q) = %q, %v; want %q, %v", tt.line, phase, ok, tt.phase, tt.isLine)
			}
		})
	}
}
