package kubefake

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	clientAuth = x509.ExtKeyUsageClientAuth
	serverAuth = x509.ExtKeyUsageServerAuth
)

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// init runs `kubeadm init --config F [--rootfs R] [--skip-token-print]`.
func (r *run) init(p parsed) error {
	h, err := r.openRoot(p)
	if err != nil {
		return err
	}
	defer h.Close()
	if !p.has("config") {
		return notSimulated("kubeadm init without --config")
	}
	data, err := r.readConfig(h, p)
	if err != nil {
		return err
	}
	c, err := loadInitConfig(data, r.version)
	if err != nil {
		return err
	}
	ignore, err := ignoredChecks(p.slice("ignore-preflight-errors"), c.ignorePreflight)
	if err != nil {
		return err
	}
	r.dryRun = p.boolean("dry-run")
	ns := nodeSetup{
		nodeName: c.nodeName, advertise: c.advertise, bindPort: c.bindPort, criSocket: c.criSocket,
		certDir: c.certDir, etcdDataDir: c.etcdDataDir, serviceSubnet: c.serviceSubnet,
		podSubnet: c.podSubnet, dnsDomain: c.dnsDomain, imageRepo: c.imageRepo,
		version: c.version, controlPlane: true,
	}

	r.printf("[init] Using Kubernetes version: %s\n", c.version)
	r.println("[preflight] Running pre-flight checks")
	if err := r.phase("init/preflight"); err != nil {
		return err
	}
	findings := controlPlaneFindings(h, c.etcdDataDir)
	if c.versionTooNew != "" {
		findings = append([]finding{{"KubernetesVersion", c.versionTooNew}}, findings...)
	}
	if err := r.runChecks(findings, ignore); err != nil {
		return phaseError("preflight", err)
	}
	r.pullImages()
	// An injected failure is used up only by a run that gets this far, so a run refused
	// for its input does not hide it.
	if fail, err := r.store.consumeFailure("init", c.nodeName); err != nil {
		return err
	} else if fail {
		return phaseError("preflight", r.imagePullFailure(ns))
	}

	r.printf("[certs] Using certificateDir folder %q\n", c.certDir)
	if err := r.phase("init/certs"); err != nil {
		return err
	}
	cas, err := loadCAs(h, c.certDir)
	if err != nil {
		return phaseError("certs/ca", fmt.Errorf("%w (fakekube: deployme places the cluster CAs before init; a real kubeadm would have generated new ones)", err))
	}
	for _, f := range caFiles {
		r.printf("[certs] Using existing %s certificate authority\n", f.base)
	}
	if err := r.writeAPIServerCert(h, cas["ca"], ns, c.endpoint, c.certSANs); err != nil {
		return phaseError("certs/apiserver", err)
	}
	r.println(`[certs] Using the existing "sa" key`)

	r.printf("[kubeconfig] Using kubeconfig folder %q\n", kubernetesDir)
	if err := r.phase("init/kubeconfig"); err != nil {
		return err
	}
	confs := append(append(adminConfs(), kubeletConfSpec(c.nodeName)), componentConfs()...)
	for _, cs := range confs {
		r.printf("[kubeconfig] Writing %q kubeconfig file\n", strings.TrimPrefix(cs.file, kubernetesDir+"/"))
		if err := r.writeKubeconfig(h, cas["ca"], c.clusterName, c.endpoint, ns, cs); err != nil {
			return phaseError("kubeconfig", err)
		}
	}

	r.printf("[etcd] Creating static Pod manifest for local etcd in %q\n", manifestsDir)
	if err := r.phase("init/etcd"); err != nil {
		return err
	}
	if err := r.writeEtcd(h, ns); err != nil {
		return phaseError("etcd/local", err)
	}

	if err := r.controlPlanePhase(h, ns, "init/control-plane"); err != nil {
		return err
	}

	if err := r.kubeletStart(h, ns, "init/kubelet-start"); err != nil {
		return err
	}

	r.printf("[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory %q\n", manifestsDir)
	if err := r.waitControlPlane(ns, "init/wait-control-plane"); err != nil {
		return err
	}
	// The API server answers from here on: the cluster and its first node exist.
	if err := r.registerCluster(h, c, cas["ca"], confs); err != nil {
		return phaseError("wait-control-plane", err)
	}

	r.println(`[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace`)
	r.println(`[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the configuration for the kubelets in the cluster`)
	if err := r.phase("init/upload-config"); err != nil {
		return err
	}
	r.println("[upload-certs] Skipping phase. Please see --upload-certs")
	if err := r.phase("init/upload-certs"); err != nil {
		return err
	}
	if err := r.markControlPlane(c.nodeName, c.taints, "init/mark-control-plane"); err != nil {
		return err
	}

	tokens, err := r.bootstrapTokens(c, p.boolean("skip-token-print"))
	if err != nil {
		return phaseError("bootstrap-token", err)
	}

	r.printf("[kubelet-finalize] Updating %q to point to a rotatable kubelet client certificate and key\n", kubeletConf)
	if err := r.phase("init/kubelet-finalize"); err != nil {
		return err
	}
	if err := r.phase("init/addons"); err != nil {
		return err
	}
	r.println("[addons] Applied essential addon: CoreDNS")
	r.println("[addons] Applied essential addon: kube-proxy")

	token := "<value withheld>"
	if !p.boolean("skip-token-print") && len(tokens) > 0 {
		token = tokens[0].String()
	}
	r.printf(initDone, c.endpoint, token, caHash(cas["ca"].cert), c.endpoint, token, caHash(cas["ca"].cert))
	return nil
}

// initDone is kubeadm's closing message for a cluster with a control-plane endpoint and no
// uploaded certificates.
const initDone = `
Your Kubernetes control-plane has initialized successfully!

To start using your cluster, you need to run the following as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
  sudo chown $(id -u):$(id -g) $HOME/.kube/config

Alternatively, if you are the root user, you can run:

  export KUBECONFIG=/etc/kubernetes/admin.conf

You should now deploy a pod network to the cluster.
Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:
  https://kubernetes.io/docs/concepts/cluster-administration/addons/

You can now join any number of control-plane nodes by copying certificate authorities
and service account keys on each node and then running the following as root:

  kubeadm join %s --token %s \
	--discovery-token-ca-cert-hash %s \
	--control-plane 

Then you can join any number of worker nodes by running the following on each as root:

kubeadm join %s --token %s \
	--discovery-token-ca-cert-hash %s 
`

func (r *run) writeAPIServerCert(h *hostFS, ca *keyPair, ns nodeSetup, endpoint string, sans []string) error {
	r.println(`[certs] Generating "apiserver" certificate and key`)
	dnsNames, ips := ns.apiServerSANs(endpoint, sans)
	r.printf("[certs] apiserver serving cert is signed for DNS names %v and IPs %v\n", dnsNames, ips)
	kp, keyPEM, err := issue(ca, "kube-apiserver", nil, serverAuth, dnsNames, ips)
	if err != nil {
		return err
	}
	if err := r.write(h, ns.certDir+"/apiserver.crt", kp.certPEM, 0o644); err != nil {
		return err
	}
	return r.write(h, ns.certDir+"/apiserver.key", keyPEM, 0o600)
}

func (r *run) writeEtcd(h *hostFS, ns nodeSetup) error {
	b, err := ns.staticPod("etcd")
	if err != nil {
		return err
	}
	if err := r.write(h, manifestPath("etcd"), b, 0o600); err != nil {
		return err
	}
	// etcd creates its member directory on first start; it is what makes kubeadm's
	// DirAvailable check fail on a second init.
	return r.mkdir(h, ns.etcdDataDir+"/member")
}

func (r *run) controlPlanePhase(h *hostFS, ns nodeSetup, delay string) error {
	r.printf("[control-plane] Using manifest folder %q\n", manifestsDir)
	if err := r.phase(delay); err != nil {
		return err
	}
	for _, comp := range controlPlaneComponents[:3] {
		r.printf("[control-plane] Creating static Pod manifest for %q\n", comp)
		b, err := ns.staticPod(comp)
		if err != nil {
			return phaseError("control-plane", err)
		}
		if err := r.write(h, manifestPath(comp), b, 0o600); err != nil {
			return phaseError("control-plane", err)
		}
	}
	return nil
}

func (r *run) kubeletStart(h *hostFS, ns nodeSetup, delay string) error {
	r.printf("[kubelet-start] Writing kubelet environment file with flags to file %q\n", kubeletFlagsEnv)
	if err := r.write(h, kubeletFlagsEnv, ns.kubeletFlags(), 0o644); err != nil {
		return phaseError("kubelet-start", err)
	}
	r.printf("[kubelet-start] Writing kubelet configuration to file %q\n", kubeletConfig)
	b, err := ns.kubeletConfigYAML()
	if err != nil {
		return phaseError("kubelet-start", err)
	}
	if err := r.write(h, kubeletConfig, b, 0o644); err != nil {
		return phaseError("kubelet-start", err)
	}
	r.println("[kubelet-start] Starting the kubelet")
	return r.phase(delay)
}

func (r *run) waitControlPlane(ns nodeSetup, delay string) error {
	r.println("[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:10248/healthz. This can take up to 4m0s")
	r.println("[kubelet-check] The kubelet is healthy after 1.001234567s")
	r.println("[control-plane-check] Waiting for healthy control plane components. This can take up to 4m0s")
	r.printf("[control-plane-check] Checking kube-apiserver at https://%s/livez\n", joinHostPort(ns.advertise, ns.bindPort))
	r.println("[control-plane-check] Checking kube-controller-manager at https://127.0.0.1:10257/healthz")
	r.println("[control-plane-check] Checking kube-scheduler at https://127.0.0.1:10259/livez")
	if err := r.phase(delay); err != nil {
		return err
	}
	r.println("[control-plane-check] kube-controller-manager is healthy after 2.002345678s")
	r.println("[control-plane-check] kube-scheduler is healthy after 2.503456789s")
	r.println("[control-plane-check] kube-apiserver is healthy after 4.004567891s")
	return nil
}

func (r *run) markControlPlane(node string, taints []taint, delay string) error {
	r.printf("[mark-control-plane] Marking the node %s as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]\n", node)
	var ts []string
	for _, t := range taints {
		ts = append(ts, t.Key+":"+t.Effect)
	}
	r.printf("[mark-control-plane] Marking the node %s as control-plane by adding the taints %v\n", node, ts)
	return r.phase(delay)
}

// registerCluster makes the new cluster's API server answer: its CA, settings, first node
// and the kubeconfigs init wrote. An earlier cluster at the same endpoint is replaced, as a
// new etcd replaces the old cluster's data.
func (r *run) registerCluster(h *hostFS, c *initConfig, ca *keyPair, confs []confSpec) error {
	if r.dryRun {
		return nil
	}
	now := time.Now()
	return r.store.update(func(st *fakeState) error {
		if st.Clusters == nil {
			st.Clusters = map[string]*cluster{}
		}
		cl := &cluster{
			Endpoint: c.endpoint, Name: c.clusterName, CAHash: caHash(ca.cert), CACert: string(ca.certPEM), CAKey: string(ca.keyPEM),
			Version: c.version, ServiceSubnet: c.serviceSubnet, PodSubnet: c.podSubnet,
			DNSDomain: c.dnsDomain, CertDir: c.certDir, ImageRepo: c.imageRepo, EtcdDataDir: c.etcdDataDir,
			Tokens:       map[string]tokenRecord{},
			SANEndpoints: sanEndpoints(c),
			Nodes: map[string]nodeRecord{c.nodeName: {
				ControlPlane: true, APIEndpoint: joinHostPort(c.advertise, c.bindPort), Root: h.base, RegisteredAt: now,
				KubeletVersion: c.version, ControlPlaneVersion: c.version,
			}},
		}
		// etcd started in the etcd phase, but nothing can see it before the API server
		// answers, so its member is recorded with the cluster.
		cl.startEtcd(c.nodeName, c.advertise)
		st.Clusters[c.endpoint] = cl
		forgetRoot(st, h.base)
		for _, cs := range confs {
			setOwner(st, h.hostPath(cs.file), c.endpoint, c.nodeName)
		}
		return nil
	})
}

func sanEndpoints(c *initConfig) []string {
	_, port, _ := net.SplitHostPort(c.endpoint)
	var out []string
	for _, san := range c.certSANs {
		if e := net.JoinHostPort(san, port); e != c.endpoint && !strings.HasPrefix(san, "*") {
			out = append(out, e)
		}
	}
	return out
}

func setOwner(st *fakeState, hostPath, endpoint, node string) {
	if st.Kubeconfigs == nil {
		st.Kubeconfigs = map[string]kubeconfigOwner{}
	}
	st.Kubeconfigs[hostPath] = kubeconfigOwner{Endpoint: endpoint, Node: node}
}

// bootstrapTokens is init's bootstrap-token phase: the configured tokens, or one random
// token for 24 hours when none is configured, as kubeadm does.
func (r *run) bootstrapTokens(c *initConfig, skipPrint bool) ([]tokenSpec, error) {
	tokens := c.tokens
	if len(tokens) == 0 {
		t, err := randomToken()
		if err != nil {
			return nil, err
		}
		t.ttl, t.usages, t.groups = defaultTokenTTL, []string{"signing", "authentication"}, []string{defaultNodeGroup}
		t.description = "The default bootstrap token generated by 'kubeadm init'."
		tokens = []tokenSpec{t}
	}
	if !skipPrint {
		if len(tokens) == 1 {
			r.printf("[bootstrap-token] Using token: %s\n", tokens[0])
		} else {
			r.printf("[bootstrap-token] Using tokens: %v\n", tokens)
		}
	}
	r.println("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles")
	if err := r.phase("init/bootstrap-token"); err != nil {
		return nil, err
	}
	if !r.dryRun {
		now := time.Now()
		err := r.store.update(func(st *fakeState) error {
			cl := st.Clusters[c.endpoint]
			if cl == nil {
				return fmt.Errorf("error updating or creating token: %w", connectionRefused(c.endpoint))
			}
			if cl.Tokens == nil {
				cl.Tokens = map[string]tokenRecord{}
			}
			for _, t := range tokens {
				cl.Tokens[t.id] = t.record(now)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, l := range []string{
		"[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes",
		"[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials",
		"[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token",
		"[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster",
		"[bootstrap-token] Configured RBAC rules to allow the API server kubelet client certificate to access the kubelet API",
		`[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace`,
	} {
		r.println(l)
	}
	return tokens, nil
}

func (t tokenSpec) record(now time.Time) tokenRecord {
	rec := tokenRecord{Secret: t.secret, Usages: t.usages, Groups: t.groups, Description: t.description, Expires: t.expires}
	if t.expires.IsZero() && t.ttl > 0 {
		rec.Expires = now.Add(t.ttl)
	}
	return rec
}

// randomToken makes a bootstrap token like kubeadm's GenerateBootstrapToken.
func randomToken() (tokenSpec, error) {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 22)
	if _, err := rand.Read(b); err != nil {
		return tokenSpec{}, err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return tokenSpec{id: string(b[:6]), secret: string(b[6:])}, nil
}

// connectionRefused is how a Go client reports a control-plane endpoint nobody answers on.
func connectionRefused(endpoint string) error {
	return fmt.Errorf("dial tcp %s: connect: connection refused", endpoint)
}

// forgetRoot drops the kubeconfig owners of a host root, whose files are being replaced or
// removed.
func forgetRoot(st *fakeState, base string) {
	for p := range st.Kubeconfigs {
		if p == base || strings.HasPrefix(p, strings.TrimSuffix(base, "/")+"/") {
			delete(st.Kubeconfigs, p)
		}
	}
}
