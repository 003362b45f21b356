package kubefake

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"sigs.k8s.io/yaml"
)

// kubeadm upgrade apply and upgrade node. The versions involved are the cluster's (its
// kubeadm-config), each control plane's static Pods', each kubelet's, and the installed
// kubeadm's and kubelet's, read from the fake-kube-binary artifacts described in the
// package comment.

// Where the packages put the binaries, and the first line of the fake's stand-ins.
const (
	kubeadmBinary = "/usr/bin/kubeadm"
	kubeletBinary = "/usr/bin/kubelet"
	artifactMagic = "fake-kube-binary"
)

// installedVersion reads the version of the fake-kube-binary artifact of the named binary
// at p in the root. Only the head of the file is read: on a real root it is a real binary.
func installedVersion(h *hostFS, p, name string) (string, error) {
	b, err := h.readHead(p, 4096)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if lines[0] != artifactMagic {
		return "", fmt.Errorf("%s is not a %s artifact", p, artifactMagic)
	}
	fields := map[string]string{}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, "="); ok {
			fields[k] = v
		}
	}
	if fields["name"] != name {
		return "", fmt.Errorf("%s is the %s artifact of %q, not of %q", p, artifactMagic, fields["name"], name)
	}
	if _, ok := parseVersion(fields["version"]); !ok {
		return "", fmt.Errorf("%s has no valid version= line", p)
	}
	return fields["version"], nil
}

// compareVersions orders two parsed versions like cmp.Compare.
func compareVersions(a, b semver) int {
	for _, d := range []int{a.major - b.major, a.minor - b.minor, a.patch - b.patch} {
		switch {
		case d < 0:
			return -1
		case d > 0:
			return 1
		}
	}
	return 0
}

// upgradeHost is what kubeadm upgrade finds on the host before it asks the cluster.
type upgradeHost struct {
	h    *hostFS
	cc   *clientConfig
	node string
}

// openUpgradeHost opens the root and reads the kubeconfig (inside the root, as for a
// chrooted kubeadm) and the node's name, from kubelet.conf.
func (r *run) openUpgradeHost(p parsed, defaultKubeconfig func(*hostFS) string) (*upgradeHost, error) {
	h, err := r.openRoot(p)
	if err != nil {
		return nil, err
	}
	u := &upgradeHost{h: h}
	kubeconfig := p.str("kubeconfig")
	if kubeconfig == "" {
		kubeconfig = defaultKubeconfig(h)
	}
	data, err := h.readFile(path.Join("/", kubeconfig))
	if err == nil {
		u.cc, err = parseKubeconfig(data)
	}
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("couldn't create a Kubernetes client from file %q: failed to load admin kubeconfig: %w", kubeconfig, err)
	}
	if _, err := h.readFile(kubeletConf); err != nil {
		h.Close()
		return nil, fmt.Errorf("[upgrade/config] FATAL: failed to get node registration: failed to get node name from kubelet config: %w", err)
	}
	if _, u.node = r.nodeOf(h); u.node == "" {
		h.Close()
		return nil, fmt.Errorf("[upgrade/config] FATAL: failed to get node registration: failed to get node name from kubelet config: %s holds no node client certificate", kubeletConf)
	}
	return u, nil
}

// readClusterConfig is kubeadm reading the kubeadm-config ConfigMap, where an armed
// "upgrade" failure finds the API server refusing connections.
func (r *run) readClusterConfig(u *upgradeHost) error {
	r.println(`[upgrade/config] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...`)
	r.println("[upgrade/config] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.")
	fail, err := r.store.consumeFailure("upgrade", u.node)
	if err != nil {
		return err
	}
	if fail {
		return configMapUnreachable(u.cc.endpoint)
	}
	return nil
}

func configMapUnreachable(endpoint string) error {
	return fmt.Errorf("[upgrade/config] FATAL: failed to get config map: Get \"https://%s/api/v1/namespaces/kube-system/configmaps/kubeadm-config?timeout=10s\": %w", endpoint, connectionRefused(endpoint))
}

// upgradeView is the cluster and node as upgrade finds them through the API server.
type upgradeView struct {
	version string
	node    nodeRecord
	// kubelet holds what the cluster's kubelet configuration is made of.
	kubelet nodeSetup
}

func (r *run) viewForUpgrade(u *upgradeHost) (*upgradeView, error) {
	var v *upgradeView
	err := r.store.view(func(st *fakeState) error {
		cl := st.clusterAt(u.cc.endpoint)
		if cl == nil {
			return configMapUnreachable(u.cc.endpoint)
		}
		if _, _, err := authenticate(cl, u.cc); err != nil {
			return fmt.Errorf("[upgrade/config] FATAL: failed to get config map: %w", err)
		}
		n, ok := cl.Nodes[u.node]
		if !ok {
			return fmt.Errorf("[upgrade/config] FATAL: failed to get node registration: failed to get corresponding node: nodes %q not found", u.node)
		}
		v = &upgradeView{version: cl.Version, node: n, kubelet: nodeSetup{certDir: cl.CertDir, serviceSubnet: cl.ServiceSubnet, dnsDomain: cl.DNSDomain}}
		return nil
	})
	return v, err
}

// versionFatal is how kubeadm reports version-skew policy violations.
func versionFatal(problems []string) error {
	var b strings.Builder
	b.WriteString("[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n")
	for _, p := range problems {
		fmt.Fprintf(&b, "\t- %s\n", p)
	}
	b.WriteString("\nPlease fix the misalignments highlighted above and try upgrading again")
	return errors.New(b.String())
}

// kubeadmSkew checks that the installed kubeadm is the one for target; subject names the
// target in the message. It returns the installed version when it could read one.
func kubeadmSkew(h *hostFS, target, subject string) (string, []string) {
	kv, err := installedVersion(h, kubeadmBinary, "kubeadm")
	if err != nil {
		return "", []string{fmt.Sprintf("fakekube: cannot tell which kubeadm is installed: %v (the fake upgrades to %s only with a %s artifact of kubeadm %s there)", err, target, artifactMagic, target)}
	}
	if kv == target {
		return kv, nil
	}
	have, _ := parseVersion(kv)
	want, _ := parseVersion(target)
	if compareVersions(have, want) < 0 {
		return kv, []string{fmt.Sprintf("%s is higher than the kubeadm version %q. Upgrade kubeadm first using the tool you used to install kubeadm", subject, kv)}
	}
	return kv, []string{fmt.Sprintf("fakekube: the installed kubeadm is %s: the fake upgrades to %s only with kubeadm %s", kv, target, target)}
}

// upgradeApply runs `kubeadm upgrade apply VERSION --yes [--rootfs R] [--kubeconfig K]`
// on a control plane: the cluster moves to VERSION, starting with this node's static Pods.
func (r *run) upgradeApply(p parsed) error {
	if err := exactArgs(p.args, "version"); err != nil {
		return err
	}
	var target string
	for _, a := range p.args {
		target = max(target, a) // the one argument that is not empty
	}
	tv, ok := parseVersion(target)
	if !ok {
		if isVersionLabel(target) {
			return notSimulated("kubeadm upgrade apply " + target + " (a version label: the fake cannot look it up)")
		}
		return fmt.Errorf("version %q doesn't match patterns for neither semantic version nor labels (stable, latest, ...)", target)
	}
	u, err := r.openUpgradeHost(p, func(*hostFS) string { return adminConf })
	if err != nil {
		return err
	}
	defer u.h.Close()
	if err := r.readClusterConfig(u); err != nil {
		return err
	}
	v, err := r.viewForUpgrade(u)
	if err != nil {
		return err
	}
	if !v.node.ControlPlane {
		return fmt.Errorf("[upgrade/config] FATAL: failed to getAPIEndpoint: could not retrieve API endpoints for node %q using pod annotations: timed out waiting for the condition", u.node)
	}

	r.println("[upgrade/preflight] Running preflight checks")
	r.println("[upgrade] Running cluster health checks")
	r.printf("[upgrade/preflight] You have chosen to upgrade the cluster version to %q\n", target)
	r.printf("[upgrade/versions] Cluster version: %s\n", v.version)
	cv, _ := parseVersion(v.version)
	var problems []string
	switch c := compareVersions(tv, cv); {
	case c < 0:
		problems = append(problems, fmt.Sprintf("Specified version to upgrade to %q is equal to or lower than the cluster version %q. Downgrades are not supported yet", target, v.version))
	case tv.major != cv.major || tv.minor > cv.minor+1:
		problems = append(problems, fmt.Sprintf("Specified version to upgrade to %q is too high; kubeadm can upgrade only 1 minor version at a time", target))
	}
	kv, skew := kubeadmSkew(u.h, target, fmt.Sprintf("Specified version to upgrade to %q", target))
	if kv != "" {
		r.printf("[upgrade/versions] kubeadm version: %s\n", kv)
	}
	if problems = append(problems, skew...); len(problems) > 0 {
		return phaseError("preflight", versionFatal(problems))
	}
	if !p.boolean("yes") {
		// kubeadm asks on stdin, which a fake (and the agent) never answers.
		r.printf("[upgrade] Are you sure you want to proceed? [y/N]: ")
		return phaseError("preflight", errors.New("won't proceed; the user didn't answer (Y|y) in order to continue"))
	}
	r.println("[upgrade/preflight] Pulling images required for setting up a Kubernetes cluster")
	r.println("[upgrade/preflight] This might take a minute or two, depending on the speed of your internet connection")
	r.println("[upgrade/preflight] You can also perform this action beforehand using 'kubeadm config images pull'")

	r.printf("[upgrade/apply] Upgrading your Static Pod-hosted control plane to version %q (timeout: 5m0s)...\n", target)
	if err := r.upgradeThisNode(u, v, target, "upgrade/apply"); err != nil {
		return err
	}
	if err := r.recordUpgrade(u, "upgrade-apply", target, true); err != nil {
		return phaseError("upload-config", err)
	}
	r.println("[upgrade/bootstrap-token] Configuring bootstrap token and cluster-info RBAC rules")
	r.println("[addons] Applied essential addon: CoreDNS")
	r.println("[addons] Applied essential addon: kube-proxy")
	r.printf("\n[upgrade] SUCCESS! A control plane node of your cluster was upgraded to %q.\n\n", target)
	r.println("[upgrade] Now please proceed with upgrading the rest of the nodes by following the right order.")
	return nil
}

// upgradeNode runs `kubeadm upgrade node [--rootfs R] [--kubeconfig K]`: a control plane
// catches up with the cluster's version; a worker only gets the cluster's kubelet
// configuration again.
func (r *run) upgradeNode(p parsed) error {
	// kubeadm tells a control plane by its API server manifest; a worker has no admin.conf
	// and uses the kubelet's credentials.
	u, err := r.openUpgradeHost(p, func(h *hostFS) string {
		if h.exists(manifestPath("kube-apiserver")) {
			return adminConf
		}
		return kubeletConf
	})
	if err != nil {
		return err
	}
	defer u.h.Close()
	if err := r.readClusterConfig(u); err != nil {
		return err
	}
	v, err := r.viewForUpgrade(u)
	if err != nil {
		return err
	}
	target := v.version
	r.println("[upgrade/preflight] Running pre-flight checks")
	if !v.node.ControlPlane {
		r.println("[upgrade/preflight] Skipping prepull. Not a control plane node.")
		r.println("[upgrade/control-plane] Skipping phase. Not a control plane node.")
		if err := r.phase("upgrade/node"); err != nil {
			return err
		}
		if err := r.upgradeKubeletConfig(u, v); err != nil {
			return err
		}
	} else {
		var problems []string
		own, _ := parseVersion(v.node.controlPlaneVersion(v.version))
		cv, _ := parseVersion(v.version)
		if compareVersions(own, cv) > 0 {
			problems = append(problems, fmt.Sprintf("The control plane of node %q runs %s, newer than the cluster version %q. Downgrades are not supported yet", u.node, v.node.ControlPlaneVersion, target))
		}
		_, skew := kubeadmSkew(u.h, target, fmt.Sprintf("The cluster version %q", target))
		if problems = append(problems, skew...); len(problems) > 0 {
			return phaseError("preflight", versionFatal(problems))
		}
		r.println("[upgrade/preflight] Pulling images required for setting up a Kubernetes cluster")
		r.println("[upgrade/preflight] This might take a minute or two, depending on the speed of your internet connection")
		r.println("[upgrade/preflight] You can also perform this action beforehand using 'kubeadm config images pull'")
		r.printf("[upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version %q...\n", target)
		if err := r.upgradeThisNode(u, v, target, "upgrade/node"); err != nil {
			return err
		}
	}
	if err := r.recordUpgrade(u, "upgrade-node", target, false); err != nil {
		return phaseError("kubelet-config", err)
	}
	if !v.node.ControlPlane {
		r.println("[upgrade/addon] Skipping the addon/coredns phase. Not a control plane node.")
		r.println("[upgrade/addon] Skipping the addon/kube-proxy phase. Not a control plane node.")
	}
	r.println("[upgrade] The configuration for this node was successfully upgraded!")
	r.println("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.")
	return nil
}

// upgradeThisNode moves this control plane's static Pods to version and rewrites its
// kubelet configuration, after the phase's simulated duration. Every manifest is read and
// checked before any is written, so a failure leaves the node as it was.
func (r *run) upgradeThisNode(u *upgradeHost, v *upgradeView, version, delay string) error {
	manifests, err := upgradedManifests(u.h, version)
	if err != nil {
		return phaseError("control-plane", fmt.Errorf("couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: %w", err))
	}
	if !u.h.exists(kubeletConfig) {
		return phaseError("kubelet-config", fmt.Errorf("failed to back up the kubelet configuration: open %s: no such file or directory", kubeletConfig))
	}
	if err := r.phase(delay); err != nil {
		return err
	}
	for _, comp := range controlPlaneComponents[:3] {
		if err := u.h.writeFile(manifestPath(comp), manifests[comp], 0o600); err != nil {
			return phaseError("control-plane", err)
		}
		r.printf("[upgrade/staticpods] Component %q upgraded successfully!\n", comp)
	}
	r.println("[upgrade/control-plane] The control plane instance for this node was successfully upgraded!")
	return r.upgradeKubeletConfig(u, v)
}

// upgradeKubeletConfig writes the cluster's kubelet configuration again, as every
// upgrade's kubelet-config phase does.
func (r *run) upgradeKubeletConfig(u *upgradeHost, v *upgradeView) error {
	if !u.h.exists(kubeletConfig) {
		return phaseError("kubelet-config", fmt.Errorf("failed to back up the kubelet configuration: open %s: no such file or directory", kubeletConfig))
	}
	b, err := v.kubelet.kubeletConfigYAML()
	if err == nil {
		err = u.h.writeFile(kubeletConfig, b, 0o644)
	}
	if err != nil {
		return phaseError("kubelet-config", err)
	}
	r.printf("[kubelet-start] Writing kubelet configuration to file %q\n", kubeletConfig)
	r.println("[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!")
	return nil
}

// recordUpgrade stores what an upgrade changed: the node's versions and, for apply, the
// cluster's. The kubelet reports the version of the kubelet installed on the host, when
// that is a fake-kube-binary artifact.
func (r *run) recordUpgrade(u *upgradeHost, line, version string, apply bool) error {
	kubelet, _ := installedVersion(u.h, kubeletBinary, "kubelet")
	return r.store.update(func(st *fakeState) error {
		cl := st.clusterAt(u.cc.endpoint)
		if cl == nil {
			return connectionRefused(u.cc.endpoint)
		}
		n, ok := cl.Nodes[u.node]
		if !ok {
			return fmt.Errorf("nodes %q not found", u.node)
		}
		if apply {
			cl.Version = version
		}
		if n.ControlPlane {
			n.ControlPlaneVersion = version
		}
		if kubelet != "" {
			n.KubeletVersion = kubelet
		}
		cl.Nodes[u.node] = n
		st.record(line, cl.Endpoint, u.node, version)
		return nil
	})
}

// upgradedManifests returns this node's control-plane static Pods with their images moved
// to version (etcd keeps its own).
func upgradedManifests(h *hostFS, version string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, comp := range controlPlaneComponents[:3] {
		p := manifestPath(comp)
		b, err := h.readFile(p)
		if err != nil {
			return nil, fmt.Errorf("failed to read the static Pod manifest of %s: %w", comp, err)
		}
		var pod map[string]any
		if err := yaml.Unmarshal(b, &pod); err != nil {
			return nil, fmt.Errorf("failed to parse %s: %w", p, err)
		}
		spec, _ := pod["spec"].(map[string]any)
		containers, _ := spec["containers"].([]any)
		var c map[string]any
		if len(containers) > 0 {
			c, _ = containers[0].(map[string]any)
		}
		image, _ := c["image"].(string)
		if image == "" {
			return nil, fmt.Errorf("fakekube: %s has no container image: not a static Pod manifest kubeadm wrote", p)
		}
		c["image"] = retag(image, version)
		if out[comp], err = yaml.Marshal(pod); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// retag replaces an image reference's tag (a registry's ":port" is not one).
func retag(image, tag string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image + ":" + tag
}

// exactArgs is kubeadm's ValidateExactArgNumber: empty arguments do not count.
func exactArgs(args []string, required ...string) error {
	n := 0
	for _, a := range args {
		if a != "" {
			n++
		}
		if n > len(required) {
			return fmt.Errorf("too many arguments. Required arguments: %v", required)
		}
	}
	if n < len(required) {
		return fmt.Errorf("missing one or more required arguments. Required arguments: %v", required)
	}
	return nil
}

// isVersionLabel tells kubeadm's release labels (stable, latest-1.38, ci/latest) from
// versions.
func isVersionLabel(s string) bool {
	for _, l := range []string{"stable", "latest", "ci/"} {
		if strings.HasPrefix(s, l) {
			return true
		}
	}
	return false
}

// runningKubeletVersion is the version a node's kubelet reports. The agent restarts the
// kubelet after installing a new one, which the fake cannot see (in a --rootfs sandbox
// there is no kubelet service), so the kubelet installed in the node's root counts as the
// running one when it is a fake-kube-binary artifact; otherwise the version recorded at
// join or at the last upgrade does.
func runningKubeletVersion(n nodeRecord, clusterVersion string) string {
	if h, err := openHostFS(n.Root); err == nil {
		defer h.Close()
		if v, err := installedVersion(h, kubeletBinary, "kubelet"); err == nil {
			return v
		}
	}
	return n.kubeletVersion(clusterVersion)
}
