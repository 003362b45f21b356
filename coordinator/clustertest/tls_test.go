package clustertest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
)

// writePEMs writes a CA and one peer certificate (server and client usage) signed by it.
func writePEMs(t *testing.T, dir string) (cert, key, ca string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "deployme test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	peerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	peerTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "coordinator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	peerDER, err := x509.CreateCertificate(rand.Reader, peerTmpl, caCert, &peerKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(peerKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("peer.pem", "CERTIFICATE", peerDER), write("peer-key.pem", "EC PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}

// TestThreeReplicasOverMutualTLS runs Raft and forwarding between three replicas with
// --tls-cert/--tls-key/--tls-ca, and checks writes through followers still work.
func TestThreeReplicasOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three replicas")
	}
	cert, key, ca := writePEMs(t, t.TempDir())
	c := clustertest.Start(t, clustertest.Options{Replicas: 3, Configure: func(cfg *server.Config) {
		cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = cert, key, ca
	}})
	ctx := context.Background()
	for i, r := range c.Replicas {
		name := "tls-" + string(rune('a'+i))
		if _, err := r.Client().CreateInfra(ctx, v1.CreateInfraRequest{Name: &name, Kind: ptr("onpremise")}); err != nil {
			t.Fatalf("write through %s over mTLS: %v", r.ID, err)
		}
	}
	list, err := c.Replicas[2].Client().ListInfras(ctx)
	if err != nil || len(list.Items) != 4 { // the three plus infra_managed
		t.Fatalf("infras seen by the last replica: %v, %v", list, err)
	}
}
