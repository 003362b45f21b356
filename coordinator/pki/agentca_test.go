package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"testing"
	"time"

	"github.com/deployme/deployme/coordinator/pki"
)

func TestAgentCA(t *testing.T) {
	now := time.Now()
	certDER, keyDER, err := pki.NewCA("test", now, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(certDER, keyDER)
	if err != nil {
		t.Fatal(err)
	}
	if len(pki.Fingerprint(certDER)) != 64 {
		t.Fatal("fingerprint is not a hex SHA-256")
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	der, err := ca.SignClient(csr, "host_abc", now, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	if cert.Subject.CommonName != "host_abc" {
		t.Fatalf("common name %q: the host ID must come from the coordinator, not the request", cert.Subject.CommonName)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, CurrentTime: now}); err == nil {
		t.Fatal("an agent certificate must not be usable as a server certificate")
	}

	// A request whose signature does not match its key is refused.
	bad := append([]byte(nil), csr...)
	bad[len(bad)-3] ^= 0xff
	if _, err := ca.SignClient(bad, "host_x", now, nil); err == nil {
		t.Fatal("tampered certificate request signed")
	}

	srv, err := ca.IssueServer([]string{"127.0.0.1", "coord.example"}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(srv.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "coord.example", CurrentTime: now}); err != nil {
		t.Fatalf("server certificate by name: %v", err)
	}
	if !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatal("server certificate lacks its IP address")
	}
	var _ tls.Certificate = srv
}
