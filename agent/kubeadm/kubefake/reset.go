package kubefake

import (
	"errors"
	"strings"
)

const manualCleanup = `
The reset process does not perform cleanup of CNI plugin configuration,
network filtering rules and kubeconfig files.

For information on how to perform this cleanup manually, please see:
    https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/

`

// reset runs `kubeadm reset --force [--rootfs R]`: it removes what init and join wrote and
// takes the node out of its cluster. Running it on a clean host changes nothing.
func (r *run) reset(p parsed) error {
	h, err := r.openRoot(p)
	if err != nil {
		return err
	}
	defer h.Close()
	r.dryRun = p.boolean("dry-run")
	ignore, err := ignoredChecks(p.slice("ignore-preflight-errors"), nil)
	if err != nil {
		return err
	}
	endpoint, node := r.nodeOf(h)
	if !p.boolean("force") && !r.dryRun {
		// kubeadm asks on stdin, which a fake (and the agent) never answers.
		r.klogWarning("preflight.go:55", "[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted.")
		r.printf("[reset] Are you sure you want to proceed? [y/N]: ")
		return phaseError("preflight", errors.New("won't proceed; the user didn't answer (Y|y) in order to continue"))
	}

	var certDir, etcdDir string
	var reachable bool
	if err := r.store.view(func(st *fakeState) error {
		if cl := st.clusterAt(endpoint); cl != nil {
			reachable, certDir, etcdDir = true, cl.CertDir, cl.EtcdDataDir
		}
		return nil
	}); err != nil {
		return err
	}
	if reachable && h.exists(adminConf) {
		r.println(`[reset] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...`)
		r.println("[reset] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.")
	}
	if certDir == "" {
		certDir = defaultCertificatesDir
	}
	if etcdDir == "" {
		etcdDir = defaultEtcdDataDir
	}

	r.println("[preflight] Running pre-flight checks")
	if err := r.phase("reset/preflight"); err != nil {
		return err
	}
	if fail, err := r.store.consumeFailure("reset", node); err != nil {
		return err
	} else if fail {
		return phaseError("preflight", r.runChecks([]finding{{"IsPrivilegedUser", "user is not running as root"}}, nil))
	}
	if err := r.runChecks(nil, ignore); err != nil {
		return phaseError("preflight", err)
	}

	if err := r.phase("reset/remove-etcd-member"); err != nil {
		return err
	}
	if h.exists(manifestPath("etcd")) && reachable {
		r.resetEtcdMember(endpoint, node)
	}
	if h.exists(manifestPath("etcd")) || h.dirNotEmpty(etcdDir) {
		if err := r.clean(h, etcdDir); err != nil {
			return phaseError("remove-etcd-member", err)
		}
		r.printf("[reset] Deleted contents of the etcd data directory: %s\n", etcdDir)
	}

	if err := r.phase("reset/cleanup-node"); err != nil {
		return err
	}
	r.println("[reset] Stopping the kubelet service")
	r.printf("[reset] Unmounting mounted directories in %q\n", kubeletDir)
	dirs := []string{manifestsDir, kubeletDir, certDir}
	r.printf("[reset] Deleting contents of directories: %v\n", dirs)
	for _, d := range dirs {
		if err := r.clean(h, d); err != nil {
			return phaseError("cleanup-node", err)
		}
	}
	files := []string{adminConf, superAdminConf, kubeletConf, bootstrapKubelet, controllerConf, schedulerConf}
	r.printf("[reset] Deleting files: %v\n", files)
	for _, f := range files {
		if !r.dryRun {
			if err := h.removeAll(f); err != nil {
				return phaseError("cleanup-node", err)
			}
		}
	}
	if err := r.unregister(h, endpoint, node); err != nil {
		return phaseError("cleanup-node", err)
	}
	r.printf("%s", manualCleanup)
	return nil
}

func (r *run) clean(h *hostFS, dir string) error {
	if r.dryRun {
		return nil
	}
	return h.cleanDir(dir)
}

// nodeOf finds which cluster and node a host belongs to, from its kubelet.conf: the server
// is the control-plane endpoint, the client certificate is "system:node:<name>".
func (r *run) nodeOf(h *hostFS) (endpoint, node string) {
	b, err := h.readFile(kubeletConf)
	if err != nil {
		return "", ""
	}
	cc, err := parseKubeconfig(b)
	if err != nil {
		return "", ""
	}
	if cc.cert != nil {
		node, _ = strings.CutPrefix(cc.cert.Subject.CommonName, "system:node:")
	}
	return cc.endpoint, node
}

// unregister deletes the node from its cluster; a cluster left without a control plane
// has no API server any more and disappears.
func (r *run) unregister(h *hostFS, endpoint, node string) error {
	if r.dryRun {
		return nil
	}
	return r.store.update(func(st *fakeState) error {
		forgetRoot(st, h.base)
		if node != "" {
			st.record("reset", node)
		} else {
			st.record("reset", h.base)
		}
		cl := st.clusterAt(endpoint)
		if cl == nil || node == "" {
			return nil
		}
		if n, ok := cl.Nodes[node]; ok && n.Root == h.base {
			delete(cl.Nodes, node)
		}
		for _, n := range cl.Nodes {
			if n.ControlPlane {
				return nil
			}
		}
		delete(st.Clusters, cl.Endpoint)
		return nil
	})
}
