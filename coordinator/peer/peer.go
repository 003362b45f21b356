// Package peer carries coordinator-to-coordinator traffic: Raft and the internal gRPC
// service share one port, told apart by the first byte of each connection, optionally
// wrapped in mutual TLS. One port per replica keeps firewalls and certificates simple, and a
// single dial hook lets tests partition replicas.
package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/deployme/deployme/internal/logkey"
)

// Connection types: the first byte a dialer writes.
const (
	TypeRaft byte = 'R'
	TypeGRPC byte = 'G'
)

// handshakeTimeout bounds how long an accepted connection may take to say what it is and
// finish TLS, so a silent client cannot hold a goroutine forever.
const handshakeTimeout = 10 * time.Second

// Dialer opens raw connections; tests inject one that can partition replicas.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// TLSFiles names the PEM files of a replica's peer certificate.
type TLSFiles struct{ Cert, Key, CA string }

// LoadTLS builds the mutual-TLS configurations from PEM files: a replica presents its
// certificate and accepts only peers whose certificate chains to CA.
func LoadTLS(f TLSFiles) (server, client *tls.Config, err error) {
	if f.Cert == "" && f.Key == "" && f.CA == "" {
		return nil, nil, nil
	}
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, nil, errors.New("peer TLS needs all of --tls-cert, --tls-key and --tls-ca")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("peer TLS key pair: %w", err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("peer TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("peer TLS CA %s holds no PEM certificate", f.CA)
	}
	return ConfigsFor(cert, pool)
}

// ConfigsFor builds the server and client configurations for a certificate and a CA pool.
// Peers are dialled by address, which certificates may not name, so the client checks the
// chain to the CA rather than the host name: holding a certificate of the cluster CA is what
// makes a peer.
func ConfigsFor(cert tls.Certificate, pool *x509.CertPool) (server, client *tls.Config, err error) {
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates:       []tls.Certificate{cert},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the chain check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
	return server, client, nil
}

// Config configures a Mux.
type Config struct {
	// ServerTLS and ClientTLS enable mutual TLS (both or neither).
	ServerTLS, ClientTLS *tls.Config
	// Dialer opens connections to peers; nil uses net.Dialer.
	Dialer Dialer
	Logger *slog.Logger
}

// Mux serves one listener for Raft and gRPC.
type Mux struct {
	ln     net.Listener
	cfg    Config
	raft   *chanListener
	grpc   *chanListener
	logger *slog.Logger
	once   sync.Once
}

// NewMux wraps a listener. Call Serve to start accepting.
func NewMux(ln net.Listener, cfg Config) *Mux {
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Mux{ln: ln, cfg: cfg, raft: newChanListener(ln.Addr()), grpc: newChanListener(ln.Addr()), logger: cfg.Logger}
}

// TLS tells whether peer traffic is encrypted and authenticated.
func (m *Mux) TLS() bool { return m.cfg.ServerTLS != nil }

// Addr is the listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// RaftListener yields the Raft connections.
func (m *Mux) RaftListener() net.Listener { return m.raft }

// GRPCListener yields the gRPC connections.
func (m *Mux) GRPCListener() net.Listener { return m.grpc }

// Serve accepts connections until the listener is closed (by Close).
func (m *Mux) Serve() error {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			m.Close()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go m.handle(conn)
	}
}

func (m *Mux) handle(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		conn.Close()
		return
	}
	var target *chanListener
	switch b[0] {
	case TypeRaft:
		target = m.raft
	case TypeGRPC:
		target = m.grpc
	default:
		m.logger.Warn("peer connection of unknown type refused", logkey.RemoteAddr, conn.RemoteAddr().String(), "type", b[0])
		conn.Close()
		return
	}
	if m.cfg.ServerTLS != nil {
		tc := tls.Server(conn, m.cfg.ServerTLS)
		if err := tc.Handshake(); err != nil {
			m.logger.Warn("peer TLS handshake failed", logkey.RemoteAddr, conn.RemoteAddr().String(), logkey.Err, err)
			conn.Close()
			return
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Time{})
	if !target.deliver(conn) {
		conn.Close()
	}
}

// Dial opens a connection of type typ to a peer's mux.
func (m *Mux) Dial(ctx context.Context, addr string, typ byte) (net.Conn, error) {
	conn, err := m.cfg.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte{typ}); err != nil {
		conn.Close()
		return nil, err
	}
	if m.cfg.ClientTLS != nil {
		tc := tls.Client(conn, m.cfg.ClientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("peer TLS handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// Close stops accepting and closes both virtual listeners.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		err = m.ln.Close()
		m.raft.Close()
		m.grpc.Close()
	})
	return err
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
