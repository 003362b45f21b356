// Package agenttest is a fake coordinator for agent tests: the proto/agent/v1 service over
// real TLS on 127.0.0.1:0 with a throwaway CA. It records what agents send, and can refuse
// registrations, end streams and redirect agents, so the agent's registration, reconnect
// and failover logic is tested against a real gRPC server without the coordinator.
package agenttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// CA is a throwaway agent CA. Several fake coordinators sharing one behave as replicas of
// one fleet: a certificate issued by one is accepted by all.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "agenttest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key}
}

// Hash is the CA's pin, as the agent's --ca-hash takes it.
func (ca *CA) Hash() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (ca *CA) sign(tmpl *x509.Certificate, pub any) ([]byte, error) {
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
}

// Options configure a fake coordinator. The zero value works.
type Options struct {
	// CA defaults to a new one.
	CA *CA
	// HostID and InfraID are what Register hands out (defaults "host-1", "infra-1").
	HostID, InfraID string
	// Coordinators is sent in RegisterResponse and Welcome; default: none.
	Coordinators []string
	// HeartbeatInterval is sent in Welcome (default 50ms).
	HeartbeatInterval time.Duration
	// ClientLifetime is the validity of issued client certificates (default 24h).
	ClientLifetime time.Duration
}

// Message is one AgentMessage received on a stream.
type Message struct {
	// Stream numbers Connect streams from 1, in the order they were opened.
	Stream int
	HostID string
	Msg    *agentv1.AgentMessage
}

// Coordinator is a running fake.
type Coordinator struct {
	agentv1.UnimplementedAgentServer
	// Addr is the 127.0.0.1 address it listens on.
	Addr string
	CA   *CA

	opts Options
	srv  *grpc.Server

	mu            sync.Mutex
	registerErr   error
	registrations []*agentv1.RegisterRequest
	renewals      int
	messages      []Message
	streams       int
	// live holds the open streams by number.
	live map[int]*liveStream
}

// liveStream is one open Connect stream: what to send on it, and a way to end it.
type liveStream struct {
	out    chan *agentv1.CoordinatorMessage
	closed chan struct{}
	once   sync.Once
}

func (l *liveStream) close() { l.once.Do(func() { close(l.closed) }) }

// send queues m unless the stream has ended.
func (l *liveStream) send(m *agentv1.CoordinatorMessage) {
	select {
	case l.out <- m:
	case <-l.closed:
	}
}

// Start runs a fake coordinator until the test ends.
func Start(t testing.TB, opts Options) *Coordinator {
	t.Helper()
	if opts.CA == nil {
		opts.CA = NewCA(t)
	}
	if opts.HostID == "" {
		opts.HostID = "host-1"
	}
	if opts.InfraID == "" {
		opts.InfraID = "infra-1"
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 50 * time.Millisecond
	}
	if opts.ClientLifetime == 0 {
		opts.ClientLifetime = 24 * time.Hour
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := opts.CA.sign(&x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "agenttest coordinator"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Deliberately not the dialled address: agents must not check names.
		DNSNames: []string{"coordinator.invalid"},
	}, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(opts.CA.Cert)
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der, opts.CA.Cert.Raw}, PrivateKey: key}},
		// Register comes without a client certificate; Renew and Connect check for one.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
	}
	c := &Coordinator{
		Addr: lis.Addr().String(),
		CA:   opts.CA,
		opts: opts,
		srv:  grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg))),
		live: map[int]*liveStream{},
	}
	agentv1.RegisterAgentServer(c.srv, c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		c.Stop()
		<-done
	})
	return c
}

// Stop ends every stream and stops listening: the coordinator is down.
func (c *Coordinator) Stop() { c.srv.Stop() }

// RefuseRegistrations makes Register fail with err (a gRPC status error); nil accepts again.
func (c *Coordinator) RefuseRegistrations(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.registerErr = err
}

// Registrations returns the Register requests received, refused ones included.
func (c *Coordinator) Registrations() []*agentv1.RegisterRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*agentv1.RegisterRequest, len(c.registrations))
	for i, r := range c.registrations {
		out[i] = proto.Clone(r).(*agentv1.RegisterRequest)
	}
	return out
}

// Renewals counts the successful Renew calls.
func (c *Coordinator) Renewals() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.renewals
}

// Messages returns every message received on every stream, in order of arrival.
func (c *Coordinator) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Message, len(c.messages))
	for i, m := range c.messages {
		out[i] = Message{Stream: m.Stream, HostID: m.HostID, Msg: proto.Clone(m.Msg).(*agentv1.AgentMessage)}
	}
	return out
}

// Streams counts the Connect streams opened so far.
func (c *Coordinator) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams
}

// CloseStreams ends every open stream with Unavailable, as a replica shutting down would.
func (c *Coordinator) CloseStreams() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, l := range c.live {
		l.close()
		delete(c.live, id)
	}
}

// Redirect tells the agent on every open stream to go to addr.
func (c *Coordinator) Redirect(addr string) {
	c.send(&agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_Redirect{Redirect: &agentv1.Redirect{Address: addr}}})
}

func (c *Coordinator) send(m *agentv1.CoordinatorMessage) {
	c.mu.Lock()
	streams := make([]*liveStream, 0, len(c.live))
	for _, l := range c.live {
		streams = append(streams, l)
	}
	c.mu.Unlock()
	for _, l := range streams {
		l.send(m)
	}
}

// Register implements agentv1.AgentServer.
func (c *Coordinator) Register(_ context.Context, req *agentv1.RegisterRequest) (*agentv1.RegisterResponse, error) {
	c.mu.Lock()
	c.registrations = append(c.registrations, proto.Clone(req).(*agentv1.RegisterRequest))
	refuse := c.registerErr
	c.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	if req.GetJoinToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "no join token")
	}
	der, err := c.signCSR(req.GetCsrDer())
	if err != nil {
		return nil, err
	}
	return &agentv1.RegisterResponse{
		HostId:         c.opts.HostID,
		InfraId:        c.opts.InfraID,
		CertificateDer: der,
		CaDer:          c.CA.Cert.Raw,
		Coordinators:   c.opts.Coordinators,
	}, nil
}

// Renew implements agentv1.AgentServer.
func (c *Coordinator) Renew(ctx context.Context, req *agentv1.RenewRequest) (*agentv1.RenewResponse, error) {
	if _, err := peerHost(ctx); err != nil {
		return nil, err
	}
	der, err := c.signCSR(req.GetCsrDer())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.renewals++
	c.mu.Unlock()
	return &agentv1.RenewResponse{CertificateDer: der}, nil
}

func (c *Coordinator) signCSR(csrDER []byte) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil || csr.CheckSignature() != nil {
		return nil, status.Error(codes.InvalidArgument, "bad certificate request")
	}
	now := time.Now()
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	der, err := c.CA.sign(&x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: c.opts.HostID},
		NotBefore:    now,
		NotAfter:     now.Add(c.opts.ClientLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return der, nil
}

// peerHost returns the host ID of a caller with a verified client certificate.
func peerHost(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return "", status.Error(codes.Unauthenticated, "no client certificate")
	}
	return info.State.VerifiedChains[0][0].Subject.CommonName, nil
}

// Connect implements agentv1.AgentServer: it answers Hello with Welcome and every
// Heartbeat with an ack, and records everything.
func (c *Coordinator) Connect(stream grpc.BidiStreamingServer[agentv1.AgentMessage, agentv1.CoordinatorMessage]) error {
	host, err := peerHost(stream.Context())
	if err != nil {
		return err
	}
	l := &liveStream{out: make(chan *agentv1.CoordinatorMessage, 16), closed: make(chan struct{})}
	c.mu.Lock()
	c.streams++
	id := c.streams
	c.live[id] = l
	c.mu.Unlock()
	defer func() {
		l.close()
		c.mu.Lock()
		delete(c.live, id)
		c.mu.Unlock()
	}()

	in := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				in <- err
				return
			}
			c.mu.Lock()
			c.messages = append(c.messages, Message{Stream: id, HostID: host, Msg: proto.Clone(m).(*agentv1.AgentMessage)})
			c.mu.Unlock()
			var reply *agentv1.CoordinatorMessage
			switch b := m.GetBody().(type) {
			case *agentv1.AgentMessage_Hello:
				reply = &agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_Welcome{Welcome: &agentv1.Welcome{
					HostId:              host,
					HeartbeatIntervalMs: c.opts.HeartbeatInterval.Milliseconds(),
					Coordinators:        c.opts.Coordinators,
				}}}
			case *agentv1.AgentMessage_Heartbeat:
				reply = &agentv1.CoordinatorMessage{Body: &agentv1.CoordinatorMessage_HeartbeatAck{HeartbeatAck: &agentv1.HeartbeatAck{
					Seq: b.Heartbeat.GetSeq(), HeartbeatIntervalMs: c.opts.HeartbeatInterval.Milliseconds(),
				}}}
			}
			if reply != nil {
				l.send(reply)
			}
		}
	}()
	for {
		select {
		case err := <-in:
			return err
		case <-l.closed:
			return status.Error(codes.Unavailable, "stream closed by the fake coordinator")
		case m := <-l.out:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// String names the fake in test output.
func (c *Coordinator) String() string { return fmt.Sprintf("fake coordinator %s", c.Addr) }
