package v1

import "time"

// Cluster statuses, exactly as the seed reference lists them.
const (
	StatusProvisioning = "provisioning"
	StatusRunning      = "running"
	StatusScaling      = "scaling"
	StatusUpgrading    = "upgrading"
	StatusError        = "error"
	StatusDeleting     = "deleting"
)

// Phases: where a cluster's hosts come from.
const (
	PhaseManaged   = "managed"
	PhaseOnPremise = "onpremise"
	PhaseBaremetal = "baremetal"
)

// ManagedInfraID is the built-in infra holding the platform operator's own pool.
const ManagedInfraID = "infra_managed"

// Token permissions. write implies read, admin implies both.
const (
	PermRead  = "read"
	PermWrite = "write"
	PermAdmin = "admin"
)

// Token plans and their per-minute request limits.
const (
	PlanCommunity  = "community"
	PlanPro        = "pro"
	PlanEnterprise = "enterprise"
)

// PlanLimits is the per-token, per-minute request limit of each plan.
var PlanLimits = map[string]int{PlanCommunity: 100, PlanPro: 1000, PlanEnterprise: 10000}

// Host states.
const (
	HostDiscovered     = "discovered"
	HostAvailable      = "available"
	HostAssigned       = "assigned"
	HostOffline        = "offline"
	HostDecommissioned = "decommissioned"
)

// Cluster is the full cluster object of GET /v1/clusters/{id}.
type Cluster struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Status            string    `json:"status"`
	Phase             string    `json:"phase"`
	ControlPlanes     int       `json:"control_planes"`
	Workers           int       `json:"workers"`
	NodeSize          string    `json:"node_size"`
	NodeCount         int       `json:"node_count"`
	Endpoint          string    `json:"endpoint"`
	KubernetesVersion string    `json:"kubernetes_version"`
	InfraID           string    `json:"infra_id"`
	StatusReason      string    `json:"status_reason,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// ClusterList is the list envelope of GET /v1/clusters.
type ClusterList struct {
	Items   []Cluster `json:"items"`
	Total   int       `json:"total"`
	Page    int       `json:"page"`
	PerPage int       `json:"per_page"`
}

// CreateClusterRequest is the body of POST /v1/clusters. Pointers tell "absent" from zero.
type CreateClusterRequest struct {
	Name              *string `json:"name"`
	ControlPlanes     *int    `json:"control_planes"`
	Workers           *int    `json:"workers"`
	NodeSize          *string `json:"node_size"`
	Phase             *string `json:"phase,omitempty"`
	InfraID           *string `json:"infra_id,omitempty"`
	KubernetesVersion *string `json:"kubernetes_version,omitempty"`
}

// PatchClusterRequest is the body of PATCH /v1/clusters/{id}: only these two fields change.
type PatchClusterRequest struct {
	Workers  *int    `json:"workers,omitempty"`
	NodeSize *string `json:"node_size,omitempty"`
}

// UpgradeClusterRequest is the body of POST /v1/clusters/{id}/upgrade.
type UpgradeClusterRequest struct {
	KubernetesVersion *string `json:"kubernetes_version"`
}

// Node is one host's membership in a cluster.
type Node struct {
	HostID   string     `json:"host_id"`
	Hostname string     `json:"hostname"`
	Role     string     `json:"role"`
	State    string     `json:"state"`
	Step     string     `json:"step,omitempty"`
	Steps    []NodeStep `json:"steps,omitempty"`
	// APIReady: a control plane's API server answered its agent's last readiness check.
	APIReady bool `json:"api_ready,omitempty"`
	// NodeSize is the size the host was placed for.
	NodeSize string `json:"node_size,omitempty"`
	// Replaces is the host whose node this one replaces.
	Replaces string `json:"replaces,omitempty"`
	// EtcdMemberID is a control plane's etcd member (hex).
	EtcdMemberID string `json:"etcd_member_id,omitempty"`
	// VIP is set on the control plane that must hold the cluster's VIP now.
	VIP       *NodeVIP  `json:"vip,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// NodeVIP is the cluster's VIP as held by one control plane.
type NodeVIP struct {
	Address string `json:"address"`
	Epoch   uint64 `json:"epoch"`
	// Held: the agent reported the address up at this epoch.
	Held bool `json:"held"`
}

// NodeStep is one step of a node's plan and its latest attempt.
type NodeStep struct {
	Name      string     `json:"name"`
	State     string     `json:"state"`
	Attempt   int        `json:"attempt"`
	Executor  string     `json:"executor,omitempty"`
	Phase     string     `json:"phase,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	Output    string     `json:"output,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// NodeList is the body of GET /v1/clusters/{id}/nodes.
type NodeList struct {
	Items []Node `json:"items"`
}

// Event is one entry of a cluster's ordered history.
type Event struct {
	Seq        uint64    `json:"seq"`
	ClusterID  string    `json:"cluster_id"`
	HostID     string    `json:"host_id,omitempty"`
	Type       string    `json:"type"`
	Message    string    `json:"message"`
	Time       time.Time `json:"time"`
	DurationMS int64     `json:"duration_ms,omitempty"`
}

// EventList is the body of GET /v1/clusters/{id}/events.
type EventList struct {
	Items []Event `json:"items"`
}

// KubernetesVersion is one installable version.
type KubernetesVersion struct {
	Version string `json:"version"`
	Default bool   `json:"default"`
}

// KubernetesVersionList is the body of GET /v1/kubernetes/versions.
type KubernetesVersionList struct {
	Items []KubernetesVersion `json:"items"`
}

// Token is an API token as listed; Secret is set only in the answer to its creation.
type Token struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Permissions []string   `json:"permissions"`
	Scope       string     `json:"scope"`
	Plan        string     `json:"plan"`
	ExpiresAt   *time.Time `json:"expires_at"`
	CreatedAt   time.Time  `json:"created_at"`
	Secret      string     `json:"token,omitempty"`
}

// TokenList is the body of GET /v1/tokens.
type TokenList struct {
	Items []Token `json:"items"`
}

// CreateTokenRequest is the body of POST /v1/tokens.
type CreateTokenRequest struct {
	Name        *string   `json:"name"`
	Permissions *[]string `json:"permissions"`
	Scope       *string   `json:"scope,omitempty"`
	Expires     *string   `json:"expires,omitempty"`
	Plan        *string   `json:"plan,omitempty"`
}

// Network is an infra's host network template. Every agent of the infra applies its links
// (bonds, VLANs, bridges, MTU) with netlink; when Interface is set, the host's address in
// CIDR and the default route through Gateway go on that link.
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

// NetworkBond aggregates interfaces: mode 802.3ad (LACP) or active-backup.
type NetworkBond struct {
	Name       string   `json:"name"`
	Mode       string   `json:"mode"`
	Interfaces []string `json:"interfaces"`
}

// NetworkVLAN is a tagged sub-interface of Link.
type NetworkVLAN struct {
	Name string `json:"name"`
	Link string `json:"link"`
	ID   int    `json:"id"`
}

// NetworkBridge is a Linux bridge over Interfaces.
type NetworkBridge struct {
	Name       string   `json:"name"`
	Interfaces []string `json:"interfaces,omitempty"`
}

// Infra is a pool of hosts: the built-in managed pool, a customer's site or a bare-metal rack.
type Infra struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Network *Network `json:"network,omitempty"`
	VIPPool string   `json:"vip_pool,omitempty"`
	// AutoAccept makes matching bare-metal hosts available as soon as they register.
	AutoAccept *AutoAccept `json:"auto_accept,omitempty"`
	CreatedAt  time.Time   `json:"created_at"`
}

// AutoAccept rules of a bare-metal infra: a registering host that matches any one becomes
// available without an operator's POST /v1/hosts/{id}/accept.
type AutoAccept struct {
	// MACPrefixes match the start of any of the host's MACs, e.g. "52:54:00".
	MACPrefixes []string `json:"mac_prefixes,omitempty"`
	// Serials match the host's serial number exactly.
	Serials []string `json:"serials,omitempty"`
	// Labels match when the host has every one of them.
	Labels map[string]string `json:"labels,omitempty"`
}

// InfraList is the body of GET /v1/infras.
type InfraList struct {
	Items []Infra `json:"items"`
}

// CreateInfraRequest is the body of POST /v1/infras.
type CreateInfraRequest struct {
	Name       *string     `json:"name"`
	Kind       *string     `json:"kind"`
	Network    *Network    `json:"network,omitempty"`
	VIPPool    *string     `json:"vip_pool,omitempty"`
	AutoAccept *AutoAccept `json:"auto_accept,omitempty"`
}

// JoinToken lets agents register hosts into one infra.
type JoinToken struct {
	ID        string    `json:"id"`
	InfraID   string    `json:"infra_id"`
	ExpiresAt time.Time `json:"expires_at"`
	MaxUses   int       `json:"max_uses,omitempty"`
	Uses      int       `json:"uses"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"token,omitempty"`
	Command   string    `json:"command,omitempty"`
}

// JoinTokenList is the body of GET /v1/infras/{id}/join-tokens.
type JoinTokenList struct {
	Items []JoinToken `json:"items"`
}

// CreateJoinTokenRequest is the body of POST /v1/infras/{id}/join-tokens.
type CreateJoinTokenRequest struct {
	Expires *string `json:"expires,omitempty"`
	MaxUses *int    `json:"max_uses,omitempty"`
}

// Disk is one block device of a host's inventory.
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Rotational bool   `json:"rotational"`
	Serial     string `json:"serial,omitempty"`
}

// NIC is one network interface of a host's inventory.
type NIC struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac"`
	SpeedMbps int      `json:"speed_mbps,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	Up        bool     `json:"up"`
}

// Host is one machine of the fleet.
type Host struct {
	ID           string            `json:"id"`
	InfraID      string            `json:"infra_id"`
	Hostname     string            `json:"hostname"`
	State        string            `json:"state"`
	ClusterID    string            `json:"cluster_id,omitempty"`
	CPUs         int               `json:"cpus"`
	MemoryBytes  int64             `json:"memory_bytes"`
	Disks        []Disk            `json:"disks"`
	NICs         []NIC             `json:"nics"`
	Labels       map[string]string `json:"labels"`
	AgentVersion string            `json:"agent_version,omitempty"`
	// Serial is the machine's serial number (DMI), when it reports one.
	Serial string `json:"serial,omitempty"`
	// Network is the host's own network, set with PUT /v1/hosts/{id}/network; absent, the
	// host gets its infra's template.
	Network *HostNetwork `json:"network,omitempty"`
	// ConnectedTo is the coordinator replica holding the agent's stream.
	ConnectedTo string    `json:"connected_to,omitempty"`
	LastSeen    time.Time `json:"last_seen"`
	CreatedAt   time.Time `json:"created_at"`
}

// HostList is the body of GET /v1/hosts.
type HostList struct {
	Items   []Host `json:"items"`
	Total   int    `json:"total"`
	Page    int    `json:"page"`
	PerPage int    `json:"per_page"`
}

// Member is one coordinator replica.
type Member struct {
	ID          string `json:"id"`
	RaftAddress string `json:"raft_address"`
	HTTPAddress string `json:"http_address,omitempty"`
	GRPCAddress string `json:"grpc_address,omitempty"`
	// Role is leader, follower or nonvoter.
	Role   string `json:"role"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
	// Reachable tells whether the replica answered its status request just now.
	Reachable bool `json:"reachable"`
	// LastContact is when a follower last heard from the leader (absent for the leader).
	LastContact  time.Time `json:"last_contact,omitzero"`
	AppliedIndex uint64    `json:"applied_index,omitempty"`
}

// AddMemberRequest is the body of POST /v1/coordinator/members.
type AddMemberRequest struct {
	ID          string `json:"id"`
	RaftAddress string `json:"raft_address"`
	HTTPAddress string `json:"http_address,omitempty"`
	GRPCAddress string `json:"grpc_address,omitempty"`
}

// MemberList is the body of GET /v1/coordinator/members.
type MemberList struct {
	Items    []Member `json:"items"`
	LeaderID string   `json:"leader_id"`
}

// Machine is a network-booted machine as the boot services saw it (by the MAC it boots from).
type Machine struct {
	MAC     string `json:"mac"`
	InfraID string `json:"infra_id"`
	// HostID is the host its agent registered as, once it did.
	HostID string `json:"host_id,omitempty"`
	// NextBoot is agent (the live image) or disk; DiskExit says how the script leaves the
	// network boot: exit, sanboot or chain (to DiskChain).
	NextBoot  string `json:"next_boot"`
	DiskExit  string `json:"disk_exit,omitempty"`
	DiskChain string `json:"disk_chain,omitempty"`
	// Boots counts network boots since the last progress; State is booting, registered or
	// error (a boot loop, with Reason).
	Boots     int         `json:"boots"`
	State     string      `json:"state"`
	Reason    string      `json:"reason,omitempty"`
	LeaseIP   string      `json:"lease_ip,omitempty"`
	FirstSeen time.Time   `json:"first_seen"`
	LastSeen  time.Time   `json:"last_seen"`
	History   []BootEvent `json:"history"`
}

// BootEvent is one step of a machine's boot: dhcp.offer, tftp.sent, boot.script,
// boot.kernel, boot.initrd, agent.registered, boot.next, boot.loop.
type BootEvent struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// MachineList is the body of GET /v1/machines.
type MachineList struct {
	Items []Machine `json:"items"`
}

// SetMachineBootRequest is the body of PATCH /v1/machines/{mac}.
type SetMachineBootRequest struct {
	NextBoot  *string `json:"next_boot"`
	DiskExit  *string `json:"disk_exit,omitempty"`
	DiskChain *string `json:"disk_chain,omitempty"`
}

// HostNetwork is one host's own network, replacing its infra's template for that host: the
// JSON the agent applies with netlink (agent/netconf), with the host's addresses and routes.
type HostNetwork struct {
	Bonds     []HostBond    `json:"bonds,omitempty"`
	VLANs     []HostVLAN    `json:"vlans,omitempty"`
	Bridges   []HostBridge  `json:"bridges,omitempty"`
	Links     []HostLink    `json:"links,omitempty"`
	Addresses []HostAddress `json:"addresses,omitempty"`
	Routes    []HostRoute   `json:"routes,omitempty"`
}

// HostBond is a bond of interfaces: mode 802.3ad or active-backup.
type HostBond struct {
	Name       string   `json:"name"`
	Mode       string   `json:"mode"`
	Interfaces []string `json:"interfaces"`
	MTU        int      `json:"mtu,omitempty"`
}

// HostVLAN is a tagged sub-interface of Link.
type HostVLAN struct {
	Name string `json:"name"`
	Link string `json:"link"`
	ID   int    `json:"id"`
	MTU  int    `json:"mtu,omitempty"`
}

// HostBridge is a bridge over Interfaces.
type HostBridge struct {
	Name       string   `json:"name"`
	Interfaces []string `json:"interfaces,omitempty"`
	MTU        int      `json:"mtu,omitempty"`
}

// HostLink brings a link up, with an MTU.
type HostLink struct {
	Name string `json:"name"`
	MTU  int    `json:"mtu,omitempty"`
}

// HostAddress is a static address on a link, e.g. 10.0.0.5/24.
type HostAddress struct {
	Link string `json:"link"`
	CIDR string `json:"cidr"`
}

// HostRoute is a route: Dst a CIDR or "default", through Gateway and/or Link.
type HostRoute struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway,omitempty"`
	Link    string `json:"link,omitempty"`
}
