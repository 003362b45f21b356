package agentsvc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/agentsvc"
	"github.com/deployme/deployme/coordinator/pki"
	"github.com/deployme/deployme/coordinator/service"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// fakeBackend signs with a real CA, so arbitrary certificate requests reach the real parser.
type fakeBackend struct {
	ca *pki.CA
}

func newFakeBackend(t testing.TB) *fakeBackend {
	t.Helper()
	certDER, keyDER, err := pki.NewCA("test agent CA", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(certDER, keyDER)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeBackend{ca: ca}
}

func (f *fakeBackend) AgentServerCertificate(names []string) (tls.Certificate, error) {
	if f.ca == nil {
		return tls.Certificate{}, v1.Errorf(v1.CodeUnavailable, "no CA")
	}
	return f.ca.IssueServer(names, time.Now(), nil)
}

func (f *fakeBackend) AgentCAPool() *x509.CertPool {
	if f.ca == nil {
		return nil
	}
	return f.ca.Pool()
}

func (f *fakeBackend) RegisterAgent(_ context.Context, secret string, reg service.HostRegistration, csr []byte) (*service.AgentRegistration, error) {
	if secret != "good-token" {
		return nil, v1.Errorf(v1.CodeUnauthorized, "unknown join token")
	}
	der, err := f.ca.SignClient(csr, "host_1", time.Now(), nil)
	if err != nil {
		return nil, v1.InvalidField("csr", "%v", err)
	}
	return &service.AgentRegistration{HostID: "host_1", InfraID: "infra_1", CertificateDER: der, CADER: f.ca.Cert.Raw}, nil
}

func (f *fakeBackend) RenewAgent(context.Context, string, []byte) ([]byte, error) {
	return nil, v1.Errorf(v1.CodeUnauthorized, "no")
}
func (f *fakeBackend) AgentHost(string) (*v1.Host, bool) { return nil, false }
func (f *fakeBackend) AgentCoordinators() []string       { return []string{"127.0.0.1:9090"} }
func (f *fakeBackend) RegisterHost(context.Context, service.HostRegistration) (*v1.Host, error) {
	return nil, v1.Errorf(v1.CodeNotFound, "no")
}
func (f *fakeBackend) HostCount() int { return 0 }

func FuzzRegister(f *testing.F) {
	b := newFakeBackend(f)
	csr, _ := newCSR(f)
	f.Add("good-token", csr, "node-a", int32(4), int64(8<<30), "vda", int64(1<<30), "eth0", "52:54:00:00:00:01", "10.0.0.1/24", "rack", "r1")
	f.Add("", []byte{}, "", int32(-1), int64(-1), "", int64(-1), "", "", "", "", "")
	f.Add("good-token", []byte{0x30, 0x82, 0xff, 0xff}, "\xff\xfe", int32(1<<30), int64(1<<62), "\x00", int64(0), "e", "m", "a", "", "v")
	f.Add("bad", csr[:len(csr)/2], "h", int32(0), int64(0), "d", int64(0), "n", "m", "a", "k", "v")
	srv := agentsvc.New(agentsvc.Config{ReplicaID: "r1"}, b)
	f.Fuzz(func(t *testing.T, token string, csr []byte, hostname string, cpus int32, mem int64, disk string, diskSize int64, nic, mac, addr, lk, lv string) {
		req := &agentv1.RegisterRequest{JoinToken: token, CsrDer: csr, Inventory: &agentv1.Inventory{
			Hostname: hostname, Cpus: cpus, MemoryBytes: mem,
			Disks:  []*agentv1.Disk{{Name: disk, SizeBytes: diskSize}},
			Nics:   []*agentv1.NIC{{Name: nic, Mac: mac, Addresses: []string{addr}}},
			Labels: map[string]string{lk: lv},
		}}
		if len(hostname)%7 == 3 {
			req.Inventory = nil
		}
		resp, err := srv.Register(context.Background(), req)
		if err == nil && (resp.GetHostId() == "" || len(resp.GetCertificateDer()) == 0) {
			t.Fatalf("success without an identity: %v", resp)
		}
	})
}

func TestHandshakeBeforeCA(t *testing.T) {
	srv := agentsvc.New(agentsvc.Config{Advertise: "127.0.0.1:9090"}, &fakeBackend{})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- tls.Server(a, srv.TLSConfig()).Handshake() }()
	cerr := tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}).Handshake()
	a.Close()
	if serr := <-done; serr == nil || cerr == nil {
		t.Fatalf("handshake before the CA exists: server %v, client %v; want both to fail", serr, cerr)
	}
}

func TestServerCertificate(t *testing.T) {
	srv := agentsvc.New(agentsvc.Config{Advertise: "coord-1.example:9090"}, newFakeBackend(t))
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- tls.Server(a, srv.TLSConfig()).Handshake() }()
	c := tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := c.ConnectionState()
	leaf := st.PeerCertificates[0]
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Errorf("version %x, protocol %q; want TLS 1.3 and h2", st.Version, st.NegotiatedProtocol)
	}
	for _, name := range []string{"coord-1.example", "localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}
}
