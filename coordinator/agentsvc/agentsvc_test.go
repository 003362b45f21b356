package agentsvc_test

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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/agentsvc"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/internal/poll"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

func ptr[T any](v T) *T { return &v }

// clock is a service clock tests can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func start(t *testing.T) (*clustertest.Cluster, *clock) {
	t.Helper()
	clk := &clock{}
	c := clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) { cfg.Service.Now = clk.now }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) { return c.Service().AgentCAFingerprint() != "", nil }); err != nil {
		t.Fatal("the agent CA was never created")
	}
	return c, clk
}

func newCSR(t testing.TB) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "agent"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// dial connects to the agent endpoint. Without caDER it pins the CA by fingerprint, as an
// agent does on first contact; cert, when given, is presented as the client certificate.
func dial(t *testing.T, c *clustertest.Cluster, caDER []byte, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if caDER == nil {
		want := c.Service().AgentCAFingerprint()
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			chain := cs.PeerCertificates
			if len(chain) == 0 {
				return errors.New("no server certificate")
			}
			sum := sha256.Sum256(chain[len(chain)-1].Raw)
			if hex.EncodeToString(sum[:]) != want {
				return errors.New("server CA does not match the pinned fingerprint")
			}
			return nil
		}
	} else {
		ca, err := x509.ParseCertificate(caDER)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		cfg.RootCAs = pool
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return dialWith(t, c, credentials.NewTLS(cfg))
}

func dialWith(t *testing.T, c *clustertest.Cluster, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(c.GRPCAddr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func inventory(hostname string) *agentv1.Inventory {
	return &agentv1.Inventory{
		Hostname: hostname, Cpus: 4, MemoryBytes: 8 << 30, AgentVersion: "test",
		Disks: []*agentv1.Disk{{Name: "vda", SizeBytes: 50 << 30}},
		Nics:  []*agentv1.NIC{{Name: "eth0", Mac: "52:54:00:00:00:01", Addresses: []string{"10.0.0.5/24"}, Up: true}},
	}
}

// agent is a registered test agent.
type agent struct {
	resp *agentv1.RegisterResponse
	cert tls.Certificate
}

func register(t *testing.T, c *clustertest.Cluster, secret, hostname string) agent {
	t.Helper()
	csr, key := newCSR(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := agentv1.NewAgentClient(dial(t, c, nil, nil)).Register(ctx, &agentv1.RegisterRequest{JoinToken: secret, Inventory: inventory(hostname), CsrDer: csr})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return agent{resp: resp, cert: tls.Certificate{Certificate: [][]byte{resp.CertificateDer}, PrivateKey: key}}
}

func (a agent) connect(t *testing.T, c *clustertest.Cluster) (agentv1.Agent_ConnectClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	stream, err := agentv1.NewAgentClient(dial(t, c, a.resp.CaDer, &a.cert)).Connect(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return stream, cancel
}

func tables(t *testing.T, c *clustertest.Cluster) string {
	t.Helper()
	b, err := json.Marshal(c.Server().FSM().Tables())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func recvMsg(t *testing.T, s agentv1.Agent_ConnectClient) *agentv1.CoordinatorMessage {
	t.Helper()
	m, err := s.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

// heartbeat sends a heartbeat and waits for its ack: everything sent before it has been
// handled by then.
func heartbeat(t *testing.T, s agentv1.Agent_ConnectClient, seq uint64) *agentv1.HeartbeatAck {
	t.Helper()
	if err := s.Send(&agentv1.AgentMessage{Body: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{Seq: seq}}}); err != nil {
		t.Fatal(err)
	}
	ack := recvMsg(t, s).GetHeartbeatAck()
	if ack == nil || ack.GetSeq() != seq {
		t.Fatalf("got %v, want a heartbeat ack for seq %d", ack, seq)
	}
	return ack
}

func TestRegisterConnect(t *testing.T) {
	c, _ := start(t)
	ctx := context.Background()
	cl := c.Client()
	site, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("site"), Kind: ptr("onpremise")})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cl.CreateJoinToken(ctx, site.ID, v1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	a := register(t, c, tok.Secret, "node-a")
	host := a.resp.GetHostId()
	if host == "" || a.resp.GetInfraId() != site.ID || !slices.Contains(a.resp.GetCoordinators(), c.GRPCAddr()) {
		t.Fatalf("register response: host %q infra %q coordinators %v", host, a.resp.GetInfraId(), a.resp.GetCoordinators())
	}
	h, err := cl.GetHost(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	if h.Hostname != "node-a" || h.CPUs != 4 {
		t.Errorf("registered host: %+v", h)
	}

	stream, cancel := a.connect(t, c)
	defer cancel()
	if err := stream.Send(&agentv1.AgentMessage{Body: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "test"}}}); err != nil {
		t.Fatal(err)
	}
	w := recvMsg(t, stream).GetWelcome()
	if diff := cmp.Diff(struct {
		Host     string
		Interval int64
	}{host, 5000}, struct {
		Host     string
		Interval int64
	}{w.GetHostId(), w.GetHeartbeatIntervalMs()}); diff != "" {
		t.Errorf("welcome (-want +got):\n%s", diff)
	}
	if ack := heartbeat(t, stream, 7); ack.GetHeartbeatIntervalMs() != 5000 {
		t.Errorf("ack interval = %d, want 5000", ack.GetHeartbeatIntervalMs())
	}
	lease, ok := c.Server().Leases().Snapshot()[host]
	if !ok || lease.Replica != c.Replicas[0].ID || time.Since(lease.LastSeen) > time.Minute {
		t.Errorf("lease = %+v, %v", lease, ok)
	}

	// An inventory change reaches state; the same message id again is not applied.
	inv := inventory("node-a-renamed")
	inv.Cpus = 16
	inv.Labels = map[string]string{"rack": "r1"}
	if err := stream.Send(&agentv1.AgentMessage{Id: "inv-1", Body: &agentv1.AgentMessage_Inventory{Inventory: inv}}); err != nil {
		t.Fatal(err)
	}
	heartbeat(t, stream, 8)
	again := inventory("should-not-apply")
	if err := stream.Send(&agentv1.AgentMessage{Id: "inv-1", Body: &agentv1.AgentMessage_Inventory{Inventory: again}}); err != nil {
		t.Fatal(err)
	}
	heartbeat(t, stream, 9)
	list, err := cl.ListHosts(ctx, clientListAll())
	if err != nil {
		t.Fatal(err)
	}
	var got *v1.Host
	for i := range list.Items {
		if list.Items[i].ID == host {
			got = &list.Items[i]
		}
	}
	if got == nil {
		t.Fatalf("host %s not in /v1/hosts", host)
	}
	if diff := cmp.Diff([]any{"node-a-renamed", 16, map[string]string{"rack": "r1"}}, []any{got.Hostname, got.CPUs, got.Labels}); diff != "" {
		t.Errorf("host after inventory (-want +got):\n%s", diff)
	}

	// An unchanged inventory under a new id is not written.
	before := tables(t, c)
	if err := stream.Send(&agentv1.AgentMessage{Id: "inv-2", Body: &agentv1.AgentMessage_Inventory{Inventory: inv}}); err != nil {
		t.Fatal(err)
	}
	heartbeat(t, stream, 10)
	if diff := cmp.Diff(before, tables(t, c)); diff != "" {
		t.Errorf("an unchanged inventory changed state (-before +after):\n%s", diff)
	}

	// A step update is accepted and ignored.
	if err := stream.Send(&agentv1.AgentMessage{Id: "s-1", Body: &agentv1.AgentMessage_StepUpdate{StepUpdate: &agentv1.StepUpdate{StepId: "x", State: "started"}}}); err != nil {
		t.Fatal(err)
	}
	heartbeat(t, stream, 11)

	// Renew over mutual TLS.
	csr, _ := newCSR(t)
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	rr, err := agentv1.NewAgentClient(dial(t, c, a.resp.CaDer, &a.cert)).Renew(rctx, &agentv1.RenewRequest{CsrDer: csr})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if crt, err := x509.ParseCertificate(rr.GetCertificateDer()); err != nil || crt.Subject.CommonName != host {
		t.Errorf("renewed certificate: %v, %v", crt, err)
	}

	// Ending the stream keeps the lease.
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Error("stream still open after close")
	}
	if _, ok := c.Server().Leases().Snapshot()[host]; !ok {
		t.Error("lease dropped when the stream ended")
	}

	// Decommissioning a host ends its open stream at the next heartbeat.
	stream2, cancel2 := a.connect(t, c)
	defer cancel2()
	if err := stream2.Send(&agentv1.AgentMessage{Body: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{}}}); err != nil {
		t.Fatal(err)
	}
	recvMsg(t, stream2)
	if err := cl.DecommissionHost(ctx, host); err != nil {
		t.Fatal(err)
	}
	if err := stream2.Send(&agentv1.AgentMessage{Body: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{Seq: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream2.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("heartbeat after decommission: %v, want PermissionDenied", err)
	}
}

func clientListAll() client.ListOptions { return client.ListOptions{Page: 1, PerPage: 100} }

func TestRefusals(t *testing.T) {
	c, clk := start(t)
	ctx := context.Background()
	cl := c.Client()
	site, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("site"), Kind: ptr("onpremise")})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("gone"), Kind: ptr("onpremise")})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := cl.CreateJoinToken(ctx, site.ID, v1.CreateJoinTokenRequest{})
	once, _ := cl.CreateJoinToken(ctx, site.ID, v1.CreateJoinTokenRequest{MaxUses: ptr(1)})
	revoked, _ := cl.CreateJoinToken(ctx, site.ID, v1.CreateJoinTokenRequest{})
	expiring, _ := cl.CreateJoinToken(ctx, site.ID, v1.CreateJoinTokenRequest{Expires: ptr("1h")})
	goneTok, err := cl.CreateJoinToken(ctx, gone.ID, v1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.RevokeJoinToken(ctx, site.ID, revoked.ID); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteInfra(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	a := register(t, c, good.Secret, "node-a")
	register(t, c, once.Secret, "node-once")
	dead := register(t, c, good.Secret, "node-dead")
	if err := cl.DecommissionHost(ctx, dead.resp.GetHostId()); err != nil {
		t.Fatal(err)
	}
	foreign := foreignCert(t, a.resp.GetHostId())
	before := tables(t, c)

	csr, _ := newCSR(t)
	reg := func(secret string, inv *agentv1.Inventory, csr []byte) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := agentv1.NewAgentClient(dial(t, c, nil, nil)).Register(ctx, &agentv1.RegisterRequest{JoinToken: secret, Inventory: inv, CsrDer: csr})
			return err
		}
	}
	connect := func(conn *grpc.ClientConn, first *agentv1.AgentMessage) func(context.Context) error {
		return func(ctx context.Context) error {
			s, err := agentv1.NewAgentClient(conn).Connect(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(first); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			m, err := s.Recv()
			if err == nil {
				return fmt.Errorf("stream accepted: %v", m)
			}
			return err
		}
	}
	hello := &agentv1.AgentMessage{Body: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{}}}
	tests := []struct {
		name string
		call func(context.Context) error
		want []codes.Code
		// before runs first (the expired token needs the clock moved).
		before func()
	}{
		{name: "wrong join token", call: reg("not-a-token", inventory("x"), csr), want: []codes.Code{codes.Unauthenticated}},
		{name: "revoked join token", call: reg(revoked.Secret, inventory("x"), csr), want: []codes.Code{codes.Unauthenticated}},
		{name: "token of a deleted infra", call: reg(goneTok.Secret, inventory("x"), csr), want: []codes.Code{codes.Unauthenticated}},
		{name: "single-use token used", call: reg(once.Secret, inventory("x"), csr), want: []codes.Code{codes.FailedPrecondition}},
		{name: "no inventory", call: reg(good.Secret, nil, csr), want: []codes.Code{codes.InvalidArgument}},
		{name: "no csr", call: reg(good.Secret, inventory("x"), nil), want: []codes.Code{codes.InvalidArgument}},
		{name: "garbage csr", call: reg(good.Secret, inventory("x"), []byte("not der")), want: []codes.Code{codes.InvalidArgument}},
		{name: "plain TCP", call: func(ctx context.Context) error {
			_, err := agentv1.NewAgentClient(dialWith(t, c, insecure.NewCredentials())).Register(ctx, &agentv1.RegisterRequest{JoinToken: good.Secret, Inventory: inventory("x"), CsrDer: csr})
			return err
		}, want: []codes.Code{codes.Unavailable}},
		{name: "connect without client certificate", call: connect(dial(t, c, nil, nil), hello), want: []codes.Code{codes.Unauthenticated}},
		{name: "renew without client certificate", call: func(ctx context.Context) error {
			_, err := agentv1.NewAgentClient(dial(t, c, nil, nil)).Renew(ctx, &agentv1.RenewRequest{CsrDer: csr})
			return err
		}, want: []codes.Code{codes.Unauthenticated}},
		// A Go client offers no certificate the server's CA list does not name...
		{name: "client certificate from another CA", call: connect(dial(t, c, a.resp.CaDer, &foreign), hello), want: []codes.Code{codes.Unauthenticated}},
		// ...and one that insists fails the handshake (TLS 1.3 clients learn of it on
		// their first read).
		{name: "client certificate from another CA, forced", call: connect(dialWith(t, c, credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil },
		})), hello), want: []codes.Code{codes.Unavailable}},
		{name: "decommissioned host", call: connect(dial(t, c, dead.resp.CaDer, &dead.cert), hello), want: []codes.Code{codes.PermissionDenied}},
		{name: "first message not hello", call: connect(dial(t, c, a.resp.CaDer, &a.cert), &agentv1.AgentMessage{Body: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}}), want: []codes.Code{codes.InvalidArgument}},
		{name: "expired join token", before: func() { clk.advance(2 * time.Hour) }, call: reg(expiring.Secret, inventory("x"), csr), want: []codes.Code{codes.Unauthenticated}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tt.call(ctx)
			if !slices.Contains(tt.want, status.Code(err)) {
				t.Errorf("got %v (code %v), want code in %v", err, status.Code(err), tt.want)
			}
		})
	}
	if diff := cmp.Diff(before, tables(t, c)); diff != "" {
		t.Errorf("refusals changed state (-before +after):\n%s", diff)
	}
	if _, ok := c.Server().Leases().Snapshot()[dead.resp.GetHostId()]; ok {
		t.Error("a decommissioned host got a lease")
	}
}

// foreignCert is a client certificate for hostID signed by a CA the coordinator never saw.
func foreignCert(t *testing.T, hostID string) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hostID}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestHeartbeatInterval(t *testing.T) {
	for hosts, want := range map[int]time.Duration{0: 5 * time.Second, 999: 5 * time.Second, 1000: 6 * time.Second, 10_000: 15 * time.Second, 25_000: 30 * time.Second, 1_000_000: 30 * time.Second} {
		if got := agentsvc.HeartbeatInterval(hosts); got != want {
			t.Errorf("HeartbeatInterval(%d) = %v, want %v", hosts, got, want)
		}
	}
}
