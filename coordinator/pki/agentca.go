// Package pki issues the certificates the coordinator needs: the agent CA that identifies
// hosts (a client certificate per host, signed from the agent's own certificate request) and
// the server certificates replicas present to agents; each cluster's CAs and
// service-account key, and admin kubeconfigs signed by them; and the keyring that seals
// private keys and join tokens at rest in Raft. Keys are ECDSA P-256.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// Lifetimes.
const (
	CALifetime     = 10 * 365 * 24 * time.Hour
	ClientLifetime = 30 * 24 * time.Hour // agents renew well before expiry
	ServerLifetime = 90 * 24 * time.Hour
	// backdate tolerates clock skew between replicas and hosts.
	backdate = 5 * time.Minute
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA creates a self-signed CA named name. Entropy comes from rnd (crypto/rand when nil).
func NewCA(name string, now time.Time, rnd io.Reader) (certDER, keyDER []byte, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial(rnd)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"deployme"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	certDER, err = x509.CreateCertificate(rnd, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err = x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certDER, keyDER, nil
}

// ParseCA loads a CA from DER.
func ParseCA(certDER, keyDER []byte) (*CA, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("certificate is not a CA")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Fingerprint is the SHA-256 of the CA certificate, hex: what an agent pins before it has
// the CA (it travels with the join command).
func Fingerprint(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return hex.EncodeToString(sum[:])
}

// SignClient signs an agent's certificate request for a host: the host ID is the common
// name, client-auth only. The request's signature proves the agent holds the key.
func (ca *CA) SignClient(csrDER []byte, hostID string, now time.Time, rnd io.Reader) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	serial, err := newSerial(rnd)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostID, Organization: []string{"deployme-agents"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(ClientLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return x509.CreateCertificate(rnd, tmpl, ca.Cert, csr.PublicKey, ca.Key)
}

// IssueServer issues a server certificate for a replica's agent endpoint, valid for the
// given host names and IP addresses.
func (ca *CA) IssueServer(names []string, now time.Time, rnd io.Reader) (tls.Certificate, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := newSerial(rnd)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "deployme coordinator", Organization: []string{"deployme"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(ServerLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rnd, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}, nil
}

// Pool returns a pool holding the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func newSerial(rnd io.Reader) (*big.Int, error) {
	return rand.Int(rnd, new(big.Int).Lsh(big.NewInt(1), 127))
}

// KeyID identifies a public key: the SHA-256 of its PKIX encoding, hex.
func KeyID(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}
