// Package rest serves the /v1 REST API on net/http: routing, authentication, per-token rate
// limits, strict request decoding and validation, and the one mapping from errors to HTTP
// statuses. It declares the Backend it needs and never imports the coordinator.
package rest

import (
	"context"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
)

// ClusterQuery selects clusters for a list.
type ClusterQuery struct {
	Page, PerPage int
	Status        string
	// OnlyID restricts the list to one cluster (a token scoped to cluster:<id>).
	OnlyID string
}

// HostQuery selects hosts for a list.
type HostQuery struct {
	Page, PerPage int
	InfraID       string
	State         string
}

// Catalog is what the operator configured that requests are validated against.
type Catalog struct {
	NodeSizes          []string
	KubernetesVersions []v1.KubernetesVersion
	DefaultPlan        string
}

// Backend is the application layer behind the handlers. Requests reach it validated; it
// returns *v1.Error for anything the client should see.
type Backend interface {
	Authenticate(ctx context.Context, secret string) (*v1.Token, error)
	Ready(ctx context.Context) error
	Catalog() Catalog

	ListClusters(ctx context.Context, q ClusterQuery) (*v1.ClusterList, error)
	CreateCluster(ctx context.Context, req *v1.CreateClusterRequest) (*v1.Cluster, error)
	GetCluster(ctx context.Context, id string) (*v1.Cluster, error)
	PatchCluster(ctx context.Context, id string, req *v1.PatchClusterRequest) (*v1.Cluster, error)
	UpgradeCluster(ctx context.Context, id string, version string) (*v1.Cluster, error)
	DeleteCluster(ctx context.Context, id string) error
	Kubeconfig(ctx context.Context, id string, ttl time.Duration) ([]byte, error)
	ClusterNodes(ctx context.Context, id string) (*v1.NodeList, error)
	// ClusterEvents returns events after since; with wait it blocks until there is at least
	// one or ctx ends.
	ClusterEvents(ctx context.Context, id string, since uint64, wait bool) (*v1.EventList, error)

	CreateToken(ctx context.Context, req *v1.CreateTokenRequest) (*v1.Token, error)
	ListTokens(ctx context.Context) (*v1.TokenList, error)
	GetToken(ctx context.Context, id string) (*v1.Token, error)
	DeleteToken(ctx context.Context, id string) error

	CreateInfra(ctx context.Context, req *v1.CreateInfraRequest) (*v1.Infra, error)
	ListInfras(ctx context.Context) (*v1.InfraList, error)
	GetInfra(ctx context.Context, id string) (*v1.Infra, error)
	DeleteInfra(ctx context.Context, id string) error
	CreateJoinToken(ctx context.Context, infraID string, expires time.Duration, maxUses int) (*v1.JoinToken, error)
	ListJoinTokens(ctx context.Context, infraID string) (*v1.JoinTokenList, error)
	DeleteJoinToken(ctx context.Context, infraID, id string) error

	ListHosts(ctx context.Context, q HostQuery) (*v1.HostList, error)
	GetHost(ctx context.Context, id string) (*v1.Host, error)
	DecommissionHost(ctx context.Context, id string) error
	// AcceptHost makes a discovered host available to clusters; an accepted one is returned
	// as it is.
	AcceptHost(ctx context.Context, id string) (*v1.Host, error)
	// SetHostNetwork sets a host's own network (nil clears it), checked as the agent will.
	SetHostNetwork(ctx context.Context, id string, n *v1.HostNetwork) (*v1.Host, error)
	// ListMachines lists network-booted machines (of one infra when infraID is set).
	ListMachines(ctx context.Context, infraID string) (*v1.MachineList, error)
	// GetMachine returns one machine with its boot history.
	GetMachine(ctx context.Context, mac string) (*v1.Machine, error)
	// SetMachineBoot sets a machine's next boot (validated).
	SetMachineBoot(ctx context.Context, mac string, req *v1.SetMachineBootRequest) (*v1.Machine, error)

	ListMembers(ctx context.Context) (*v1.MemberList, error)
	AddMember(ctx context.Context, req *v1.AddMemberRequest) (*v1.Member, error)
	RemoveMember(ctx context.Context, id string) error
}
