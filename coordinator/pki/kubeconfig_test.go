package pki_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deployme/deployme/coordinator/pki"
)

func TestAdminKubeconfig(t *testing.T) {
	p := newTestPKI(t)
	const server = "https://10.0.0.5:6443"
	const ttl = 24 * time.Hour

	data, err := pki.AdminKubeconfig(p, "c1", server, ttl, testNow)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("clientcmd.Load: %v", err)
	}

	if cfg.CurrentContext != "deployme-admin@c1" {
		t.Errorf("current context %q, want deployme-admin@c1", cfg.CurrentContext)
	}
	kctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		t.Fatalf("no context %q; have %v", cfg.CurrentContext, cfg.Contexts)
	}
	if kctx.Cluster != "c1" || kctx.AuthInfo != "deployme-admin" {
		t.Errorf("context points at cluster %q user %q, want c1 and deployme-admin", kctx.Cluster, kctx.AuthInfo)
	}
	cluster, ok := cfg.Clusters["c1"]
	if !ok {
		t.Fatal("no cluster c1")
	}
	if cluster.Server != server {
		t.Errorf("server %q, want %q", cluster.Server, server)
	}
	if !bytes.Equal(cluster.CertificateAuthorityData, p.CACert) {
		t.Error("embedded CA differs from the cluster CA")
	}
	user, ok := cfg.AuthInfos["deployme-admin"]
	if !ok {
		t.Fatal("no user deployme-admin")
	}

	pair, err := tls.X509KeyPair(user.ClientCertificateData, user.ClientKeyData)
	if err != nil {
		t.Fatalf("client certificate and key do not form a pair: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CACert) {
		t.Fatal("cluster CA does not parse")
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: testNow,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Errorf("client certificate does not verify against the cluster CA: %v", err)
	}
	if cert.Subject.CommonName != "deployme-admin" {
		t.Errorf("CN %q, want deployme-admin", cert.Subject.CommonName)
	}
	if diff := cmp.Diff([]string{"kubeadm:cluster-admins"}, cert.Subject.Organization); diff != "" {
		t.Errorf("organization (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage); diff != "" {
		t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
	}
	if cert.IsCA {
		t.Error("client certificate is a CA")
	}
	if want := testNow.Add(ttl); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v, want %v", cert.NotAfter, want)
	}
	if want := testNow.Add(-5 * time.Minute); !cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore %v, want %v", cert.NotBefore, want)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: testNow.Add(ttl + time.Second),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err == nil {
		t.Error("client certificate still valid after its ttl")
	}

	// Each call must mint a new key: kubeconfigs are handed to different people and revoked
	// by letting them expire, so sharing a key would tie their lifetimes together.
	again, err := pki.AdminKubeconfig(p, "c1", server, ttl, testNow)
	if err != nil {
		t.Fatal(err)
	}
	cfg2, err := clientcmd.Load(again)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(cfg2.AuthInfos["deployme-admin"].ClientKeyData, user.ClientKeyData) {
		t.Error("two kubeconfigs share a client key")
	}
}

func TestAdminKubeconfigRejects(t *testing.T) {
	good := newTestPKI(t)
	swapped := *good
	swapped.CAKey = good.EtcdCAKey
	tests := []struct {
		name        string
		p           *pki.ClusterPKI
		clusterName string
		server      string
		ttl         time.Duration
	}{
		{"empty cluster name", good, "", "https://10.0.0.5:6443", time.Hour},
		{"zero ttl", good, "c1", "https://10.0.0.5:6443", 0},
		{"negative ttl", good, "c1", "https://10.0.0.5:6443", -time.Hour},
		{"ttl beyond the CA", good, "c1", "https://10.0.0.5:6443", 11 * 365 * 24 * time.Hour},
		{"plain http", good, "c1", "http://10.0.0.5:6443", time.Hour},
		{"no scheme", good, "c1", "10.0.0.5:6443", time.Hour},
		{"no host", good, "c1", "https://", time.Hour},
		{"CA key does not match", &swapped, "c1", "https://10.0.0.5:6443", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pki.AdminKubeconfig(tt.p, tt.clusterName, tt.server, tt.ttl, testNow); err == nil {
				t.Fatal("AdminKubeconfig succeeded, want an error")
			}
		})
	}
}
