package agentsvc

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/service"
	"github.com/deployme/deployme/internal/logkey"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Backend is what the agent service needs from the application layer.
type Backend interface {
	CertSource
	RegisterAgent(ctx context.Context, joinSecret string, reg service.HostRegistration, csrDER []byte) (*service.AgentRegistration, error)
	RenewAgent(ctx context.Context, hostID string, csrDER []byte) ([]byte, error)
	AgentHost(hostID string) (*v1.Host, bool)
	AgentCoordinators() []string
	RegisterHost(ctx context.Context, reg service.HostRegistration) (*v1.Host, error)
	HostCount() int
}

// Limits.
const (
	// MaxMessageSize bounds every message an agent sends (gRPC's default, made explicit).
	MaxMessageSize = 1 << 20
	// seenPerHost is how many inventory message ids are remembered per host.
	seenPerHost = 32
	// writeTimeout bounds one reply, so a peer that stops reading cannot pin a handler.
	writeTimeout = 10 * time.Second
)

// Config configures the agent service.
type Config struct {
	// ReplicaID names this replica in leases.
	ReplicaID string
	// Advertise is this replica's advertised gRPC address; its host part goes into the
	// endpoint's server certificate.
	Advertise string
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Steps, when set, lets the service push step assignments and record step updates.
	Steps StepBackend
	// HeartbeatInterval, when positive, is the interval agents are told to use, whatever
	// the fleet size (tests); zero means 5 s plus 1 s per 1,000 hosts, at most 30 s.
	HeartbeatInterval time.Duration
}

// Server implements proto/agent/v1.
type Server struct {
	agentv1.UnimplementedAgentServer

	cfg     Config
	backend Backend
	log     *slog.Logger
	now     func() time.Time
	certs   *certCache
	leases  *Leases
	seen    *seenIDs
	streams *streams
}

// New returns the agent service.
func New(cfg Config, b Backend) *Server {
	s := &Server{cfg: cfg, backend: b, log: cfg.Logger, now: cfg.Now, leases: NewLeases(), seen: newSeenIDs(seenPerHost), streams: newStreams()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.certs = &certCache{src: b, names: serverNames(cfg.Advertise), now: s.now}
	return s
}

// Leases is this replica's in-memory lease table.
func (s *Server) Leases() *Leases { return s.leases }

// ServerOptions are the grpc.Server options for the agent endpoint: TLS, message limits,
// keepalive and buffer sizes.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(s.TLSConfig())),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Agents send little, but one coordinator holds a stream per host: the defaults
		// (32 KiB read and write buffers per connection, on top of TLS records and a few
		// goroutines) add up to over 1 GiB for 10,000 agents. Messages here are tiny, so a
		// small read buffer costs nothing, and the write buffer is released between
		// flushes (SharedWriteBuffer) since connections are idle nearly all the time.
		// Measured with make bench-fleet: see docs/performance.md.
		grpc.InitialWindowSize(64 << 10),
		grpc.InitialConnWindowSize(64 << 10),
		grpc.ReadBufferSize(4 << 10),
		grpc.WriteBufferSize(16 << 10),
		grpc.SharedWriteBuffer(true),
	}
}

// Register exchanges a join token and a certificate request for a host identity.
func (s *Server) Register(ctx context.Context, req *agentv1.RegisterRequest) (*agentv1.RegisterResponse, error) {
	if req.GetJoinToken() == "" {
		return nil, status.Error(codes.Unauthenticated, "a join token is required")
	}
	if len(req.GetJoinToken()) > 1024 {
		return nil, status.Error(codes.Unauthenticated, "unknown or revoked join token")
	}
	if len(req.GetCsrDer()) == 0 {
		return nil, grpcError(v1.InvalidField("csr_der", "a certificate request is required"))
	}
	if len(req.GetCsrDer()) > 16<<10 {
		return nil, grpcError(v1.InvalidField("csr_der", "the certificate request is larger than 16 KiB"))
	}
	reg, err := registration(req.GetInventory())
	if err != nil {
		return nil, grpcError(err)
	}
	out, err := s.backend.RegisterAgent(ctx, req.GetJoinToken(), reg, req.GetCsrDer())
	if err != nil {
		return nil, grpcError(err)
	}
	s.log.Info("agent registered", logkey.HostID, out.HostID, "infra_id", out.InfraID)
	return &agentv1.RegisterResponse{
		HostId: out.HostID, InfraId: out.InfraID, CertificateDer: out.CertificateDER, CaDer: out.CADER,
		Coordinators: s.backend.AgentCoordinators(),
	}, nil
}

// Renew issues a new certificate for the caller's key.
func (s *Server) Renew(ctx context.Context, req *agentv1.RenewRequest) (*agentv1.RenewResponse, error) {
	host, err := clientHost(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetCsrDer()) == 0 || len(req.GetCsrDer()) > 16<<10 {
		return nil, grpcError(v1.InvalidField("csr_der", "a certificate request of at most 16 KiB is required"))
	}
	der, err := s.backend.RenewAgent(ctx, host, req.GetCsrDer())
	if err != nil {
		return nil, grpcError(err)
	}
	return &agentv1.RenewResponse{CertificateDer: der}, nil
}

// clientHost is the host ID of the caller's verified client certificate.
func clientHost(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "a client certificate from the agent CA is required")
	}
	leaf := info.State.VerifiedChains[0][0]
	if !hasClientAuth(leaf) || leaf.Subject.CommonName == "" {
		return "", status.Error(codes.Unauthenticated, "the client certificate is not an agent certificate")
	}
	return leaf.Subject.CommonName, nil
}

func hasClientAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return true
		}
	}
	return false
}

// heartbeatInterval grows with the fleet so that heartbeats stay a bounded load: 5 s plus
// 1 s per 1,000 hosts, at most 30 s.
func heartbeatInterval(hosts int) time.Duration {
	d := 5*time.Second + time.Duration(hosts/1000)*time.Second
	return min(d, 30*time.Second)
}

// interval is the heartbeat interval agents are told to use now.
func (s *Server) interval() time.Duration {
	if s.cfg.HeartbeatInterval > 0 {
		return s.cfg.HeartbeatInterval
	}
	return heartbeatInterval(s.backend.HostCount())
}

// Connect is the agent's long-lived stream.
func (s *Server) Connect(stream agentv1.Agent_ConnectServer) error {
	ctx := stream.Context()
	host, err := clientHost(ctx)
	if err != nil {
		return err
	}
	h, err := s.activeHost(host)
	if err != nil {
		return err
	}
	log := s.log.With(logkey.HostID, host)

	// Messages are read in this goroutine, one at a time: a stream's memory is bounded by the
	// message size limit whatever the agent sends, and no extra goroutine (and stack) is
	// kept per agent, which matters at 10,000 streams per replica. A dead peer is found by
	// gRPC keepalives; a live but silent agent keeps its stream, while liveness goes by the
	// lease, which only heartbeats renew.
	interval := s.interval()
	recv := stream.Recv

	first, err := recv()
	if err != nil {
		return streamEnd(err)
	}
	if first.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "the first message must be hello")
	}
	s.leases.Renew(host, s.cfg.ReplicaID, s.now())
	log.Info("agent connected", "agent_version", first.GetHello().GetAgentVersion())
	conn := &streamConn{host: host, stream: stream, sent: map[string]bool{}}
	if err := conn.send(&agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_Welcome{Welcome: &agentv1.Welcome{
		HostId: host, HeartbeatIntervalMs: interval.Milliseconds(), Coordinators: s.backend.AgentCoordinators(),
	}}}); err != nil {
		return err
	}
	// Results the agent finished while it had no stream: recorded first, so the dispatcher
	// does not push those steps again.
	for _, u := range first.GetHello().GetLastSteps() {
		s.stepUpdate(ctx, log, conn, u)
	}
	s.streams.add(conn)
	defer s.streams.remove(conn)
	for {
		m, err := recv()
		if err != nil {
			log.Info("agent stream ended", logkey.Err, err)
			return streamEnd(err)
		}
		switch body := m.GetBody().(type) {
		case *agentv1.AgentMessage_Heartbeat:
			if _, err := s.activeHost(host); err != nil {
				return err
			}
			s.leases.Renew(host, s.cfg.ReplicaID, s.now())
			interval = s.interval()
			if err := conn.send(&agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_HeartbeatAck{HeartbeatAck: &agentv1.HeartbeatAck{
				Seq: body.Heartbeat.GetSeq(), HeartbeatIntervalMs: interval.Milliseconds(),
			}}}); err != nil {
				return err
			}
		case *agentv1.AgentMessage_Inventory:
			s.leases.Renew(host, s.cfg.ReplicaID, s.now())
			if err := s.inventory(ctx, h, m.GetId(), body.Inventory); err != nil {
				// The agent resends its inventory on its own schedule; a failed update is
				// not worth ending the stream for, unless the host is gone.
				log.Warn("inventory update failed", "message_id", m.GetId(), logkey.Err, err)
				if _, herr := s.activeHost(host); herr != nil {
					return herr
				}
			}
		case *agentv1.AgentMessage_StepUpdate:
			s.leases.Renew(host, s.cfg.ReplicaID, s.now())
			s.stepUpdate(ctx, log, conn, body.StepUpdate)
		case *agentv1.AgentMessage_VipStatus:
			s.vipStatus(ctx, log, conn, body.VipStatus)
		case *agentv1.AgentMessage_NetworkResult:
			r := body.NetworkResult
			log.Info("host network", "revision", r.GetRevision(), "state", r.GetState(), "changes", len(r.GetChanges()), "error", r.GetError())
		case *agentv1.AgentMessage_Hello:
			return status.Error(codes.InvalidArgument, "hello is only valid as the first message")
		default:
			return status.Error(codes.InvalidArgument, "empty or unknown message")
		}
	}
}

// activeHost returns the host if it is registered and not decommissioned.
func (s *Server) activeHost(id string) (*v1.Host, error) {
	h, ok := s.backend.AgentHost(id)
	if !ok || h.State == v1.HostDecommissioned {
		return nil, status.Errorf(codes.PermissionDenied, "host %s is not registered or was decommissioned", id)
	}
	return h, nil
}

// streamEnd turns the reason a stream ended into its status (a clean close is nil).
func streamEnd(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return grpcError(err)
}

// inventory applies an inventory report once per message id, and only when it changes what
// state holds.
func (s *Server) inventory(ctx context.Context, h *v1.Host, id string, inv *agentv1.Inventory) error {
	if id != "" && s.seen.has(h.ID, id) {
		return nil
	}
	reg, err := registration(inv)
	if err != nil {
		return err
	}
	cur, ok := s.backend.AgentHost(h.ID)
	if !ok {
		return v1.Errorf(v1.CodeNotFound, "host %s not found", h.ID)
	}
	reg.ID, reg.InfraID = cur.ID, cur.InfraID
	if !sameInventory(cur, reg) {
		if _, err := s.backend.RegisterHost(ctx, reg); err != nil {
			return err
		}
	}
	if id != "" {
		s.seen.add(h.ID, id)
	}
	return nil
}
