package coordclient

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// parseCAHash turns "sha256:<hex>" into the digest.
func parseCAHash(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return nil, fmt.Errorf("CA hash %q: want sha256:<hex>", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("CA hash %q: want 64 hex digits after sha256:", s)
	}
	return b, nil
}

// CAHash returns the pin for a CA certificate, as --ca-hash expects it.
func CAHash(caDER []byte) string {
	sum := sha256.Sum256(caDER)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// verifyChainTo checks that the leaf of rawCerts chains to ca for usage, whatever names
// the leaf carries: a replica's certificate names its advertised address, which need not be
// the address the agent dialled.
func verifyChainTo(rawCerts [][]byte, ca *x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(rawCerts) == 0 {
		return errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// registerTLS is the TLS configuration for Register, when the agent has no CA yet. With a
// pin, the last certificate of the server's chain must hash to it (and the chain must hold
// together); without one, anything is accepted and the CA is learnt (trust on first use).
// pinFailed is set when the pin did not match, so the caller can tell a refusal it must not
// retry from a network error.
func registerTLS(pin []byte, seenCA *atomic.Pointer[[]byte], pinFailed *atomic.Bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done below: there is no CA to verify names against yet.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return errors.New("no server certificate")
			}
			last := rawCerts[len(rawCerts)-1]
			if pin != nil {
				sum := sha256.Sum256(last)
				if !bytes.Equal(sum[:], pin) {
					pinFailed.Store(true)
					return ErrCAMismatch
				}
			}
			ca, err := x509.ParseCertificate(last)
			if err != nil {
				return err
			}
			if err := verifyChainTo(rawCerts, ca, x509.ExtKeyUsageServerAuth); err != nil {
				return fmt.Errorf("server chain does not end with its CA: %w", err)
			}
			seen := bytes.Clone(last)
			seenCA.Store(&seen)
			return nil
		},
	}
}

// mutualTLS is the TLS configuration for everything after registration: the agent's
// certificate, and a server chain verified against the stored CA (names not checked).
func mutualTLS(cert tls.Certificate, ca *x509.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return verifyChainTo(rawCerts, ca, x509.ExtKeyUsageServerAuth)
		},
	}
}

func newCSR(key *ecdsa.PrivateKey) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "deployme-agent"},
	}, key)
}

// checkIssued verifies a certificate the coordinator issued: for our key, client auth,
// signed by the CA.
func checkIssued(der []byte, key *ecdsa.PrivateKey, ca *x509.Certificate) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("issued certificate is not for the agent's key")
	}
	if err := verifyChainTo([][]byte{der}, ca, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	return c, nil
}

// renewAt is when a certificate should be renewed: once less than a third of its lifetime
// remains.
func renewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Add(-life / 3)
}
