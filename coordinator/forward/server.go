package forward

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/deployme/deployme/coordinator/raftnode"
	"github.com/deployme/deployme/coordinator/state"
	clusterv1 "github.com/deployme/deployme/proto/cluster/v1"
)

// Membership is the local Raft configuration changes and status.
type Membership interface {
	AddNonvoter(ctx context.Context, id, addr string) error
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	ID() string
	State() string
	AppliedIndex() uint64
	LastContact() time.Time
}

// LeaseSource is this replica's table of agent leases (host ID -> last heard from).
type LeaseSource interface {
	LastSeen() map[string]time.Time
}

// Server is the leader's side of proto/cluster/v1 (and any replica's for Status, Leases).
type Server struct {
	clusterv1.UnimplementedClusterServer
	f       *Forwarder
	members Membership
	leases  LeaseSource
}

// NewServer returns the gRPC service over a forwarder. leases may be nil (no agents here).
func NewServer(f *Forwarder, m Membership, leases LeaseSource) *Server {
	return &Server{f: f, members: m, leases: leases}
}

// Leases reports this replica's agent leases.
func (s *Server) Leases(context.Context, *clusterv1.LeasesRequest) (*clusterv1.LeasesResponse, error) {
	resp := &clusterv1.LeasesResponse{}
	if s.leases == nil {
		return resp, nil
	}
	for id, t := range s.leases.LastSeen() {
		resp.Leases = append(resp.Leases, &clusterv1.LeasesResponse_Lease{HostId: id, LastSeen: t.UnixNano()})
	}
	return resp, nil
}

// notLeader tells the caller nothing was proposed and where the leader is.
func (s *Server) notLeader() error {
	addr, _ := s.f.raft.Leader()
	return status.Errorf(codes.FailedPrecondition, "not the leader; leader is %q", addr)
}

// Apply proposes a forwarded entry.
func (s *Server) Apply(ctx context.Context, req *clusterv1.ApplyRequest) (*clusterv1.ApplyResponse, error) {
	if !s.f.raft.IsLeader() || !s.f.cfg.Ready() {
		return nil, s.notLeader()
	}
	idx, val, err := s.f.raft.ApplyIndexed(ctx, req.GetEntry())
	switch {
	case errors.Is(err, raftnode.ErrNotLeader):
		return nil, s.notLeader()
	case err != nil:
		// Proposed, outcome unknown: the caller must not report failure.
		return nil, status.Error(codes.Aborted, err.Error())
	}
	resp := &clusterv1.ApplyResponse{Index: idx}
	resp.ValueType, resp.ValueJson = encodeValue(val)
	if r, ok := val.(*state.Error); ok {
		resp.Refusal = &clusterv1.Refusal{Kind: int32(r.Kind), Message: r.Message, Field: r.Field}
		if len(r.Details) > 0 {
			resp.Refusal.DetailsJson, _ = json.Marshal(r.Details)
		}
	}
	return resp, nil
}

// ReadIndex serves a follower's linearizable read.
func (s *Server) ReadIndex(ctx context.Context, _ *clusterv1.ReadIndexRequest) (*clusterv1.ReadIndexResponse, error) {
	if !s.f.raft.IsLeader() {
		return nil, s.notLeader()
	}
	idx, err := s.f.localReadIndex()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &clusterv1.ReadIndexResponse{Index: idx}, nil
}

// ChangeMembership changes the Raft configuration (leader only).
func (s *Server) ChangeMembership(ctx context.Context, req *clusterv1.ChangeMembershipRequest) (*clusterv1.ChangeMembershipResponse, error) {
	if !s.f.raft.IsLeader() {
		return nil, s.notLeader()
	}
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	var err error
	switch req.GetOp() {
	case clusterv1.ChangeMembershipRequest_ADD_NONVOTER, clusterv1.ChangeMembershipRequest_ADD_VOTER:
		if req.GetRaftAddress() == "" {
			return nil, status.Error(codes.InvalidArgument, "raft_address is required")
		}
		if req.GetOp() == clusterv1.ChangeMembershipRequest_ADD_VOTER {
			err = s.members.AddVoter(ctx, req.GetId(), req.GetRaftAddress())
		} else {
			err = s.members.AddNonvoter(ctx, req.GetId(), req.GetRaftAddress())
		}
	case clusterv1.ChangeMembershipRequest_REMOVE:
		err = s.members.RemoveServer(ctx, req.GetId())
	default:
		return nil, status.Error(codes.InvalidArgument, "unknown membership operation")
	}
	if errors.Is(err, raftnode.ErrNotLeader) {
		return nil, s.notLeader()
	}
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &clusterv1.ChangeMembershipResponse{}, nil
}

// Status reports this replica's Raft progress.
func (s *Server) Status(ctx context.Context, _ *clusterv1.StatusRequest) (*clusterv1.StatusResponse, error) {
	resp := &clusterv1.StatusResponse{
		Id: s.members.ID(), State: s.members.State(),
		AppliedIndex: s.members.AppliedIndex(), CommitIndex: s.f.raft.CommitIndex(),
	}
	if lc := s.members.LastContact(); !lc.IsZero() {
		resp.LastContact = lc.UnixNano()
	}
	return resp, nil
}
