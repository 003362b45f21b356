package coordclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/internal/logkey"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// redirectError ends a session when the coordinator sends the agent elsewhere.
type redirectError struct{ addr string }

func (e *redirectError) Error() string { return "redirected to " + e.addr }

// decommissionedAfter is how many coordinators in a row must refuse the host before the
// agent believes it was decommissioned (a replica catches up with the log before refusing,
// so one refusal is already reliable; a few guard against a misbehaving replica).
const decommissionedAfter = 3

// stream keeps a session open until ctx ends, reconnecting after every failure. It returns
// ErrDecommissioned once coordinators keep refusing the host: retrying would never succeed.
func (c *Client) stream(ctx context.Context) error {
	refused := 0
	for attempt := 0; ctx.Err() == nil; attempt++ {
		addr := c.current()
		welcomed, err := c.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) == codes.PermissionDenied {
			if refused++; refused >= decommissionedAfter {
				return fmt.Errorf("%w: %v", ErrDecommissioned, err)
			}
		} else {
			refused = 0
		}
		var rd *redirectError
		switch {
		case errors.As(err, &rd):
			c.log.Info("redirected", logkey.Addr, addr, "to", rd.addr)
			c.prefer(rd.addr)
			attempt = 0
		case welcomed:
			// The replica was good: try it first again, from a short delay.
			attempt = 0
		default:
			c.advance()
		}
		d := c.backoff(attempt)
		c.log.Warn("coordinator stream ended, reconnecting", logkey.Addr, addr, logkey.Err, err, "retry_in", d)
		if sleep(ctx, d) != nil {
			return nil
		}
	}
	return nil
}

type received struct {
	msg *agentv1.CoordinatorMessage
	err error
}

func newID() string { return rand.Text() }

// session runs one Connect stream to addr. welcomed reports whether the coordinator
// accepted the agent (so the address is a good one).
func (c *Client) session(ctx context.Context, addr string) (welcomed bool, err error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mutualTLS(c.cert, c.ca))))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	api := agentv1.NewAgentClient(conn)

	sctx, cancel := context.WithCancel(ctx)
	stream, err := api.Connect(sctx)
	if err != nil {
		cancel()
		return false, err
	}
	recv := make(chan received)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			m, err := stream.Recv()
			select {
			case recv <- received{m, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		<-recvDone
	}()

	// Results finished while no stream was up reach the coordinator with Hello.
	hello := &agentv1.Hello{AgentVersion: c.cfg.AgentVersion}
	if c.cfg.Steps != nil {
		hello.LastSteps = c.cfg.Steps.Finished(lastSteps)
	}
	if err := stream.Send(&agentv1.AgentMessage{Id: newID(), Body: &agentv1.AgentMessage_Hello{Hello: hello}}); err != nil {
		return false, fmt.Errorf("hello: %w", err)
	}
	interval, err := c.awaitWelcome(sctx, recv)
	if err != nil {
		return false, err
	}
	c.log.Info("connected", logkey.Addr, addr, logkey.HostID, c.id.HostID, "heartbeat_interval", interval)
	if c.cfg.Heard != nil {
		c.cfg.Heard()
	}
	sendVIP := func(all bool) error {
		sts := c.takeVIP(all)
		for i, st := range sts {
			if err := stream.Send(&agentv1.AgentMessage{Id: newID(), Body: &agentv1.AgentMessage_VipStatus{VipStatus: st}}); err != nil {
				c.markVIPDirty(sts[i:])
				return fmt.Errorf("vip status: %w", err)
			}
		}
		return nil
	}
	if err := sendVIP(true); err != nil {
		return true, err
	}

	heartbeat := time.NewTicker(interval)
	defer heartbeat.Stop()
	invTick := time.NewTicker(c.cfg.InventoryInterval)
	defer invTick.Stop()
	renew := time.NewTimer(time.Until(renewAt(c.leaf)))
	defer renew.Stop()

	// The coordinator may have missed any update while the agent was away: send it whole.
	var sent *inventory.Inventory
	sendInventory := func(force bool) error {
		inv, err := c.cfg.Inventory(sctx)
		if err != nil {
			c.log.Warn("collecting inventory", logkey.Err, err)
			return nil
		}
		if !force && !inventory.Changed(sent, inv) {
			return nil
		}
		if err := stream.Send(&agentv1.AgentMessage{Id: newID(), Body: &agentv1.AgentMessage_Inventory{Inventory: c.toProto(inv)}}); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		sent = inv
		return nil
	}
	if err := sendInventory(true); err != nil {
		return true, err
	}
	for {
		select {
		case <-sctx.Done():
			return true, sctx.Err()
		case r := <-recv:
			if r.err != nil {
				return true, r.err
			}
			if c.cfg.Heard != nil {
				c.cfg.Heard()
			}
			switch b := r.msg.GetBody().(type) {
			case *agentv1.CoordinatorMessage_HeartbeatAck:
				if ms := b.HeartbeatAck.GetHeartbeatIntervalMs(); ms > 0 && time.Duration(ms)*time.Millisecond != interval {
					interval = time.Duration(ms) * time.Millisecond
					heartbeat.Reset(interval)
					c.log.Debug("heartbeat interval changed", "heartbeat_interval", interval)
				}
			case *agentv1.CoordinatorMessage_Redirect:
				if b.Redirect.GetAddress() == "" {
					c.log.Warn("ignoring a redirect without an address")
					continue
				}
				return true, &redirectError{addr: b.Redirect.GetAddress()}
			case *agentv1.CoordinatorMessage_Welcome:
				c.learnCoordinators(b.Welcome.GetCoordinators())
			case *agentv1.CoordinatorMessage_Vip:
				if c.cfg.VIP == nil {
					c.log.Debug("vip assignment dropped: no VIP handler", logkey.ClusterID, b.Vip.GetClusterId())
					continue
				}
				c.cfg.VIP.SetVIP(b.Vip)
			case *agentv1.CoordinatorMessage_Network:
				if c.cfg.Network == nil {
					c.log.Debug("network config dropped: no network handler", "revision", b.Network.GetRevision())
					continue
				}
				// Like steps, an apply outlives the stream that carried it.
				c.cfg.Network.ApplyNetwork(ctx, b.Network, c.queueNetResult)
			case *agentv1.CoordinatorMessage_Step:
				if c.cfg.Steps == nil {
					c.log.Warn("step assignment dropped: this agent runs no steps", "step_id", b.Step.GetStepId(), "step", b.Step.GetName())
					continue
				}
				// Steps outlive the stream: a reconnect must not kill a kubeadm init.
				c.cfg.Steps.Handle(ctx, b.Step, c.queueUpdate)
			default:
				c.log.Debug("ignoring unknown coordinator message")
			}
		case r := <-c.netResults:
			if err := stream.Send(&agentv1.AgentMessage{Id: newID(), Body: &agentv1.AgentMessage_NetworkResult{NetworkResult: r}}); err != nil {
				return true, fmt.Errorf("network result: %w", err)
			}
		case <-c.vipPoke:
			if err := sendVIP(false); err != nil {
				return true, err
			}
		case u := <-c.updates:
			if err := stream.Send(&agentv1.AgentMessage{Id: newID(), Body: &agentv1.AgentMessage_StepUpdate{StepUpdate: u}}); err != nil {
				return true, fmt.Errorf("step update: %w", err)
			}
		case <-heartbeat.C:
			c.seq++
			if err := stream.Send(&agentv1.AgentMessage{Id: newID(), Body: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{Seq: c.seq}}}); err != nil {
				return true, fmt.Errorf("heartbeat: %w", err)
			}
		case <-invTick.C:
			if err := sendInventory(false); err != nil {
				return true, err
			}
		case <-renew.C:
			if err := c.renew(sctx, api); err != nil {
				c.log.Warn("certificate renewal failed", logkey.Err, err, "retry_in", c.cfg.RenewRetry)
				renew.Reset(c.cfg.RenewRetry)
			} else {
				renew.Reset(time.Until(renewAt(c.leaf)))
			}
		}
	}
}

// lastSteps is how many stored results go with Hello.
const lastSteps = 64

// queueUpdate hands a step update to whichever stream is up now or next. When the queue is
// full the update is dropped: progress is only informative, and a final result is stored by
// the step runner and sent again with the next Hello or the next repeat of its assignment.
func (c *Client) queueUpdate(u *agentv1.StepUpdate) {
	select {
	case c.updates <- u:
	default:
		c.log.Warn("step update dropped: queue full", "step_id", u.GetStepId(), "state", u.GetState())
	}
}

// queueNetResult hands a network result to the current or next stream (dropped when the
// queue is full: the coordinator sends the config again on the next stream).
func (c *Client) queueNetResult(r *agentv1.NetworkResult) {
	select {
	case c.netResults <- r:
	default:
		c.log.Warn("network result dropped: queue full", "revision", r.GetRevision())
	}
}

// awaitWelcome waits for the coordinator's answer to Hello and returns the heartbeat
// interval it asks for.
func (c *Client) awaitWelcome(ctx context.Context, recv <-chan received) (time.Duration, error) {
	t := time.NewTimer(c.cfg.WelcomeTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.C:
		return 0, errors.New("no welcome from the coordinator")
	case r := <-recv:
		if r.err != nil {
			return 0, r.err
		}
		if rd := r.msg.GetRedirect(); rd != nil && rd.GetAddress() != "" {
			return 0, &redirectError{addr: rd.GetAddress()}
		}
		w := r.msg.GetWelcome()
		if w == nil {
			return 0, fmt.Errorf("expected welcome, got %T", r.msg.GetBody())
		}
		c.learnCoordinators(w.GetCoordinators())
		if ms := w.GetHeartbeatIntervalMs(); ms > 0 {
			return time.Duration(ms) * time.Millisecond, nil
		}
		return c.cfg.HeartbeatInterval, nil
	}
}

// learnCoordinators stores the replica list a coordinator sent, if it is news.
func (c *Client) learnCoordinators(addrs []string) {
	if len(addrs) == 0 || slices.Equal(addrs, c.id.Coordinators) {
		return
	}
	id := *c.id
	id.Coordinators = slices.Clone(addrs)
	if err := c.dir.saveIdentity(&id); err != nil {
		c.log.Warn("saving the coordinator list", logkey.Err, err)
		return
	}
	c.id = &id
	c.setAddrs(id.Coordinators)
}

// renew asks for a new certificate for the same key and stores it; new connections use it.
func (c *Client) renew(ctx context.Context, api agentv1.AgentClient) error {
	csr, err := newCSR(c.key)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	resp, err := api.Renew(rctx, &agentv1.RenewRequest{CsrDer: csr})
	if err != nil {
		return err
	}
	leaf, err := checkIssued(resp.GetCertificateDer(), c.key, c.ca)
	if err != nil {
		return err
	}
	if err := c.dir.saveCert(certFile, leaf.Raw, 0o600); err != nil {
		return err
	}
	c.setCert(leaf)
	c.log.Info("certificate renewed", "not_after", leaf.NotAfter)
	return nil
}
