package agentsvc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"time"
)

// reissueBefore is how long before expiry the endpoint's server certificate is replaced.
const reissueBefore = 7 * 24 * time.Hour

// CertSource is what the TLS configuration needs from the application layer.
type CertSource interface {
	AgentServerCertificate(names []string) (tls.Certificate, error)
	AgentCAPool() *x509.CertPool
}

// certCache holds this replica's server certificate for the agent endpoint.
type certCache struct {
	src   CertSource
	names []string
	now   func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
}

func (c *certCache) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && c.now().Add(reissueBefore).Before(c.cert.Leaf.NotAfter) {
		return c.cert, nil
	}
	cert, err := c.src.AgentServerCertificate(c.names)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	c.cert = &cert
	return c.cert, nil
}

// serverNames are the names the endpoint's certificate is valid for: the host part of the
// advertised address plus loopback.
func serverNames(advertise string) []string {
	names := []string{"localhost", "127.0.0.1"}
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		host = advertise
	}
	if host != "" && host != "localhost" && host != "127.0.0.1" {
		names = append([]string{host}, names...)
	}
	return names
}

// TLSConfig is the agent endpoint's TLS configuration. It is resolved at each handshake, so
// it uses the agent CA as it exists then: before the CA exists, handshakes fail and agents
// retry. A client certificate is optional at the TLS layer (Register has none) and checked by
// each RPC that needs one.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool := s.backend.AgentCAPool()
			if pool == nil {
				return nil, errors.New("the agent CA does not exist yet")
			}
			cert, err := s.certs.get()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   tls.VerifyClientCertIfGiven,
				ClientCAs:    pool,
				// gRPC needs ALPN h2; the config returned here replaces the base one.
				NextProtos: []string{"h2"},
			}, nil
		},
	}
}
