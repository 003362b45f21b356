package kubefake

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// notReadyForControlPlane is kubeadm's refusal to host a control plane on a node that
// lacks the shared certificates.
const notReadyForControlPlane = `
One or more conditions for hosting a new control plane instance is not satisfied.

%v

Please ensure that:
* The cluster has a stable controlPlaneEndpoint address.
* The certificates that must be shared among control plane instances are provided.

`

// join runs `kubeadm join --config F [--rootfs R]`.
func (r *run) join(p parsed) error {
	h, err := r.openRoot(p)
	if err != nil {
		return err
	}
	defer h.Close()
	if !p.has("config") {
		return notSimulated("kubeadm join without --config")
	}
	data, err := r.readConfig(h, p)
	if err != nil {
		return err
	}
	c, err := loadJoinConfig(data)
	if err != nil {
		return err
	}
	ignore, err := ignoredChecks(p.slice("ignore-preflight-errors"), c.ignorePreflight)
	if err != nil {
		return err
	}
	r.dryRun = p.boolean("dry-run")

	r.println("[preflight] Running pre-flight checks")
	if err := r.phase("join/preflight"); err != nil {
		return err
	}
	var findings []finding
	for _, f := range []string{kubeletConf, bootstrapKubelet} {
		if h.exists(f) {
			findings = append(findings, finding{fileAvailableName(f), f + " already exists"})
		}
	}
	if !c.controlPlane && h.exists(c.caCertPath) {
		findings = append(findings, finding{fileAvailableName(c.caCertPath), c.caCertPath + " already exists"})
	}
	if err := r.runChecks(findings, ignore); err != nil {
		return phaseError("preflight", err)
	}
	if fail, err := r.store.consumeFailure("join", c.nodeName); err != nil {
		return err
	} else if fail {
		// An unreachable API server: the usual real failure, and one that leaves the host
		// untouched.
		return phaseError("preflight", fmt.Errorf("couldn't validate the identity of the API Server: %w", clusterInfoUnreachable(c.endpoint)))
	}
	cl, err := r.discover(c)
	if err != nil {
		return phaseError("preflight", fmt.Errorf("couldn't validate the identity of the API Server: %w", err))
	}
	r.println(`[preflight] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...`)
	r.println("[preflight] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.")

	ns := nodeSetup{
		nodeName: c.nodeName, advertise: c.advertise, bindPort: c.bindPort, criSocket: c.criSocket,
		certDir: cl.CertDir, etcdDataDir: cl.EtcdDataDir, serviceSubnet: cl.ServiceSubnet,
		podSubnet: cl.PodSubnet, dnsDomain: cl.DNSDomain, imageRepo: cl.ImageRepo,
		version: cl.Version, controlPlane: c.controlPlane,
	}
	if c.controlPlane {
		if err := r.prepareControlPlane(h, c, cl, ns, ignore); err != nil {
			return err
		}
	}

	if err := r.phase("join/kubelet-start"); err != nil {
		return err
	}
	if _, ok := cl.Nodes[c.nodeName]; ok {
		return phaseError("kubelet-start", fmt.Errorf("a Node with name %q and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node", c.nodeName))
	}
	if !c.controlPlane {
		// The worker learns the cluster CA from discovery and keeps it for the kubelet.
		if err := r.write(h, c.caCertPath, []byte(cl.CACert), 0o644); err != nil {
			return phaseError("kubelet-start", err)
		}
	}
	r.printf("[kubelet-start] Writing kubelet configuration to file %q\n", kubeletConfig)
	b, err := ns.kubeletConfigYAML()
	if err != nil {
		return phaseError("kubelet-start", err)
	}
	if err := r.write(h, kubeletConfig, b, 0o644); err != nil {
		return phaseError("kubelet-start", err)
	}
	r.printf("[kubelet-start] Writing kubelet environment file with flags to file %q\n", kubeletFlagsEnv)
	if err := r.write(h, kubeletFlagsEnv, ns.kubeletFlags(), 0o644); err != nil {
		return phaseError("kubelet-start", err)
	}
	r.println("[kubelet-start] Starting the kubelet")

	if c.controlPlane {
		if err := r.joinEtcd(h, c, ns); err != nil {
			return err
		}
	}

	r.println("[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:10248/healthz. This can take up to 4m0s")
	r.println("[kubelet-check] The kubelet is healthy after 1.001234567s")
	r.println("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
	if err := r.phase("join/kubelet-wait-bootstrap"); err != nil {
		return err
	}
	if err := r.tlsBootstrap(h, c, cl, ns); err != nil {
		return phaseError("kubelet-wait-bootstrap", err)
	}

	if !c.controlPlane {
		r.printf("%s", joinWorkerDone)
		return nil
	}
	if err := r.markControlPlane(c.nodeName, defaultTaints(c.taints), "join/control-plane-join"); err != nil {
		return err
	}
	if err := r.waitControlPlane(ns, "join/wait-control-plane"); err != nil {
		return err
	}
	r.printf("%s", joinControlPlaneDone)
	return nil
}

const joinWorkerDone = `
This node has joined the cluster:
* Certificate signing request was sent to apiserver and a response was received.
* The Kubelet was informed of the new secure connection details.

Run 'kubectl get nodes' on the control-plane to see this node join the cluster.

`

const joinControlPlaneDone = `
This node has joined the cluster and a new control plane instance was created:

* Certificate signing request was sent to apiserver and approval was received.
* The Kubelet was informed of the new secure connection details.
* Control plane label and taint were applied to the new node.
* The Kubernetes control plane instances scaled up.
* A new etcd member was added to the local/stacked etcd cluster.

To start administering your cluster from this node, you need to run the following as a regular user:

	mkdir -p $HOME/.kube
	sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
	sudo chown $(id -u):$(id -g) $HOME/.kube/config

Run 'kubectl get nodes' to see this node join the cluster.

`

func defaultTaints(t []taint) []taint {
	if t == nil {
		return []taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}}
	}
	return t
}

func clusterInfoUnreachable(endpoint string) error {
	return fmt.Errorf("failed to request the cluster-info ConfigMap: Get \"https://%s/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s\": %w", endpoint, connectionRefused(endpoint))
}

// discover is token discovery: fetch cluster-info from the endpoint, check the token's
// JWS signature on it, then pin the CA, failing as kubeadm's discovery/token does.
func (r *run) discover(c *joinConfig) (*cluster, error) {
	var cl *cluster
	if err := r.store.view(func(st *fakeState) error {
		cl = st.clusterAt(c.endpoint)
		return nil
	}); err != nil {
		return nil, err
	}
	if cl == nil {
		return nil, clusterInfoUnreachable(c.endpoint)
	}
	id, secret, _ := strings.Cut(c.token, ".")
	tok, ok := cl.Tokens[id]
	// The token cleaner deletes expired tokens, and only "signing" tokens sign cluster-info.
	if !ok || !tok.valid(time.Now()) || !slices.Contains(tok.Usages, "signing") {
		return nil, fmt.Errorf("could not find a JWS signature in the cluster-info ConfigMap for token ID %q", id)
	}
	pins, err := parsePins(c.caCertHashes)
	if err != nil {
		return nil, fmt.Errorf("invalid discovery token CA certificate hash: %w", err)
	}
	if secret != tok.Secret {
		return nil, errors.New("failed to verify JWS signature of received cluster info object, can't trust this API Server")
	}
	if !pins[strings.TrimPrefix(cl.CAHash, "sha256:")] {
		return nil, fmt.Errorf("cluster CA found in cluster-info ConfigMap is invalid: none of the public keys %q are pinned", cl.CAHash)
	}
	return cl, nil
}

// parsePins validates caCertHashes the way kubeadm's pubkeypin.Set.Allow does.
func parsePins(hashes []string) (map[string]bool, error) {
	pins := map[string]bool{}
	for _, h := range hashes {
		parts := strings.Split(h, ":")
		if len(parts) != 2 {
			return nil, errors.New(`invalid hash, expected "format:hex-value". Known format(s) are: sha256`)
		}
		if strings.ToLower(parts[0]) != "sha256" {
			return nil, fmt.Errorf("unknown hash format %q. Known format(s) are: sha256", parts[0])
		}
		if n := hex.DecodedLen(len(parts[1])); n != 32 {
			return nil, fmt.Errorf("invalid hash %q, expected a 32 byte SHA-256 hash, found %d bytes", h, n)
		}
		if _, err := hex.DecodeString(parts[1]); err != nil {
			return nil, fmt.Errorf("invalid hash %q, could not decode SHA-256 from hex: %v", h, err)
		}
		pins[strings.ToLower(parts[1])] = true
	}
	return pins, nil
}

// prepareControlPlane is the control-plane part of join: the shared CAs must be in place
// and be the cluster's, then certificates, kubeconfigs and manifests are written.
func (r *run) prepareControlPlane(h *hostFS, c *joinConfig, cl *cluster, ns nodeSetup, ignore map[string]bool) error {
	cas, err := loadCAs(h, cl.CertDir)
	if err == nil && caHash(cas["ca"].cert) != cl.CAHash {
		err = fmt.Errorf("fakekube: %s/ca.crt is not the CA of the cluster at %s (its hash is %s, the cluster's %s)", cl.CertDir, cl.Endpoint, caHash(cas["ca"].cert), cl.CAHash)
	}
	if err != nil {
		return phaseError("preflight", fmt.Errorf(notReadyForControlPlane, err))
	}
	r.println("[preflight] Running pre-flight checks before initializing the new control plane instance")
	if err := r.runChecks(controlPlaneFindings(h, cl.EtcdDataDir), ignore); err != nil {
		return phaseError("preflight", err)
	}
	r.pullImages()
	if err := r.phase("join/control-plane-prepare"); err != nil {
		return err
	}
	r.printf("[certs] Using certificateDir folder %q\n", cl.CertDir)
	if err := r.writeAPIServerCert(h, cas["ca"], ns, cl.Endpoint, nil); err != nil {
		return phaseError("control-plane-prepare/certs", err)
	}
	r.printf("[certs] Valid certificates and keys now exist in %q\n", cl.CertDir)
	r.println(`[certs] Using the existing "sa" key`)
	r.println("[kubeconfig] Generating kubeconfig files")
	r.printf("[kubeconfig] Using kubeconfig folder %q\n", kubernetesDir)
	for _, cs := range append(adminConfs()[:1], componentConfs()...) {
		r.printf("[kubeconfig] Writing %q kubeconfig file\n", strings.TrimPrefix(cs.file, kubernetesDir+"/"))
		if err := r.writeKubeconfig(h, cas["ca"], cl.Name, cl.Endpoint, ns, cs); err != nil {
			return phaseError("control-plane-prepare/kubeconfig", err)
		}
	}
	if err := r.controlPlanePhase(h, ns, "join/control-plane"); err != nil {
		return err
	}
	r.println("[check-etcd] Checking that the etcd cluster is healthy")
	return r.phase("join/check-etcd")
}

// tlsBootstrap stands in for the kubelet's TLS bootstrap: the token must still be valid
// and allowed to authenticate; the kubelet then gets its client certificate, written into
// kubelet.conf, and the node registers.
func (r *run) tlsBootstrap(h *hostFS, c *joinConfig, cl *cluster, ns nodeSetup) error {
	if r.dryRun {
		return nil
	}
	// The cluster's certificate signer (kube-controller-manager, holding the CA key)
	// answers the kubelet's CSR.
	ca, err := cl.ca()
	if err != nil {
		return err
	}
	spec := kubeletConfSpec(c.nodeName)
	kp, keyPEM, err := issue(ca, spec.user, spec.orgs, clientAuth, nil, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := renderKubeconfig(cl.Name, "https://"+cl.Endpoint, ca.certPEM, spec.user, kp.certPEM, keyPEM)
	if err != nil {
		return err
	}
	now := time.Now()
	id, _, _ := strings.Cut(c.tlsToken, ".")
	err = r.store.update(func(st *fakeState) error {
		cur := st.clusterAt(c.endpoint)
		if cur == nil {
			return fmt.Errorf("failed while waiting for TLS bootstrap: %w", connectionRefused(c.endpoint))
		}
		tok, ok := cur.Tokens[id]
		if !ok || !tok.valid(now) || !slices.Contains(tok.Usages, "authentication") {
			return errors.New("failed while waiting for TLS bootstrap: timed out waiting for the condition")
		}
		if _, taken := cur.Nodes[c.nodeName]; taken {
			return fmt.Errorf("a Node with name %q and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node", c.nodeName)
		}
		if cur.Nodes == nil {
			cur.Nodes = map[string]nodeRecord{}
		}
		rec := nodeRecord{ControlPlane: c.controlPlane, Root: h.base, RegisteredAt: now, KubeletVersion: cur.Version}
		if c.controlPlane {
			rec.APIEndpoint = joinHostPort(c.advertise, c.bindPort)
			rec.ControlPlaneVersion = cur.Version
		}
		cur.Nodes[c.nodeName] = rec
		forgetRoot(st, h.base)
		files := []string{kubeletConf}
		if c.controlPlane {
			files = append(files, adminConf, controllerConf, schedulerConf)
		}
		for _, f := range files {
			setOwner(st, h.hostPath(f), cur.Endpoint, c.nodeName)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return h.writeFile(kubeletConf, kubeconfig, 0o600)
}
