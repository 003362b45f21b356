package service

import (
	"context"
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
	if a := req.AutoAccept; a != nil {
		p.AutoAccept = &raftcmdv1.AutoAccept{MacPrefixes: a.MACPrefixes, Serials: a.Serials, Labels: a.Labels}
	}
	if n := req.Network; n != nil {
		p.Network = &raftcmdv1.Network{Cidr: n.CIDR, Gateway: n.Gateway, Dns: n.DNS, Mtu: int32(n.MTU), Interface: n.Interface}
		for _, b := range n.Bonds {
			p.Network.Bonds = append(p.Network.Bonds, &raftcmdv1.NetworkBond{Name: b.Name, Mode: b.Mode, Interfaces: b.Interfaces})
		}
		for _, v := range n.VLANs {
			p.Network.Vlans = append(p.Network.Vlans, &raftcmdv1.NetworkVLAN{Name: v.Name, Link: v.Link, Id: int32(v.ID)})
		}
		for _, b := range n.Bridges {
			p.Network.Bridges = append(p.Network.Bridges, &raftcmdv1.NetworkBridge{Name: b.Name, Interfaces: b.Interfaces})
		}
	}
	a, err := s.apply(ctx, command.TypeCreateInfra, &raftcmdv1.CreateInfra{Infra: p}, id)
	if err != nil {
		return nil, err
	}
	if i, ok := a.Value.(*state.Infra); ok && i.ID == a.ID {
		out := infraOut(i)
		return &out, nil
	}
	return written(s.localInfra(a.ID))
}

// ListInfras lists infras, the managed one included.
func (s *Service) ListInfras(ctx context.Context) (*v1.InfraList, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	out := &v1.InfraList{Items: []v1.Infra{}}
	s.store.Read(func(st *state.State) {
		for _, i := range st.Infras() {
			out.Items = append(out.Items, infraOut(i))
		}
	})
	return out, nil
}

// GetInfra returns one infra.
func (s *Service) GetInfra(ctx context.Context, id string) (*v1.Infra, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	return s.localInfra(id)
}

func (s *Service) localInfra(id string) (*v1.Infra, error) {
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
	if !s.exists(ctx, func(st *state.State) bool { _, ok := st.Infra(id); return ok }) {
		return notFound("infra", id)
	}
	_, err := s.apply(ctx, command.TypeDeleteInfra, &raftcmdv1.DeleteInfra{Id: id}, "")
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
	if !s.exists(ctx, func(st *state.State) bool { _, ok := st.Infra(infraID); return ok }) {
		return nil, notFound("infra", infraID)
	}
	now := s.now()
	a, err := s.apply(ctx, command.TypeCreateJoinToken, &raftcmdv1.CreateJoinToken{JoinToken: &raftcmdv1.JoinToken{
		Id: id, InfraId: infraID, Hash: HashSecret(secret), ExpiresAt: unixNano(now.Add(ttl)), MaxUses: int32(maxUses), CreatedAt: unixNano(now),
	}}, id)
	if err != nil {
		return nil, err
	}
	first := a.ID
	jt, _ := a.Value.(*state.JoinToken)
	if jt == nil || jt.ID != first {
		s.store.Read(func(st *state.State) { jt, _ = st.JoinToken(first) })
	}
	if jt == nil {
		return nil, v1.Errorf(v1.CodeConflict, "the join token was revoked right after its creation")
	}
	out := joinTokenOut(jt)
	if first != id {
		// An idempotent retry: the secret was shown once, in the first answer, and is
		// not stored anywhere it could be shown from again.
		return &out, nil
	}
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
	cmd := "curl -sfL http://" + http + "/install.sh | sh -s -- --coordinator " + grpc + " --join-token " + secret
	if fp := s.AgentCAFingerprint(); fp != "" {
		// The agent pins the CA on its first contact, before it has any certificate.
		cmd += " --ca-hash sha256:" + fp
	}
	return cmd
}

// ListJoinTokens lists an infra's join tokens without their secrets.
func (s *Service) ListJoinTokens(ctx context.Context, infraID string) (*v1.JoinTokenList, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
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
	_, err := s.apply(ctx, command.TypeDeleteJoinToken, &raftcmdv1.DeleteJoinToken{Id: id}, "")
	return err
}

// ListHosts pages through hosts in registration order.
func (s *Service) ListHosts(ctx context.Context, q rest.HostQuery) (*v1.HostList, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
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
func (s *Service) GetHost(ctx context.Context, id string) (*v1.Host, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	return s.localHost(id)
}

func (s *Service) localHost(id string) (*v1.Host, error) {
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
	_, err := s.apply(ctx, command.TypeDecommissionHost, &raftcmdv1.DecommissionHost{Id: id, At: unixNano(s.now())}, id)
	return err
}

// AcceptHost makes a discovered host available to clusters and returns it. Accepting a host
// that is already available or assigned returns it unchanged; a decommissioned one is refused.
func (s *Service) AcceptHost(ctx context.Context, id string) (*v1.Host, error) {
	a, err := s.apply(ctx, command.TypeAcceptHost, &raftcmdv1.AcceptHost{Id: id, At: unixNano(s.now())}, id)
	if err != nil {
		return nil, err
	}
	if h, ok := a.Value.(*state.Host); ok && h.ID == a.ID {
		out := hostOut(h)
		return &out, nil
	}
	return written(s.localHost(a.ID))
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
	Serial       string
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
	reg.ID = id
	p := hostMsg(reg)
	a, err := s.apply(ctx, command.TypeRegisterHost, &raftcmdv1.RegisterHost{Host: p, At: unixNano(s.now())}, id)
	if err != nil {
		return nil, err
	}
	if h, ok := a.Value.(*state.Host); ok && h.ID == a.ID {
		out := hostOut(h)
		return &out, nil
	}
	return written(s.localHost(a.ID))
}

// readyWait bounds how long a readiness probe waits for this replica to catch up.
const readyWait = 2 * time.Second

// Ready tells whether this replica can serve: bootstrapped, a leader reachable, and this
// replica's state caught up with everything committed (so the tokens and objects created
// before a restart are all there when it reports ready).
func (s *Service) Ready(ctx context.Context) error {
	boot := false
	s.store.Read(func(st *state.State) { boot = st.Bootstrapped() })
	if !boot {
		return v1.Errorf(v1.CodeUnavailable, "not bootstrapped yet (or still replaying the log)")
	}
	if addr, _ := s.cl.Leader(); addr == "" {
		return v1.Errorf(v1.CodeUnavailable, "no coordinator leader is known")
	}
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	idx, err := s.cl.ReadIndex(ctx)
	if err != nil {
		return v1.Errorf(v1.CodeUnavailable, "leader not reachable: %v", err)
	}
	if err := s.cl.WaitApplied(ctx, idx); err != nil {
		return v1.Errorf(v1.CodeUnavailable, "still catching up with the log")
	}
	return nil
}

// hostMsg is a registration as the Raft command's host message.
func hostMsg(reg HostRegistration) *raftcmdv1.Host {
	p := &raftcmdv1.Host{
		Id: reg.ID, InfraId: reg.InfraID, Hostname: reg.Hostname, State: state.HostDiscovered,
		Cpus: int32(reg.CPUs), MemoryBytes: reg.MemoryBytes, Labels: reg.Labels, AgentVersion: reg.AgentVersion, Serial: reg.Serial,
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
	return p
}
