// Package state is the coordinator's domain model: the tables every replica holds in memory,
// their indexes, and the pure rules (placement) that decide writes. It does no I/O and imports
// nothing of ours, so the FSM can apply it deterministically and the scheduler can plan on it.
//
// Stored objects are immutable: a change stores a modified copy. That lets a snapshot copy
// the maps (not the objects) under a short lock and encode them while Apply goes on.
package state

import (
	"strings"
	"time"
)

// Token is an API token; only the SHA-256 of its secret is stored.
type Token struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Hash        string     `json:"hash"`
	Permissions []string   `json:"permissions"`
	Scope       string     `json:"scope"`
	Plan        string     `json:"plan"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
}

// Network is an infra's host network template (api/v1.Network).
type Network struct {
	CIDR      string          `json:"cidr,omitempty"`
	Gateway   string          `json:"gateway,omitempty"`
	DNS       []string        `json:"dns,omitempty"`
	MTU       int             `json:"mtu,omitempty"`
	Interface string          `json:"interface,omitempty"`
	Bonds     []NetworkBond   `json:"bonds,omitempty"`
	VLANs     []NetworkVLAN   `json:"vlans,omitempty"`
	Bridges   []NetworkBridge `json:"bridges,omitempty"`
}

// NetworkBond aggregates interfaces.
type NetworkBond struct {
	Name       string   `json:"name"`
	Mode       string   `json:"mode"`
	Interfaces []string `json:"interfaces"`
}

// NetworkVLAN is a tagged sub-interface.
type NetworkVLAN struct {
	Name string `json:"name"`
	Link string `json:"link"`
	ID   int    `json:"id"`
}

// NetworkBridge is a bridge over interfaces.
type NetworkBridge struct {
	Name       string   `json:"name"`
	Interfaces []string `json:"interfaces,omitempty"`
}

// Infra is a pool of hosts.
type Infra struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Network   *Network  `json:"network,omitempty"`
	VIPPool   string    `json:"vip_pool,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// AutoAccept makes matching bare-metal hosts available without an operator.
	AutoAccept *AutoAccept `json:"auto_accept,omitempty"`
}

// AutoAccept rules: any one matching accepts the host.
type AutoAccept struct {
	MACPrefixes []string          `json:"mac_prefixes,omitempty"`
	Serials     []string          `json:"serials,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Accepts tells whether h matches one of the rules: a MAC with one of the prefixes, a
// serial listed, or every label given (when labels are given).
func (a *AutoAccept) Accepts(h *Host) bool {
	if a == nil {
		return false
	}
	for _, nic := range h.NICs {
		for _, p := range a.MACPrefixes {
			if p != "" && strings.HasPrefix(strings.ToLower(nic.MAC), strings.ToLower(p)) {
				return true
			}
		}
	}
	if h.Serial != "" {
		for _, s := range a.Serials {
			if s == h.Serial {
				return true
			}
		}
	}
	if len(a.Labels) > 0 {
		for k, v := range a.Labels {
			if h.Labels[k] != v {
				return false
			}
		}
		return true
	}
	return false
}

// JoinToken lets agents register hosts into one infra; only its hash is stored.
type JoinToken struct {
	ID        string    `json:"id"`
	InfraID   string    `json:"infra_id"`
	Hash      string    `json:"hash"`
	ExpiresAt time.Time `json:"expires_at"`
	MaxUses   int       `json:"max_uses,omitempty"`
	Uses      int       `json:"uses"`
	CreatedAt time.Time `json:"created_at"`
}

// Host states.
const (
	HostDiscovered     = "discovered"
	HostAvailable      = "available"
	HostAssigned       = "assigned"
	HostOffline        = "offline"
	HostDecommissioned = "decommissioned"
)

// Disk is one block device.
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Rotational bool   `json:"rotational"`
	Serial     string `json:"serial,omitempty"`
}

// NIC is one network interface.
type NIC struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac"`
	SpeedMbps int      `json:"speed_mbps,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	Up        bool     `json:"up"`
}

// Host is one machine of the fleet and its last reported inventory.
type Host struct {
	ID           string            `json:"id"`
	InfraID      string            `json:"infra_id"`
	Hostname     string            `json:"hostname"`
	State        string            `json:"state"`
	ClusterID    string            `json:"cluster_id,omitempty"`
	CPUs         int               `json:"cpus"`
	MemoryBytes  int64             `json:"memory_bytes"`
	Disks        []Disk            `json:"disks,omitempty"`
	NICs         []NIC             `json:"nics,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	Serial       string            `json:"serial,omitempty"`
	// NetworkJSON is the host's own network (agent/netconf's JSON), replacing its
	// infra's template; nil: the template.
	NetworkJSON []byte    `json:"network_json,omitempty"`
	LastSeen    time.Time `json:"last_seen"`
	CreatedAt   time.Time `json:"created_at"`
	// OfflineFrom is the state an offline host returns to when its agent is back.
	OfflineFrom string `json:"offline_from,omitempty"`
	// ConnectedTo is the replica holding the agent's stream, as last recorded by the
	// leader's liveness loop (written only when it changes).
	ConnectedTo string `json:"connected_to,omitempty"`
	// KeyID is the SHA-256 of the agent's public key: a registration retried with the same
	// key (its first answer was lost) gets the same host instead of a second one.
	KeyID string `json:"key_id,omitempty"`
}

// Address is the host's first usable IP address, or "" when it reported none.
func (h *Host) Address() string {
	for _, n := range h.NICs {
		for _, a := range n.Addresses {
			if ip := stripPrefix(a); ip != "" {
				return ip
			}
		}
	}
	return ""
}

// Cluster statuses.
const (
	StatusProvisioning = "provisioning"
	StatusRunning      = "running"
	StatusScaling      = "scaling"
	StatusUpgrading    = "upgrading"
	StatusError        = "error"
	StatusDeleting     = "deleting"
)

// Cluster is a Kubernetes cluster's desired shape and observed status.
type Cluster struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Status            string    `json:"status"`
	StatusReason      string    `json:"status_reason,omitempty"`
	Phase             string    `json:"phase"`
	ControlPlanes     int       `json:"control_planes"`
	Workers           int       `json:"workers"`
	NodeSize          string    `json:"node_size"`
	Endpoint          string    `json:"endpoint"`
	KubernetesVersion string    `json:"kubernetes_version"`
	InfraID           string    `json:"infra_id"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
	// PKI is set once, by the leader, before any node gets its certificates.
	PKI *ClusterPKI `json:"pki,omitempty"`
	// InitHost is the host whose `kubeadm init` succeeded; once set, no init step can start
	// again for this cluster.
	InitHost string `json:"init_host,omitempty"`
	// VIP is the control-plane VIP when the endpoint came from the infra's pool.
	VIP *ClusterVIP `json:"vip,omitempty"`
	// Artifacts are the binaries of KubernetesVersion hosts install during an upgrade.
	Artifacts []Artifact `json:"artifacts,omitempty"`
}

// Artifact is a binary of the coordinators' artifact store, by content.
type Artifact struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ClusterVIP is who holds a cluster's control-plane VIP. Epoch grows by one at each new
// holder; agents drop the address when a newer epoch names another host (fencing).
type ClusterVIP struct {
	// Address is the VIP, without prefix length.
	Address string `json:"address"`
	// Bits is the prefix length of the VIP's subnet, used on the holder's link.
	Bits int `json:"bits"`
	// Holder is the host that must hold the VIP at Epoch; empty after it gave it up.
	Holder string `json:"holder,omitempty"`
	Epoch  uint64 `json:"epoch"`
	// Held is set once the holder reported the address up at Epoch.
	Held bool `json:"held,omitempty"`
}

// ClusterPKI is a cluster's CAs and service-account key pair; the private keys are sealed
// with the coordinator keyring (KeyringID names the key).
type ClusterPKI struct {
	CACert                []byte `json:"ca_cert"`
	CAKeySealed           []byte `json:"ca_key_sealed"`
	FrontProxyCACert      []byte `json:"front_proxy_ca_cert"`
	FrontProxyCAKeySealed []byte `json:"front_proxy_ca_key_sealed"`
	EtcdCACert            []byte `json:"etcd_ca_cert"`
	EtcdCAKeySealed       []byte `json:"etcd_ca_key_sealed"`
	SAPub                 []byte `json:"sa_pub"`
	SAKeySealed           []byte `json:"sa_key_sealed"`
	KeyringID             string `json:"keyring_id"`
}

// Node roles.
const (
	RoleInitControlPlane = "control-plane-init"
	RoleControlPlane     = "control-plane"
	RoleWorker           = "worker"
)

// Node states: reserved (host picked, nothing installed), joining, joined (a Kubernetes node),
// removing (being reset before its host is released).
const (
	NodeReserved = "reserved"
	NodeJoining  = "joining"
	NodeJoined   = "joined"
	NodeRemoving = "removing"
)

// Node is one host's membership in one cluster. A host is in at most one cluster.
type Node struct {
	HostID    string    `json:"host_id"`
	ClusterID string    `json:"cluster_id"`
	Role      string    `json:"role"`
	State     string    `json:"state"`
	Step      string    `json:"step,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Steps is the node's plan, in order, with each step's last attempt.
	Steps []Step `json:"steps,omitempty"`
	// Cred is the bootstrap token minted for this node's join.
	Cred *JoinCred `json:"cred,omitempty"`
	// APIReady: the host's local API server answered its last readiness check (control
	// planes only; reported by the agent when it changes). A VIP goes only to a ready host.
	APIReady bool `json:"api_ready,omitempty"`
	// Size is the node size the host was placed for; a node-size roll replaces the nodes
	// whose Size is not the cluster's.
	Size string `json:"size,omitempty"`
	// Replaces is the host whose node this one takes over (a node-size roll or an offline
	// control plane): that node is removed once this one's plan has succeeded.
	Replaces string `json:"replaces,omitempty"`
	// EtcdMemberID is a control plane's etcd member (hex), as its etcd-check step found it;
	// removing the control plane removes that member first.
	EtcdMemberID string `json:"etcd_member_id,omitempty"`
}

// JoinCred is a just-in-time bootstrap token, sealed with the coordinator keyring.
type JoinCred struct {
	TokenSealed []byte    `json:"token_sealed"`
	ExpiresAt   time.Time `json:"expires_at"`
	KeyringID   string    `json:"keyring_id"`
}

// IsControlPlane tells whether the node runs the control plane.
func (n *Node) IsControlPlane() bool {
	return n.Role == RoleInitControlPlane || n.Role == RoleControlPlane
}

// Event is one entry of a cluster's bounded history.
type Event struct {
	Seq        uint64    `json:"seq"`
	ClusterID  string    `json:"cluster_id"`
	HostID     string    `json:"host_id,omitempty"`
	Type       string    `json:"type"`
	Message    string    `json:"message"`
	Time       time.Time `json:"time"`
	DurationMS int64     `json:"duration_ms,omitempty"`
}

// Size is the minimum a host must have to take a node of some size.
type Size struct {
	CPUs        int   `json:"cpus"`
	MemoryBytes int64 `json:"memory_bytes"`
}

// Fits tells whether a host has at least the size.
func (s Size) Fits(h *Host) bool { return h.CPUs >= s.CPUs && h.MemoryBytes >= s.MemoryBytes }

// Describe names a stored object's kind and key ("", "" for anything else): how results
// are recorded for idempotent retries and carried back to a forwarding replica.
func Describe(v any) (kind, id string) {
	switch x := v.(type) {
	case *Cluster:
		return "cluster", x.ID
	case *Token:
		return "token", x.ID
	case *Infra:
		return "infra", x.ID
	case *JoinToken:
		return "join_token", x.ID
	case *Host:
		return "host", x.ID
	case *Node:
		return "node", x.HostID
	case *Member:
		return "member", x.ID
	}
	return "", ""
}

// NewObject returns an empty object of a kind named by Describe, nil for an unknown kind.
func NewObject(kind string) any {
	switch kind {
	case "cluster":
		return &Cluster{}
	case "token":
		return &Token{}
	case "infra":
		return &Infra{}
	case "join_token":
		return &JoinToken{}
	case "host":
		return &Host{}
	case "node":
		return &Node{}
	case "member":
		return &Member{}
	}
	return nil
}
