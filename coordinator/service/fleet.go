package service

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deployme/deployme/api/rest"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// JoinTokenPrefix starts every agent join token secret.
const JoinTokenPrefix = "dpj_"

// CreateInfra creates an infra.
func (s *Service) CreateInfra(ctx context.Context, req *v1.CreateInfraRequest) (*v1.Infra, error) {
	id, err := s.newID("infra_")
	if err != nil {
		return nil, err
	}
	p := &raftcmdv1.Infra{Id: id, Name: *req.Name, Kind: *req.Kind, CreatedAt: unixNano(s.now())}
	if req.VIPPool != nil {
		p.VipPool = *req.VIPPool
	}
	if n := req.Network; n != nil {
		p.Network = &raftcmdv1.Network{Cidr: n.CIDR, Gateway: n.Gateway, Dns: n.DNS, Mtu: int32(n.MTU)}
	}
	res, err := s.apply(ctx, command.TypeCreateInfra, &raftcmdv1.CreateInfra{Infra: p})
	if err != nil {
		return nil, err
	}
	out := infraOut(res.(*state.Infra))
	return &out, nil
}

// ListInfras lists infras, the managed one included.
func (s *Service) ListInfras(_ context.Context) (*v1.InfraList, error) {
	out := &v1.InfraList{Items: []v1.Infra{}}
	s.store.Read(func(st *state.State) {
		for _, i := range st.Infras() {
			out.Items = append(out.Items, infraOut(i))
		}
	})
	return out, nil
}

// GetInfra returns one infra.
func (s *Service) GetInfra(_ context.Context, id string) (*v1.Infra, error) {
	var out *v1.Infra
	s.store.Read(func(st *state.State) {
		if i, ok := st.Infra(id); ok {
			o := infraOut(i)
			out = &o
		}
	})
	if out == nil {
		return nil, notFound("infra", id)
	}
	return out, nil
}

// DeleteInfra deletes an infra with no hosts or clusters left.
func (s *Service) DeleteInfra(ctx context.Context, id string) error {
	_, err := s.apply(ctx, command.TypeDeleteInfra, &raftcmdv1.DeleteInfra{Id: id})
	return err
}

// CreateJoinToken mints a join token for an infra's agents, with the install one-liner.
func (s *Service) CreateJoinToken(ctx context.Context, infraID string, ttl time.Duration, maxUses int) (*v1.JoinToken, error) {
	id, err := s.newID("jt_")
	if err != nil {
		return nil, err
	}
	secret, err := s.newSecret(JoinTokenPrefix)
	if err != nil {
		return nil, err
	}
	now := s.now()
	res, err := s.apply(ctx, command.TypeCreateJoinToken, &raftcmdv1.CreateJoinToken{JoinToken: &raftcmdv1.JoinToken{
		Id: id, InfraId: infraID, Hash: HashSecret(secret), ExpiresAt: unixNano(now.Add(ttl)), MaxUses: int32(maxUses), CreatedAt: unixNano(now),
	}})
	if err != nil {
		return nil, err
	}
	out := joinTokenOut(res.(*state.JoinToken))
	out.Secret = secret
	out.Command = s.installCommand(secret)
	return &out, nil
}

// installCommand is the one line an operator runs on a host to install and join its agent.
func (s *Service) installCommand(secret string) string {
	http := s.cfg.AdvertiseHTTP
	if http == "" {
		http = "127.0.0.1:8080"
	}
	grpc := s.cfg.AdvertiseGRPC
	if grpc == "" {
		grpc = "127.0.0.1:9090"
	}
	return "curl -sfL http://" + http + "/install.sh | sh -s -- --coordinator " + grpc + " --token " + secret
}

// ListJoinTokens lists an infra's join tokens without their secrets.
func (s *Service) ListJoinTokens(_ context.Context, infraID string) (*v1.JoinTokenList, error) {
	var out *v1.JoinTokenList
	s.store.Read(func(st *state.State) {
		if _, ok := st.Infra(infraID); !ok {
			return
		}
		out = &v1.JoinTokenList{Items: []v1.JoinToken{}}
		for _, j := range st.JoinTokensOf(infraID) {
			out.Items = append(out.Items, joinTokenOut(j))
		}
	})
	if out == nil {
		return nil, notFound("infra", infraID)
	}
	return out, nil
}

// DeleteJoinToken revokes a join token of an infra.
func (s *Service) DeleteJoinToken(ctx context.Context, infraID, id string) error {
	var ok bool
	s.store.Read(func(st *state.State) {
		j, found := st.JoinToken(id)
		ok = found && j.InfraID == infraID
	})
	if !ok {
		return notFound("join token", id)
	}
	_, err := s.apply(ctx, command.TypeDeleteJoinToken, &raftcmdv1.DeleteJoinToken{Id: id})
	return err
}

// ListHosts pages through hosts in registration order.
func (s *Service) ListHosts(_ context.Context, q rest.HostQuery) (*v1.HostList, error) {
	out := &v1.HostList{Items: []v1.Host{}, Page: q.Page, PerPage: q.PerPage}
	skip := (q.Page - 1) * q.PerPage
	s.store.Read(func(st *state.State) {
		for _, h := range st.Hosts() {
			if (q.InfraID != "" && h.InfraID != q.InfraID) || (q.State != "" && h.State != q.State) {
				continue
			}
			out.Total++
			if skip > 0 {
				skip--
				continue
			}
			if len(out.Items) < q.PerPage {
				out.Items = append(out.Items, hostOut(h))
			}
		}
	})
	return out, nil
}

// GetHost returns one host.
func (s *Service) GetHost(_ context.Context, id string) (*v1.Host, error) {
	var out *v1.Host
	s.store.Read(func(st *state.State) {
		if h, ok := st.Host(id); ok {
			o := hostOut(h)
			out = &o
		}
	})
	if out == nil {
		return nil, notFound("host", id)
	}
	return out, nil
}

// DecommissionHost takes a host out of the fleet; a host in a cluster is refused.
func (s *Service) DecommissionHost(ctx context.Context, id string) error {
	_, err := s.apply(ctx, command.TypeDecommissionHost, &raftcmdv1.DecommissionHost{Id: id, At: unixNano(s.now())})
	return err
}

// HostRegistration is what an agent reports about its host.
type HostRegistration struct {
	// ID is empty for a new host (one is chosen) or the host's existing ID.
	ID       string
	InfraID  string
	Hostname string
	// Accept makes a new host available at once instead of discovered.
	Accept       bool
	CPUs         int
	MemoryBytes  int64
	Disks        []v1.Disk
	NICs         []v1.NIC
	Labels       map[string]string
	AgentVersion string
}

// RegisterHost records a host or refreshes its inventory. It is the write the agent service
// makes; tests use it to put hosts into state through the same path.
func (s *Service) RegisterHost(ctx context.Context, reg HostRegistration) (*v1.Host, error) {
	id := reg.ID
	if id == "" {
		var err error
		if id, err = s.newID("host_"); err != nil {
			return nil, err
		}
	}
	p := &raftcmdv1.Host{
		Id: id, InfraId: reg.InfraID, Hostname: reg.Hostname, State: state.HostDiscovered,
		Cpus: int32(reg.CPUs), MemoryBytes: reg.MemoryBytes, Labels: reg.Labels, AgentVersion: reg.AgentVersion,
	}
	if reg.Accept {
		p.State = state.HostAvailable
	}
	for _, d := range reg.Disks {
		p.Disks = append(p.Disks, &raftcmdv1.Disk{Name: d.Name, SizeBytes: d.SizeBytes, Rotational: d.Rotational, Serial: d.Serial})
	}
	for _, n := range reg.NICs {
		p.Nics = append(p.Nics, &raftcmdv1.NIC{Name: n.Name, Mac: n.MAC, SpeedMbps: int32(n.SpeedMbps), Addresses: n.Addresses, Up: n.Up})
	}
	res, err := s.apply(ctx, command.TypeRegisterHost, &raftcmdv1.RegisterHost{Host: p, At: unixNano(s.now())})
	if err != nil {
		return nil, err
	}
	out := hostOut(res.(*state.Host))
	return &out, nil
}

// ListMembers lists the coordinator replicas from the Raft configuration.
func (s *Service) ListMembers(_ context.Context) (*v1.MemberList, error) {
	servers, err := s.raft.Servers()
	if err != nil {
		return nil, raftError(err)
	}
	_, leaderID := s.raft.Leader()
	stats := s.raft.Stats()
	out := &v1.MemberList{Items: []v1.Member{}, LeaderID: leaderID}
	for _, sv := range servers {
		m := v1.Member{ID: sv.ID, RaftAddress: sv.Address, Voter: sv.Voter, Leader: sv.ID == leaderID, Role: "follower"}
		if !sv.Voter {
			m.Role = "nonvoter"
		}
		if m.Leader {
			m.Role = "leader"
		}
		if sv.ID == s.cfg.NodeID {
			m.HTTPAddress, m.GRPCAddress = s.cfg.AdvertiseHTTP, s.cfg.AdvertiseGRPC
			m.AppliedIndex = appliedIndex(stats)
			if !m.Leader {
				m.LastContact = stats["last_contact"]
			}
		}
		out.Items = append(out.Items, m)
	}
	slices.SortFunc(out.Items, func(a, b v1.Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Ready tells whether this replica can serve: bootstrapped state and a known leader.
func (s *Service) Ready(_ context.Context) error {
	boot := false
	s.store.Read(func(st *state.State) { boot = st.Bootstrapped() })
	if !boot {
		return v1.Errorf(v1.CodeUnavailable, "not bootstrapped yet")
	}
	if addr, _ := s.raft.Leader(); addr == "" {
		return v1.Errorf(v1.CodeUnavailable, "no coordinator leader is known")
	}
	return nil
}

func appliedIndex(stats map[string]string) uint64 {
	n, _ := strconv.ParseUint(stats["applied_index"], 10, 64)
	return n
}
