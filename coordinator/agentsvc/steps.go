package agentsvc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/coordinator/service"
	"github.com/deployme/deployme/internal/logkey"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// StepBackend is what step dispatch needs from the application layer.
type StepBackend interface {
	// ReportStep records an agent's step update; a stale one (an attempt that is no longer
	// current) returns an error wrapping service.ErrStaleReport.
	ReportStep(ctx context.Context, reporter string, u *agentv1.StepUpdate) error
	// Assignments lists the steps a host must run now.
	Assignments(hostID string) ([]*agentv1.StepAssignment, error)
	// RunningExecutors lists the hosts with something to run.
	RunningExecutors() map[string]bool
	// Changed is closed at the next state change.
	Changed() <-chan struct{}
	// VIPAssignment is what a host must know of its cluster's VIP now (nil: nothing).
	VIPAssignment(hostID string) *agentv1.VIPAssignment
	// ReportVIP records a host's VIP status; a stale one wraps service.ErrStaleReport.
	ReportVIP(ctx context.Context, hostID string, u *agentv1.VIPStatus) error
	// NetworkConfig is the host network the agent must apply (nil: none).
	NetworkConfig(hostID string) *agentv1.NetworkConfig
}

// streamConn is one agent stream as the dispatcher sees it. Sends on a gRPC stream must
// not be concurrent, so the handler and the dispatcher share mu.
type streamConn struct {
	host   string
	mu     sync.Mutex
	stream agentv1.Agent_ConnectServer
	// sent holds the step ids already pushed on this stream; a reconnect starts empty, so
	// everything still running is pushed again (the agent answers repeats from its record).
	sent map[string]bool
	// vip is the VIP assignment last pushed on this stream.
	vip *agentv1.VIPAssignment
	// network is the revision of the network config last pushed on this stream.
	network string
}

func (c *streamConn) send(m *agentv1.CoordinatorMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream.Send(m)
}

// streams is the replica's table of agent streams, and the step dispatcher over them.
type streams struct {
	mu    sync.Mutex
	conns map[string]*streamConn
	poke  chan struct{}
}

func newStreams() *streams {
	return &streams{conns: map[string]*streamConn{}, poke: make(chan struct{}, 1)}
}

func (s *streams) add(c *streamConn) {
	s.mu.Lock()
	s.conns[c.host] = c
	s.mu.Unlock()
	s.wake()
}

func (s *streams) remove(c *streamConn) {
	s.mu.Lock()
	if s.conns[c.host] == c {
		delete(s.conns, c.host)
	}
	s.mu.Unlock()
}

func (s *streams) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// forget makes the dispatcher push a step again on a stream (its report was lost).
func (s *streams) forget(c *streamConn, stepID string) {
	c.mu.Lock()
	delete(c.sent, stepID)
	c.mu.Unlock()
	s.wake()
}

// RunDispatch pushes every running step to the agent that executes it, when that agent's
// stream is on this replica: after each state change, each new stream, and every few
// seconds. Every replica runs it; only the one holding a stream sends on it.
func (s *Server) RunDispatch(ctx context.Context) error {
	if s.cfg.Steps == nil {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		changed := s.cfg.Steps.Changed()
		s.dispatch()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-s.streams.poke:
		case <-tick.C:
		}
	}
}

func (s *Server) dispatch() {
	running := s.cfg.Steps.RunningExecutors()
	s.streams.mu.Lock()
	var todo, all []*streamConn
	for host, c := range s.streams.conns {
		all = append(all, c)
		if running[host] {
			todo = append(todo, c)
		} else {
			c.mu.Lock()
			clear(c.sent)
			c.mu.Unlock()
		}
	}
	s.streams.mu.Unlock()
	for _, c := range todo {
		as, err := s.cfg.Steps.Assignments(c.host)
		if err != nil {
			s.log.Error("cannot prepare steps for host", logkey.HostID, c.host, logkey.Err, err)
		}
		current := map[string]bool{}
		for _, a := range as {
			current[a.GetStepId()] = true
			c.mu.Lock()
			already := c.sent[a.GetStepId()]
			c.mu.Unlock()
			if already {
				continue
			}
			if err := c.send(&agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_Step{Step: a}}); err != nil {
				s.log.Debug("step push failed", logkey.HostID, c.host, "step_id", a.GetStepId(), logkey.Err, err)
				break // the stream is ending; the agent reconnects and gets it again
			}
			c.mu.Lock()
			c.sent[a.GetStepId()] = true
			c.mu.Unlock()
			s.log.Debug("step pushed", logkey.HostID, c.host, "step_id", a.GetStepId())
		}
		c.mu.Lock()
		for id := range c.sent {
			if !current[id] {
				delete(c.sent, id)
			}
		}
		c.mu.Unlock()
	}
	for _, c := range all {
		s.pushVIP(c)
		s.pushNetwork(c)
	}
}

// pushNetwork sends a host its network config when its revision changed since the last
// one sent on this stream (a new stream gets it once; the agent skips a revision it
// already applied).
func (s *Server) pushNetwork(c *streamConn) {
	n := s.cfg.Steps.NetworkConfig(c.host)
	if n == nil {
		return
	}
	c.mu.Lock()
	same := c.network == n.GetRevision()
	c.mu.Unlock()
	if same {
		return
	}
	if err := c.send(&agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_Network{Network: n}}); err != nil {
		s.log.Debug("network push failed", logkey.HostID, c.host, logkey.Err, err)
		return
	}
	c.mu.Lock()
	c.network = n.GetRevision()
	c.mu.Unlock()
}

// pushVIP sends a host its cluster's VIP assignment when it changed since the last one
// sent on this stream (a new stream gets the current one).
func (s *Server) pushVIP(c *streamConn) {
	a := s.cfg.Steps.VIPAssignment(c.host)
	c.mu.Lock()
	same := proto.Equal(a, c.vip)
	c.mu.Unlock()
	if a == nil || same {
		return
	}
	if err := c.send(&agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_Vip{Vip: a}}); err != nil {
		s.log.Debug("vip push failed", logkey.HostID, c.host, logkey.Err, err)
		return
	}
	c.mu.Lock()
	c.vip = a
	c.mu.Unlock()
	s.log.Debug("vip pushed", logkey.HostID, c.host, logkey.ClusterID, a.GetClusterId(), "epoch", a.GetEpoch(), "holder", a.GetHolder())
}

// vipStatus records a host's VIP status.
func (s *Server) vipStatus(ctx context.Context, log *slog.Logger, c *streamConn, u *agentv1.VIPStatus) {
	if s.cfg.Steps == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := s.cfg.Steps.ReportVIP(rctx, c.host, u); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, service.ErrStaleReport) {
			level = slog.LevelDebug
		}
		log.Log(ctx, level, "vip status not recorded", logkey.ClusterID, u.GetClusterId(), "epoch", u.GetEpoch(), logkey.Err, err)
	}
}

// stepUpdate records one update from the agent on c.
func (s *Server) stepUpdate(ctx context.Context, log *slog.Logger, c *streamConn, u *agentv1.StepUpdate) {
	if s.cfg.Steps == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	err := s.cfg.Steps.ReportStep(rctx, c.host, u)
	switch {
	case err == nil:
	case errors.Is(err, service.ErrStaleReport):
		log.Debug("late step update ignored", "step_id", u.GetStepId(), "state", u.GetState(), logkey.Err, err)
	default:
		log.Warn("step update not recorded", "step_id", u.GetStepId(), "state", u.GetState(), logkey.Err, err)
		if u.GetState() != "running" && !errors.Is(err, context.Canceled) {
			// Push the step again: the agent answers a repeat with its stored result.
			s.streams.forget(c, u.GetStepId())
		}
	}
}
