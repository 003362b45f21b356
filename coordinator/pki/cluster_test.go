package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/pki"
)

// testNow has whole seconds because certificates cannot carry anything finer.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestPKI(t testing.TB) *pki.ClusterPKI {
	t.Helper()
	p, err := pki.NewClusterPKI("c1", testNow, nil)
	if err != nil {
		t.Fatalf("NewClusterPKI: %v", err)
	}
	return p
}

func decodePEM(t *testing.T, data []byte, wantType string) []byte {
	t.Helper()
	block, rest := pem.Decode(data)
	if block == nil {
		t.Fatalf("no PEM block in %q", data)
	}
	if block.Type != wantType {
		t.Fatalf("PEM type %q, want %q", block.Type, wantType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("trailing data after the %s block", wantType)
	}
	return block.Bytes
}

func TestNewClusterPKICAs(t *testing.T) {
	p := newTestPKI(t)
	if err := p.Verify(); err != nil {
		t.Fatalf("Verify on fresh PKI: %v", err)
	}
	tests := []struct {
		name      string
		cert, key []byte
		wantCN    string
	}{
		{"cluster CA", p.CACert, p.CAKey, "kubernetes"},
		{"front-proxy CA", p.FrontProxyCACert, p.FrontProxyCAKey, "front-proxy-ca"},
		{"etcd CA", p.EtcdCACert, p.EtcdCAKey, "etcd-ca"},
	}
	seenKeys := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := x509.ParseCertificate(decodePEM(t, tt.cert, "CERTIFICATE"))
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != tt.wantCN {
				t.Errorf("CN %q, want %q", cert.Subject.CommonName, tt.wantCN)
			}
			if !cert.IsCA || !cert.BasicConstraintsValid {
				t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", cert.IsCA, cert.BasicConstraintsValid)
			}
			wantUsage := x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
			if cert.KeyUsage != wantUsage {
				t.Errorf("KeyUsage %b, want %b", cert.KeyUsage, wantUsage)
			}
			if err := cert.CheckSignatureFrom(cert); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
				t.Error("issuer differs from subject")
			}
			if len(cert.SubjectKeyId) == 0 {
				t.Error("no SubjectKeyId")
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v is not a positive 128-bit number", cert.SerialNumber)
			}
			if want := testNow.Add(-5 * time.Minute); !cert.NotBefore.Equal(want) {
				t.Errorf("NotBefore %v, want %v", cert.NotBefore, want)
			}
			if want := testNow.Add(10 * 365 * 24 * time.Hour); !cert.NotAfter.Equal(want) {
				t.Errorf("NotAfter %v, want %v", cert.NotAfter, want)
			}
			pool := x509.NewCertPool()
			pool.AddCert(cert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow}); err != nil {
				t.Errorf("does not verify as its own root: %v", err)
			}

			key, err := x509.ParseECPrivateKey(decodePEM(t, tt.key, "EC PRIVATE KEY"))
			if err != nil {
				t.Fatal(err)
			}
			if key.Curve.Params().Name != "P-256" {
				t.Errorf("curve %s, want P-256", key.Curve.Params().Name)
			}
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Error("key does not match certificate")
			}
			id := hex.EncodeToString(cert.RawSubjectPublicKeyInfo)
			if other, dup := seenKeys[id]; dup {
				t.Errorf("shares its key with %s", other)
			}
			seenKeys[id] = tt.name
		})
	}

	t.Run("service-account pair", func(t *testing.T) {
		key, err := x509.ParseECPrivateKey(decodePEM(t, p.SAKey, "EC PRIVATE KEY"))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := x509.ParsePKIXPublicKey(decodePEM(t, p.SAPub, "PUBLIC KEY"))
		if err != nil {
			t.Fatal(err)
		}
		ecPub, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			t.Fatalf("sa.pub holds %T, want *ecdsa.PublicKey", pub)
		}
		if !key.PublicKey.Equal(ecPub) {
			t.Error("sa.key does not match sa.pub")
		}
	})
}

func TestNewClusterPKIRejectsEmptyName(t *testing.T) {
	if _, err := pki.NewClusterPKI("", testNow, nil); err == nil {
		t.Fatal("NewClusterPKI accepted an empty cluster name")
	}
}

func TestVerifyCatchesBrokenPairs(t *testing.T) {
	base := newTestPKI(t)
	other := newTestPKI(t)
	der := bytes.Clone(decodePEM(t, base.CACert, "CERTIFICATE"))
	der[len(der)-1] ^= 0xff // inside the signature
	damaged := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	tests := []struct {
		name   string
		mutate func(p *pki.ClusterPKI)
	}{
		{"cluster and etcd CA keys swapped", func(p *pki.ClusterPKI) { p.CAKey, p.EtcdCAKey = p.EtcdCAKey, p.CAKey }},
		{"front-proxy key from another cluster", func(p *pki.ClusterPKI) { p.FrontProxyCAKey = other.FrontProxyCAKey }},
		{"sa.key swapped with ca.key", func(p *pki.ClusterPKI) { p.SAKey, p.CAKey = p.CAKey, p.SAKey }},
		{"sa.pub from another cluster", func(p *pki.ClusterPKI) { p.SAPub = other.SAPub }},
		{"certificate in place of a key", func(p *pki.ClusterPKI) { p.EtcdCAKey = p.EtcdCACert }},
		{"empty certificate", func(p *pki.ClusterPKI) { p.CACert = nil }},
		{"damaged certificate", func(p *pki.ClusterPKI) { p.CACert = damaged }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := *base
			tt.mutate(&p)
			if err := p.Verify(); err == nil {
				t.Fatal("Verify accepted a broken PKI")
			}
		})
	}
}

func TestFiles(t *testing.T) {
	p := newTestPKI(t)
	if got := p.Files(false); got != nil {
		t.Errorf("Files(false) = %v, want nil", got)
	}

	want := []pki.File{
		{Path: "/etc/kubernetes/pki/ca.crt", Mode: 0o644, Content: p.CACert},
		{Path: "/etc/kubernetes/pki/ca.key", Mode: 0o600, Content: p.CAKey},
		{Path: "/etc/kubernetes/pki/front-proxy-ca.crt", Mode: 0o644, Content: p.FrontProxyCACert},
		{Path: "/etc/kubernetes/pki/front-proxy-ca.key", Mode: 0o600, Content: p.FrontProxyCAKey},
		{Path: "/etc/kubernetes/pki/etcd/ca.crt", Mode: 0o644, Content: p.EtcdCACert},
		{Path: "/etc/kubernetes/pki/etcd/ca.key", Mode: 0o600, Content: p.EtcdCAKey},
		{Path: "/etc/kubernetes/pki/sa.key", Mode: 0o600, Content: p.SAKey},
		{Path: "/etc/kubernetes/pki/sa.pub", Mode: 0o644, Content: p.SAPub},
	}
	got := p.Files(true)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Files(true) mismatch (-want +got):\n%s", diff)
	}

	// Callers may hand the contents to code that reuses buffers; that must not reach p.
	orig := bytes.Clone(p.CAKey)
	got[1].Content[0] ^= 0xff
	if !bytes.Equal(p.CAKey, orig) {
		t.Error("modifying a returned file changed the PKI")
	}
}

func TestCACertHash(t *testing.T) {
	p := newTestPKI(t)
	format := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

	for _, tt := range []struct {
		name string
		cert []byte
	}{
		{"cluster CA", p.CACert},
		{"etcd CA", p.EtcdCACert},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pki.CACertHash(tt.cert)
			if err != nil {
				t.Fatal(err)
			}
			if !format.MatchString(got) {
				t.Errorf("hash %q does not match %s", got, format)
			}
			// Recompute from the public key rather than the raw field, so the test does not
			// merely repeat the implementation.
			cert, err := x509.ParseCertificate(decodePEM(t, tt.cert, "CERTIFICATE"))
			if err != nil {
				t.Fatal(err)
			}
			spki, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(spki)
			if want := "sha256:" + hex.EncodeToString(sum[:]); got != want {
				t.Errorf("CACertHash = %s, want %s", got, want)
			}
		})
	}

	for _, tt := range []struct {
		name  string
		input []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"a key, not a certificate", p.CAKey},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})},
	} {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			if h, err := pki.CACertHash(tt.input); err == nil {
				t.Errorf("CACertHash = %q, want an error", h)
			}
		})
	}
}

func BenchmarkNewClusterPKI(b *testing.B) {
	for b.Loop() {
		if _, err := pki.NewClusterPKI("bench", testNow, nil); err != nil {
			b.Fatal(err)
		}
	}
}
