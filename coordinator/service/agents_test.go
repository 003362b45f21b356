package service_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/service"
	"github.com/deployme/deployme/internal/poll"
)

func ptr[T any](v T) *T { return &v }

func csr(t *testing.T) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "agent"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// waitCA waits for the leader loop that creates the agent CA.
func waitCA(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) { return c.Service().AgentCAFingerprint() != "", nil }); err != nil {
		t.Fatal("the agent CA was never created")
	}
}

func tables(t *testing.T, c *clustertest.Cluster) string {
	b, err := json.Marshal(c.Server().FSM().Tables())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRegisterAgent(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	ctx := context.Background()
	waitCA(t, c)
	cl := c.Client()
	site, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("site"), Kind: ptr("onpremise")})
	if err != nil {
		t.Fatal(err)
	}
	rack, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("rack"), Kind: ptr("baremetal")})
	if err != nil {
		t.Fatal(err)
	}
	once, err := cl.CreateJoinToken(ctx, site.ID, v1.CreateJoinTokenRequest{MaxUses: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	rackTok, err := cl.CreateJoinToken(ctx, rack.ID, v1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	svc := c.Service()
	reg := service.HostRegistration{Hostname: "node-a", CPUs: 4, MemoryBytes: 8 << 30, Labels: map[string]string{"rack": "r1"}}

	req, key := csr(t)
	got, err := svc.RegisterAgent(ctx, once.Secret, reg, req)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	// The certificate names the host, carries the agent's own key, and chains to the CA.
	cert, err := x509.ParseCertificate(got.CertificateDER)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(got.CADER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate does not chain to the agent CA: %v", err)
	}
	if cert.Subject.CommonName != got.HostID || !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatalf("certificate is for %q with another key; want host %s", cert.Subject.CommonName, got.HostID)
	}
	h, err := cl.GetHost(ctx, got.HostID)
	if err != nil || h.InfraID != site.ID || h.State != v1.HostAvailable || h.Hostname != "node-a" || h.Labels["rack"] != "r1" {
		t.Fatalf("host = %+v, %v; want an available host of %s", h, err, site.ID)
	}

	// The same agent asking again (its first answer lost): the same host, and the
	// single-use token is not used a second time.
	again, err := svc.RegisterAgent(ctx, once.Secret, reg, req)
	if err != nil || again.HostID != got.HostID {
		t.Fatalf("retried registration = %+v, %v; want host %s again", again, err, got.HostID)
	}

	// Refusals change nothing.
	other, _ := csr(t)
	before := tables(t, c)
	refusals := []struct {
		name, secret string
		csr          []byte
	}{
		{"single-use token used by another agent", once.Secret, other},
		{"unknown token", "dpj_nope", req},
		{"garbage certificate request", rackTok.Secret, []byte("not a csr")},
	}
	for _, r := range refusals {
		if _, err := svc.RegisterAgent(ctx, r.secret, reg, r.csr); err == nil {
			t.Errorf("%s: registered", r.name)
		}
		if tables(t, c) != before {
			t.Errorf("%s: state changed", r.name)
		}
	}
	if err := cl.RevokeJoinToken(ctx, rack.ID, rackTok.ID); err != nil {
		t.Fatal(err)
	}
	mid := tables(t, c)
	if _, err := svc.RegisterAgent(ctx, rackTok.Secret, reg, req); err == nil {
		t.Error("revoked token registered a host")
	}
	if after := tables(t, c); after != mid {
		t.Error("a refused registration changed state")
	}

	// Bare-metal hosts start discovered.
	rackTok2, _ := cl.CreateJoinToken(ctx, rack.ID, v1.CreateJoinTokenRequest{})
	bm, err := svc.RegisterAgent(ctx, rackTok2.Secret, reg, req)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := cl.GetHost(ctx, bm.HostID); h.State != v1.HostDiscovered {
		t.Fatalf("bare-metal host state %q, want discovered", h.State)
	}
	if list, _ := cl.ListJoinTokens(ctx, site.ID); len(list.Items) != 1 || list.Items[0].Uses != 1 {
		t.Fatalf("join token uses: %+v", list)
	}
}

// TestSingleUseTokenRace: many agents race for one single-use token; exactly one wins.
func TestSingleUseTokenRace(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	ctx := context.Background()
	waitCA(t, c)
	site, _ := c.Client().CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("site"), Kind: ptr("onpremise")})
	tok, err := c.Client().CreateJoinToken(ctx, site.ID, v1.CreateJoinTokenRequest{MaxUses: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := csr(t)
			_, err := c.Service().RegisterAgent(ctx, tok.Secret, service.HostRegistration{Hostname: "racer", CPUs: i + 1, MemoryBytes: 1 << 30}, req)
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	hosts, _ := c.Client().ListHosts(ctx, client.ListOptions{InfraID: site.ID})
	if wins != 1 || hosts.Total != 1 {
		t.Fatalf("%d registrations won and %d hosts exist; want exactly one", wins, hosts.Total)
	}
}
