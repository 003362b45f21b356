package service

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/raftnode"
	"github.com/deployme/deployme/coordinator/state"
	clusterv1 "github.com/deployme/deployme/proto/cluster/v1"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// statusTimeout bounds how long the members list waits for each replica's own status.
const statusTimeout = 500 * time.Millisecond

// ListMembers lists the replicas: Raft's configuration (voters, non-voters), the addresses
// each registered, and each one's progress as it reports it (unreachable ones show none).
func (s *Service) ListMembers(ctx context.Context) (*v1.MemberList, error) {
	servers, err := s.cl.Servers()
	if err != nil {
		return nil, clusterError(err)
	}
	_, leaderID := s.cl.Leader()
	addrs := map[string]*state.Member{}
	s.store.Read(func(st *state.State) {
		for _, m := range st.Members() {
			addrs[m.ID] = m
		}
	})
	out := &v1.MemberList{Items: make([]v1.Member, len(servers)), LeaderID: leaderID}
	var wg sync.WaitGroup
	for i, sv := range servers {
		m := v1.Member{ID: sv.ID, RaftAddress: sv.Address, Voter: sv.Voter, Leader: sv.ID == leaderID, Role: "follower"}
		if !sv.Voter {
			m.Role = "nonvoter"
		}
		if m.Leader {
			m.Role = "leader"
		}
		if a, ok := addrs[sv.ID]; ok {
			m.HTTPAddress, m.GRPCAddress = a.HTTPAddr, a.GRPCAddr
		}
		out.Items[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			st, err := s.cl.PeerStatus(sctx, sv.Address)
			if err != nil {
				out.Items[i].Reachable = false
				return
			}
			out.Items[i].Reachable = true
			out.Items[i].AppliedIndex = st.GetAppliedIndex()
			if lc := st.GetLastContact(); lc != 0 {
				out.Items[i].LastContact = time.Unix(0, lc).UTC().Truncate(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(out.Items, func(a, b v1.Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// AddMember adds a replica as a non-voter and records its addresses; the leader promotes it
// to voter once it has caught up.
func (s *Service) AddMember(ctx context.Context, req *v1.AddMemberRequest) (*v1.Member, error) {
	for field, a := range map[string]string{"raft_address": req.RaftAddress, "http_address": req.HTTPAddress, "grpc_address": req.GRPCAddress} {
		if a == "" && field != "raft_address" {
			continue
		}
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" || port == "0" {
			return nil, v1.InvalidField(field, "%s must be host:port with a host and a fixed port", field)
		}
	}
	servers, err := s.cl.Servers()
	if err != nil {
		return nil, clusterError(err)
	}
	for _, sv := range servers {
		if sv.ID != req.ID && sv.Address == req.RaftAddress {
			return nil, v1.Errorf(v1.CodeConflict, "raft address %s already belongs to member %s", req.RaftAddress, sv.ID).With("field", "raft_address")
		}
	}
	// Addresses first: once Raft adds the replica, every member can already list it.
	if _, err := s.apply(ctx, command.TypeSetMember, &raftcmdv1.SetMember{Id: req.ID, RaftAddr: req.RaftAddress, HttpAddr: req.HTTPAddress, GrpcAddr: req.GRPCAddress}, req.ID); err != nil {
		return nil, err
	}
	var already *raftnode.Server
	for i, sv := range servers {
		if sv.ID == req.ID {
			if sv.Address != req.RaftAddress {
				return nil, v1.Errorf(v1.CodeConflict, "member %s already exists at %s; remove it first to move it", req.ID, sv.Address).With("field", "id")
			}
			already = &servers[i]
		}
	}
	if already == nil {
		if err := s.cl.ChangeMembership(ctx, &clusterv1.ChangeMembershipRequest{Op: clusterv1.ChangeMembershipRequest_ADD_NONVOTER, Id: req.ID, RaftAddress: req.RaftAddress}); err != nil {
			return nil, clusterError(err)
		}
	}
	m := &v1.Member{ID: req.ID, RaftAddress: req.RaftAddress, HTTPAddress: req.HTTPAddress, GRPCAddress: req.GRPCAddress, Role: "nonvoter"}
	if already != nil && already.Voter {
		m.Role, m.Voter = "follower", true
	}
	return m, nil
}

// RemoveMember removes a replica from the Raft configuration and forgets its addresses.
// Removing the last voter is refused: the cluster could never commit again.
func (s *Service) RemoveMember(ctx context.Context, id string) error {
	servers, err := s.cl.Servers()
	if err != nil {
		return clusterError(err)
	}
	found, voters := false, 0
	for _, sv := range servers {
		found = found || sv.ID == id
		if sv.Voter && sv.ID != id {
			voters++
		}
	}
	if !found {
		return v1.Errorf(v1.CodeNotFound, "member %s not found", id)
	}
	if voters == 0 {
		return v1.Errorf(v1.CodeConflict, "member %s is the last voter; removing it would leave no quorum", id).With("field", "id")
	}
	if err := s.cl.ChangeMembership(ctx, &clusterv1.ChangeMembershipRequest{Op: clusterv1.ChangeMembershipRequest_REMOVE, Id: id}); err != nil {
		return clusterError(err)
	}
	if _, err := s.apply(ctx, command.TypeRemoveMember, &raftcmdv1.RemoveMember{Id: id}, ""); err != nil {
		var e *v1.Error
		if errors.As(err, &e) && e.Code == v1.CodeNotFound {
			return nil // never registered addresses: nothing to forget
		}
		return err
	}
	return nil
}

// RegisterSelf records this replica's own addresses (called by the leader on establishing
// leadership, so a bootstrapped replica lists its HTTP and gRPC addresses too).
func (s *Service) RegisterSelf(ctx context.Context, raftAddr string) error {
	var cur *state.Member
	s.store.Read(func(st *state.State) { cur, _ = st.Member(s.cfg.NodeID) })
	if cur != nil && cur.RaftAddr == raftAddr && cur.HTTPAddr == s.cfg.AdvertiseHTTP && cur.GRPCAddr == s.cfg.AdvertiseGRPC {
		return nil
	}
	_, err := s.apply(ctx, command.TypeSetMember, &raftcmdv1.SetMember{Id: s.cfg.NodeID, RaftAddr: raftAddr, HttpAddr: s.cfg.AdvertiseHTTP, GrpcAddr: s.cfg.AdvertiseGRPC}, s.cfg.NodeID)
	return err
}
