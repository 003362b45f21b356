package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/forward"
	"github.com/deployme/deployme/coordinator/raftnode"
	"github.com/deployme/deployme/internal/logkey"
	clusterv1 "github.com/deployme/deployme/proto/cluster/v1"
)

// clusterAdapter gives the service the replicated log wherever the leader is.
type clusterAdapter struct {
	fwd  *forward.Forwarder
	node *raftnode.Node
}

func (c *clusterAdapter) Apply(ctx context.Context, entry []byte) (forward.Result, error) {
	return c.fwd.Apply(ctx, entry)
}
func (c *clusterAdapter) ReadIndex(ctx context.Context) (uint64, error) { return c.fwd.ReadIndex(ctx) }
func (c *clusterAdapter) WaitApplied(ctx context.Context, i uint64) error {
	return c.fwd.WaitApplied(ctx, i)
}
func (c *clusterAdapter) Leader() (string, string)            { return c.node.Leader() }
func (c *clusterAdapter) Servers() ([]raftnode.Server, error) { return c.node.Servers() }
func (c *clusterAdapter) PeerStatus(ctx context.Context, addr string) (*clusterv1.StatusResponse, error) {
	return c.fwd.PeerStatus(ctx, addr)
}
func (c *clusterAdapter) ChangeMembership(ctx context.Context, req *clusterv1.ChangeMembershipRequest) error {
	return c.fwd.ChangeMembership(ctx, c.node, req)
}

// registerSelfLoop records the leader's own addresses once per term (a bootstrapped
// replica is never added through the members API, so nobody else records them).
func (s *Server) registerSelfLoop(ctx context.Context) error {
	for {
		err := s.svc.RegisterSelf(ctx, s.cfg.AdvertiseRaft)
		if err == nil {
			<-ctx.Done()
			return nil
		}
		s.logger.Warn("cannot record own member addresses; retrying", logkey.Err, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// promoteLag is how far behind the leader's commit index a non-voter may be and still be
// promoted: close enough that it can vote without slowing commits while it catches up.
const promoteLag = 64

// promoteLoop promotes non-voters to voters once they have caught up, so a joining replica
// never counts toward quorum while it is still receiving a snapshot.
func (s *Server) promoteLoop(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		servers, err := s.node.Servers()
		if err != nil {
			continue
		}
		for _, sv := range servers {
			if sv.Voter {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := s.fwd.PeerStatus(sctx, sv.Address)
			cancel()
			if err != nil || st.GetAppliedIndex()+promoteLag < s.node.CommitIndex() {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = s.node.AddVoter(actx, sv.ID, sv.Address)
			cancel()
			if err != nil {
				s.logger.Warn("cannot promote caught-up replica", logkey.NodeID, sv.ID, logkey.Err, err)
				continue
			}
			s.logger.Info("promoted replica to voter", logkey.NodeID, sv.ID, "applied_index", st.GetAppliedIndex())
		}
	}
}

// join asks an existing member (any of cfg.Join) to add this fresh replica. A replica that
// already has Raft state is a member already and does nothing.
func (s *Server) join(ctx context.Context) error {
	if len(s.cfg.Join) == 0 || !s.fresh {
		return nil
	}
	b, err := os.ReadFile(s.cfg.AdminTokenFile)
	if err != nil {
		return fmt.Errorf("join: admin token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	body, _ := json.Marshal(v1.AddMemberRequest{ID: s.cfg.NodeID, RaftAddress: s.cfg.AdvertiseRaft, HTTPAddress: s.cfg.AdvertiseHTTP, GRPCAddress: s.cfg.AdvertiseGRPC})
	hc := &http.Client{Timeout: 15 * time.Second}
	backoff := 200 * time.Millisecond
	for {
		for _, u := range s.cfg.Join {
			if !strings.Contains(u, "://") {
				u = "http://" + u
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(u, "/")+"/v1/coordinator/members", bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("join %s: %w", u, err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				s.logger.Warn("join: member not reachable", logkey.Addr, u, logkey.Err, err)
				continue
			}
			var e v1.Error
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusCreated:
				s.logger.Info("joined the coordinator cluster as a non-voter; promotion follows once caught up", logkey.Addr, u)
				return nil
			case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest:
				// Retrying cannot fix a wrong token or a refused request.
				return fmt.Errorf("join refused by %s: %d %s: %s", u, resp.StatusCode, e.Code, e.Message)
			default:
				s.logger.Warn("join: not accepted yet", logkey.Addr, u, logkey.Status, resp.StatusCode, "message", e.Message)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// ensureAgentCALoop creates the agent CA once per cluster (any leader may find it missing:
// a cluster bootstrapped before agents existed, or a crash right after bootstrap).
func (s *Server) ensureAgentCALoop(ctx context.Context) error {
	for {
		err := s.svc.EnsureAgentCA(ctx)
		if err == nil {
			<-ctx.Done()
			return nil
		}
		s.logger.Warn("cannot create the agent CA; retrying", logkey.Err, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
