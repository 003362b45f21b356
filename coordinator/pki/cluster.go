package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// PEM block types. kubeadm accepts SEC1 and PKCS#8 keys; SEC1 keeps the curve visible to
// anyone inspecting a file with openssl.
const (
	pemCertificate  = "CERTIFICATE"
	pemECPrivateKey = "EC PRIVATE KEY"
	pemPKCS8Key     = "PRIVATE KEY"
	pemPublicKey    = "PUBLIC KEY"
)

// Where kubeadm looks for the shared material. A control plane that finds these in place
// generates only its own leaf certificates, which is what lets every control plane of a
// cluster trust the others without a certificate key upload.
const (
	pkiDir             = "/etc/kubernetes/pki/"
	fileCACert         = "ca.crt"
	fileCAKey          = "ca.key"
	fileFrontProxyCert = "front-proxy-ca.crt"
	fileFrontProxyKey  = "front-proxy-ca.key"
	fileEtcdCACert     = "etcd/ca.crt"
	fileEtcdCAKey      = "etcd/ca.key"
	fileSAKey          = "sa.key"
	fileSAPub          = "sa.pub"
)

// Common names kubeadm gives its own CAs, kept so that clusters look the same to tools and
// people who know kubeadm.
const (
	cnClusterCA    = "kubernetes"
	cnFrontProxyCA = "front-proxy-ca"
	cnEtcdCA       = "etcd-ca"
)

// ClusterPKI is one cluster's long-lived key material, PEM encoded, as kubeadm expects it in
// /etc/kubernetes/pki: the cluster CA, the front-proxy CA, the etcd CA and the service-account
// key pair.
type ClusterPKI struct {
	CACert, CAKey                     []byte
	FrontProxyCACert, FrontProxyCAKey []byte
	EtcdCACert, EtcdCAKey             []byte
	SAPub, SAKey                      []byte
}

// NewClusterPKI generates all of it, valid from now-5m for ten years. rnd (crypto/rand when
// nil) supplies the serial numbers; since Go 1.26 key generation always draws from the
// system's secure source, whatever rnd is.
func NewClusterPKI(clusterName string, now time.Time, rnd io.Reader) (*ClusterPKI, error) {
	if clusterName == "" {
		return nil, errors.New("cluster PKI: empty cluster name")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	var p ClusterPKI
	var err error
	if p.CACert, p.CAKey, err = newClusterCA(cnClusterCA, clusterName, now, rnd); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if p.FrontProxyCACert, p.FrontProxyCAKey, err = newClusterCA(cnFrontProxyCA, clusterName, now, rnd); err != nil {
		return nil, fmt.Errorf("front-proxy CA: %w", err)
	}
	if p.EtcdCACert, p.EtcdCAKey, err = newClusterCA(cnEtcdCA, clusterName, now, rnd); err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	if p.SAKey, err = encodeECKey(saKey); err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("service-account public key: %w", err)
	}
	p.SAPub = pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: pubDER})
	return &p, nil
}

// newClusterCA returns a self-signed CA shaped like kubeadm's own. The cluster name goes into
// the organizational unit only so that a person holding a stray certificate can tell which
// cluster it belongs to; nothing in Kubernetes reads a CA's subject.
func newClusterCA(cn, clusterName string, now time.Time, rnd io.Reader) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial128(rnd)
	if err != nil {
		return nil, nil, err
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, OrganizationalUnit: []string{clusterName}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// Every certificate kubeadm issues hangs directly off these CAs, so forbidding
		// intermediates costs nothing and limits what a leaked leaf could be misused as.
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		SubjectKeyId:   skid,
	}
	der, err := x509.CreateCertificate(rnd, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeECKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), keyPEM, nil
}

// newSerial128 draws a positive serial below 2^128. RFC 5280 caps serials at 20 octets; 128
// random bits keep collisions out of reach without depending on any counter.
func newSerial128(rnd io.Reader) (*big.Int, error) {
	for {
		n, err := rand.Int(rnd, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, err
		}
		// Zero is not a valid serial.
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID follows RFC 7093 method 1 (leftmost 160 bits of the SHA-256 of the public key
// bits) so that the identifier does not depend on SHA-1.
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	raw, err := pub.Bytes()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return sum[:20], nil
}

func encodeECKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemECPrivateKey, Bytes: der}), nil
}

// File is one file to place on a host.
type File struct {
	Path    string
	Mode    uint32
	Content []byte
}

// Files lists what a control plane needs under /etc/kubernetes/pki; workers get nil because
// they only ever receive the CA certificate through kubeadm's discovery. The contents are
// copies, so a caller may hand them to a transport without sharing p's buffers.
func (p *ClusterPKI) Files(controlPlane bool) []File {
	if !controlPlane {
		return nil
	}
	const certMode, keyMode = 0o644, 0o600
	files := []File{
		{Path: pkiDir + fileCACert, Mode: certMode, Content: p.CACert},
		{Path: pkiDir + fileCAKey, Mode: keyMode, Content: p.CAKey},
		{Path: pkiDir + fileFrontProxyCert, Mode: certMode, Content: p.FrontProxyCACert},
		{Path: pkiDir + fileFrontProxyKey, Mode: keyMode, Content: p.FrontProxyCAKey},
		{Path: pkiDir + fileEtcdCACert, Mode: certMode, Content: p.EtcdCACert},
		{Path: pkiDir + fileEtcdCAKey, Mode: keyMode, Content: p.EtcdCAKey},
		{Path: pkiDir + fileSAKey, Mode: keyMode, Content: p.SAKey},
		{Path: pkiDir + fileSAPub, Mode: certMode, Content: p.SAPub},
	}
	for i := range files {
		files[i].Content = bytes.Clone(files[i].Content)
	}
	return files
}

// CACertHash is kubeadm's discovery hash of a CA: "sha256:" + lowercase hex of SHA-256 over
// the certificate's RawSubjectPublicKeyInfo. A joining node pins the CA with it.
func CACertHash(caCertPEM []byte) (string, error) {
	cert, err := parseCertPEM(caCertPEM)
	if err != nil {
		return "", fmt.Errorf("CA certificate hash: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Verify checks that every pair parses and each key matches its certificate or public key.
// It runs before material leaves the coordinator, because kubeadm given a mismatched pair
// fails late and with an unhelpful message, on every control plane at once.
func (p *ClusterPKI) Verify() error {
	cas := []struct {
		certName, keyName string
		cert, key         []byte
	}{
		{fileCACert, fileCAKey, p.CACert, p.CAKey},
		{fileFrontProxyCert, fileFrontProxyKey, p.FrontProxyCACert, p.FrontProxyCAKey},
		{fileEtcdCACert, fileEtcdCAKey, p.EtcdCACert, p.EtcdCAKey},
	}
	for _, ca := range cas {
		if _, _, err := parseCAPair(ca.cert, ca.key); err != nil {
			return fmt.Errorf("%s / %s: %w", ca.certName, ca.keyName, err)
		}
	}
	key, err := parseKeyPEM(p.SAKey)
	if err != nil {
		return fmt.Errorf("%s: %w", fileSAKey, err)
	}
	block, _ := pem.Decode(p.SAPub)
	if block == nil || block.Type != pemPublicKey {
		return fmt.Errorf("%s: no %s PEM block", fileSAPub, pemPublicKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", fileSAPub, err)
	}
	if !publicKeysEqual(key.Public(), pub) {
		return fmt.Errorf("%s does not match %s", fileSAKey, fileSAPub)
	}
	return nil
}

// parseCAPair parses a CA certificate and its key and checks that they belong together.
func parseCAPair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	if !cert.IsCA {
		return nil, nil, errors.New("certificate is not a CA")
	}
	// A self-signature check catches a certificate whose bytes were damaged after issue.
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, nil, fmt.Errorf("certificate is not self-signed: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, nil, errors.New("private key does not match certificate")
	}
	return cert, key, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemCertificate {
		return nil, fmt.Errorf("no %s PEM block", pemCertificate)
	}
	return x509.ParseCertificate(block.Bytes)
}

// parseKeyPEM reads both encodings kubeadm accepts, so material imported from an existing
// cluster is not refused for being PKCS#8.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no private key PEM block")
	}
	switch block.Type {
	case pemECPrivateKey:
		return x509.ParseECPrivateKey(block.Bytes)
	case pemPKCS8Key:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("unexpected PEM block %q for a private key", block.Type)
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
