package peer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/deployme/deployme/coordinator/peer"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serve starts a mux and echoes one line on each connection of either type, prefixed with
// the type, so a test sees which virtual listener got it.
func serve(t *testing.T, cfg peer.Config) *peer.Mux {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := peer.NewMux(ln, cfg)
	go m.Serve()
	t.Cleanup(func() { m.Close() })
	for _, l := range []struct {
		ln  net.Listener
		tag string
	}{{m.RaftListener(), "R"}, {m.GRPCListener(), "G"}} {
		go func() {
			for {
				c, err := l.ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 5)
					if _, err := io.ReadFull(c, buf); err == nil {
						c.Write(append([]byte(l.tag), buf...))
					}
				}()
			}
		}()
	}
	return m
}

func roundTrip(ctx context.Context, d *peer.Mux, addr string, typ byte) (string, error) {
	c, err := d.Dial(ctx, addr, typ)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return "", err
	}
	buf := make([]byte, 6)
	_, err = io.ReadFull(c, buf)
	return string(buf), err
}

func dialer(t *testing.T, cfg peer.Config) *peer.Mux {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := peer.NewMux(ln, cfg)
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMuxRoutesByType(t *testing.T) {
	srv := serve(t, peer.Config{})
	d := dialer(t, peer.Config{})
	ctx := context.Background()
	for _, tc := range []struct {
		typ  byte
		want string
	}{{peer.TypeRaft, "Rhello"}, {peer.TypeGRPC, "Ghello"}} {
		got, err := roundTrip(ctx, d, srv.Addr().String(), tc.typ)
		if err != nil || got != tc.want {
			t.Errorf("type %q: got %q, %v; want %q", tc.typ, got, err, tc.want)
		}
	}
	// An unknown first byte is dropped, not handed to either service.
	if got, err := roundTrip(ctx, d, srv.Addr().String(), 'X'); err == nil {
		t.Errorf("unknown type answered %q", got)
	}
}

func TestMutualTLS(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	srvTLS, _, err := peer.ConfigsFor(ca.issue(t, "server"), ca.pool)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, peer.Config{ServerTLS: srvTLS})
	_, goodClient, _ := peer.ConfigsFor(ca.issue(t, "client"), ca.pool)
	_, foreignClient, _ := peer.ConfigsFor(other.issue(t, "intruder"), ca.pool)
	_, distrustful, _ := peer.ConfigsFor(ca.issue(t, "client2"), other.pool)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cases := []struct {
		name   string
		cfg    peer.Config
		wantOK bool
	}{
		{"same CA", peer.Config{ClientTLS: goodClient}, true},
		{"client cert from another CA", peer.Config{ClientTLS: foreignClient}, false},
		{"client does not trust the server's CA", peer.Config{ClientTLS: distrustful}, false},
		{"plain TCP to a TLS peer", peer.Config{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := roundTrip(ctx, dialer(t, tc.cfg), srv.Addr().String(), peer.TypeRaft)
			if tc.wantOK && (err != nil || got != "Rhello") {
				t.Fatalf("got %q, %v; want an echo", got, err)
			}
			if !tc.wantOK && err == nil && got == "Rhello" {
				t.Fatalf("connection accepted; want refused")
			}
		})
	}
}

func TestLoadTLSNeedsAllThree(t *testing.T) {
	if s, c, err := peer.LoadTLS(peer.TLSFiles{}); s != nil || c != nil || err != nil {
		t.Fatalf("no files: want plain, got %v %v %v", s, c, err)
	}
	if _, _, err := peer.LoadTLS(peer.TLSFiles{Cert: "x.pem"}); err == nil {
		t.Fatal("a lone --tls-cert must be refused")
	}
}
