package scheduler

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/deployme/deployme/coordinator/pki"
	"github.com/deployme/deployme/coordinator/state"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Cluster network defaults (kubeadm's and the CNI manifest's).
const (
	PodSubnet     = "10.244.0.0/16"
	ServiceSubnet = "10.96.0.0/12"
	// readyTimeout bounds the agent's wait for its node to be Ready.
	readyTimeout = "10m"
	// drainTimeout bounds one drain attempt (kubectl drain --timeout): a drain that a
	// PodDisruptionBudget blocks fails then, with kubectl's reason, and is retried.
	drainTimeout = "5m"
)

//go:embed cni/bridge.yaml
var cniManifest string

// CNIManifest is the manifest installed on every cluster, for its pod subnet.
func CNIManifest(podSubnet string) []byte {
	return []byte(strings.ReplaceAll(cniManifest, "{{POD_SUBNET}}", podSubnet))
}

// ErrNoKeyring means this replica cannot open sealed material.
var ErrNoKeyring = errors.New("this replica has no coordinator keyring; copy <data-dir>/keyring from another replica")

// Assignments lists every step the host must run now (the running attempts it executes),
// with their parameters and files. Secrets are opened with the keyring here, on the replica
// that holds the agent's stream, and never stored in the clear.
func Assignments(st *state.State, hostID string, kr *pki.Keyring, now time.Time) ([]*agentv1.StepAssignment, error) {
	h, ok := st.Host(hostID)
	if !ok || h.ClusterID == "" {
		return nil, nil
	}
	c, ok := st.Cluster(h.ClusterID)
	if !ok {
		return nil, nil
	}
	nodes := st.NodesOf(c.ID)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].HostID < nodes[j].HostID })
	var out []*agentv1.StepAssignment
	var errs []error
	for _, n := range nodes {
		for _, s := range n.Steps {
			if s.State != state.StepRunning || s.Executor != hostID {
				continue
			}
			a, err := assignment(st, c, n, s, kr, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.StepID(s.Name, s.Attempt), err))
				continue
			}
			out = append(out, a)
		}
	}
	return out, errors.Join(errs...)
}

func assignment(st *state.State, c *state.Cluster, n *state.Node, s state.Step, kr *pki.Keyring, now time.Time) (*agentv1.StepAssignment, error) {
	h, _ := st.Host(n.HostID)
	endpoint := strings.TrimPrefix(c.Endpoint, "https://")
	p := map[string]string{
		"cluster_id":         c.ID,
		"cluster_name":       ClusterName(c),
		"role":               n.Role,
		"node_name":          NodeName(st, n),
		"kubernetes_version": c.KubernetesVersion,
	}
	if h != nil && h.Labels["simulated"] == "true" {
		p["simulated"] = "true"
	}
	a := &agentv1.StepAssignment{StepId: n.StepID(s.Name, s.Attempt), Name: s.Name, Params: p}
	open := func() (*pki.ClusterPKI, error) {
		if c.PKI == nil {
			return nil, fmt.Errorf("cluster %s has no PKI yet", c.ID)
		}
		if kr == nil {
			return nil, ErrNoKeyring
		}
		return kr.OpenPKI(sealedPKI(c.PKI), c.ID)
	}
	switch s.Name {
	case state.StepPKI:
		cp, err := open()
		if err != nil {
			return nil, err
		}
		for _, f := range cp.Files(true) {
			a.Files = append(a.Files, &agentv1.File{Path: f.Path, Mode: f.Mode, Content: f.Content})
		}
	case state.StepInit:
		p["advertise_address"] = h.Address()
		p["control_plane_endpoint"] = endpoint
		p["pod_subnet"] = PodSubnet
		p["service_subnet"] = ServiceSubnet
		p["cert_sans"] = strings.Join(certSANs(st, c, endpoint), ",")
	case state.StepCNI:
		a.Files = append(a.Files, &agentv1.File{Path: "/etc/deployme/cni.yaml", Mode: 0o644, Content: CNIManifest(PodSubnet)})
	case state.StepCredentials:
		token, err := openCred(n, kr)
		if err != nil {
			return nil, err
		}
		ttl := n.Cred.ExpiresAt.Sub(now).Round(time.Second)
		if ttl < time.Minute {
			ttl = time.Minute
		}
		p["token"] = token
		p["ttl"] = ttl.String()
		p["for_node"] = NodeName(st, n)
	case state.StepJoin:
		token, err := openCred(n, kr)
		if err != nil {
			return nil, err
		}
		if c.PKI == nil {
			return nil, fmt.Errorf("cluster %s has no PKI yet", c.ID)
		}
		hash, err := pki.CACertHash(c.PKI.CACert)
		if err != nil {
			return nil, err
		}
		p["token"] = token
		p["ca_cert_hash"] = hash
		p["control_plane_endpoint"] = endpoint
		if n.IsControlPlane() {
			p["advertise_address"] = h.Address()
		}
	case state.StepReady:
		p["timeout"] = readyTimeout
	case state.StepDrain, state.StepUpgradeDrain:
		p["timeout"] = drainTimeout
	case state.StepUpgradeApply, state.StepUpgradeNode, state.StepInstall:
		if len(c.Artifacts) == 0 {
			return nil, fmt.Errorf("cluster %s has no upgrade binaries recorded", c.ID)
		}
		var arts, urls []string
		for _, a := range c.Artifacts {
			arts = append(arts, fmt.Sprintf("%s=%s:%d", a.Name, a.SHA256, a.Size))
		}
		// Every replica serves the same content by hash: the agent tries each in turn.
		for _, m := range st.Members() {
			if m.HTTPAddr != "" {
				urls = append(urls, "http://"+m.HTTPAddr)
			}
		}
		if len(urls) == 0 {
			return nil, fmt.Errorf("no coordinator advertises an HTTP address to download binaries from")
		}
		p["artifacts"] = strings.Join(arts, ",")
		p["artifact_urls"] = strings.Join(urls, ",")
	case state.StepEtcdCheck:
		// A control plane replacing one whose host is offline: that member cannot answer
		// the health check, and is removed right after this one.
		if n.Replaces != "" {
			if old, ok := st.Host(n.Replaces); ok && old.State == state.HostOffline && old.Address() != "" {
				p["tolerate_peer_url"] = "https://" + net.JoinHostPort(old.Address(), "2380")
			}
		}
	case state.StepEtcdCleanup, state.StepEtcdRemove:
		// etcdctl runs in the executor's own etcd pod.
		ex, ok := st.Node(s.Executor)
		if !ok || ex.ClusterID != c.ID || !ex.IsControlPlane() {
			return nil, fmt.Errorf("executor %s of %s is not a control plane of cluster %s", s.Executor, s.Name, c.ID)
		}
		p["exec_node"] = NodeName(st, ex)
		if h != nil && h.Address() != "" {
			p["peer_url"] = "https://" + net.JoinHostPort(h.Address(), "2380")
		}
		if s.Name == state.StepEtcdRemove && n.EtcdMemberID != "" {
			p["member_id"] = n.EtcdMemberID
		}
	}
	return a, nil
}

func openCred(n *state.Node, kr *pki.Keyring) (string, error) {
	if n.Cred == nil {
		return "", fmt.Errorf("node %s has no join token", n.HostID)
	}
	if kr == nil {
		return "", ErrNoKeyring
	}
	b, err := kr.Open(n.Cred.TokenSealed, CredAAD(n.HostID))
	return string(b), err
}

// CredAAD binds a sealed join token to the node it was minted for.
func CredAAD(hostID string) string { return "join-token/" + hostID }

func sealedPKI(p *state.ClusterPKI) *pki.SealedPKI {
	return &pki.SealedPKI{
		CACert: p.CACert, CAKey: p.CAKeySealed,
		FrontProxyCACert: p.FrontProxyCACert, FrontProxyCAKey: p.FrontProxyCAKeySealed,
		EtcdCACert: p.EtcdCACert, EtcdCAKey: p.EtcdCAKeySealed,
		SAPub: p.SAPub, SAKey: p.SAKeySealed, KeyringID: p.KeyringID,
	}
}

// OpenPKI opens a cluster's stored PKI with the keyring.
func OpenPKI(c *state.Cluster, kr *pki.Keyring) (*pki.ClusterPKI, error) {
	if c.PKI == nil {
		return nil, fmt.Errorf("cluster %s has no PKI yet", c.ID)
	}
	if kr == nil {
		return nil, ErrNoKeyring
	}
	return kr.OpenPKI(sealedPKI(c.PKI), c.ID)
}

// certSANs are the API server certificate's extra names: the endpoint, and every control
// plane's address and hostname, so any of them can serve.
func certSANs(st *state.State, c *state.Cluster, endpoint string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if host, _, err := net.SplitHostPort(endpoint); err == nil {
		add(host)
	}
	nodes := st.NodesOf(c.ID)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].HostID < nodes[j].HostID })
	for _, n := range nodes {
		if !n.IsControlPlane() {
			continue
		}
		if h, ok := st.Host(n.HostID); ok {
			add(h.Address())
			add(NodeName(st, n))
		}
	}
	return out
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsLabel makes s a valid RFC 1123 label (lowercase letters, digits, hyphens).
func dnsLabel(s string) string {
	s = strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

// ClusterName is the cluster's name as kubeadm takes it.
func ClusterName(c *state.Cluster) string {
	if n := dnsLabel(c.Name); n != "" {
		return n
	}
	return dnsLabel(c.ID)
}

// NodeName is the Kubernetes node name of a host: its hostname, made a valid DNS label, with
// the host ID appended when another node of the cluster has the same hostname.
func NodeName(st *state.State, n *state.Node) string {
	h, ok := st.Host(n.HostID)
	if !ok {
		return dnsLabel(n.HostID)
	}
	name := dnsLabel(strings.Split(h.Hostname, ".")[0])
	if name == "" {
		return dnsLabel(n.HostID)
	}
	for _, o := range st.NodesOf(n.ClusterID) {
		if o.HostID == n.HostID {
			continue
		}
		if oh, ok := st.Host(o.HostID); ok && dnsLabel(strings.Split(oh.Hostname, ".")[0]) == name {
			return dnsLabel(name[:min(len(name), 40)] + "-" + n.HostID)
		}
	}
	return name
}
