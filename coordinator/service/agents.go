package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/liveness"
	"github.com/deployme/deployme/coordinator/pki"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// EnsureAgentCA creates the agent CA if the cluster has none yet (a leader loop calls it;
// a concurrent creation by another leader is harmless: the first one stays).
func (s *Service) EnsureAgentCA(ctx context.Context) error {
	if s.agentCA() != nil {
		return nil
	}
	now := s.now()
	certDER, keyDER, err := pki.NewCA("deployme agent CA", now, s.cfg.Rand)
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, command.TypeSetAgentCA, &raftcmdv1.SetAgentCA{CertDer: certDER, KeyDer: keyDER, At: unixNano(now)}, "")
	if e, ok := err.(*v1.Error); ok && e.Code == v1.CodeConflict {
		return nil
	}
	return err
}

func (s *Service) agentCA() *pki.CA {
	var rec *state.AgentCA
	s.store.Read(func(st *state.State) { rec = st.AgentCA() })
	if rec == nil {
		return nil
	}
	ca, err := pki.ParseCA(rec.CertDER, rec.KeyDER)
	if err != nil {
		s.log.Error("stored agent CA is unusable", "err", err)
		return nil
	}
	return ca
}

// AgentCAFingerprint is the SHA-256 of the agent CA certificate ("" before it exists): the
// value an agent pins on its first contact.
func (s *Service) AgentCAFingerprint() string {
	var rec *state.AgentCA
	s.store.Read(func(st *state.State) { rec = st.AgentCA() })
	if rec == nil {
		return ""
	}
	return pki.Fingerprint(rec.CertDER)
}

// AgentServerCertificate issues this replica's certificate for the agent endpoint.
func (s *Service) AgentServerCertificate(names []string) (tls.Certificate, error) {
	ca := s.agentCA()
	if ca == nil {
		return tls.Certificate{}, v1.Errorf(v1.CodeUnavailable, "the agent CA does not exist yet")
	}
	return ca.IssueServer(names, s.now(), s.cfg.Rand)
}

// AgentRegistration is the outcome of a successful registration.
type AgentRegistration struct {
	HostID         string
	InfraID        string
	CertificateDER []byte
	CADER          []byte
}

// RegisterAgent turns a join token and a certificate request into a host and its client
// certificate. Refusals (unknown, expired, used-up or revoked token) change nothing.
func (s *Service) RegisterAgent(ctx context.Context, joinSecret string, reg HostRegistration, csrDER []byte) (*AgentRegistration, error) {
	hash := HashSecret(joinSecret)
	var jt *state.JoinToken
	lookup := func() {
		s.store.Read(func(st *state.State) { jt, _ = st.JoinTokenByHash(hash) })
	}
	if lookup(); jt == nil {
		// Perhaps minted a moment ago through another replica.
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		if s.linearize(lctx) == nil {
			lookup()
		}
		cancel()
	}
	if jt == nil {
		return nil, v1.Errorf(v1.CodeUnauthorized, "unknown or revoked join token")
	}
	if !s.now().Before(jt.ExpiresAt) {
		return nil, v1.Errorf(v1.CodeUnauthorized, "join token %s expired at %s", jt.ID, jt.ExpiresAt.Format(time.RFC3339))
	}
	ca := s.agentCA()
	if ca == nil {
		return nil, v1.Errorf(v1.CodeUnavailable, "the agent CA does not exist yet; retry shortly")
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, v1.InvalidField("csr", "certificate request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, v1.InvalidField("csr", "certificate request signature: %v", err)
	}
	keyID, err := pki.KeyID(csr.PublicKey)
	if err != nil {
		return nil, v1.InvalidField("csr", "%v", err)
	}
	id, err := s.newID("host_")
	if err != nil {
		return nil, err
	}
	reg.ID, reg.InfraID = id, jt.InfraID
	p := hostMsg(reg)
	a, err := s.apply(ctx, command.TypeRegisterAgent, &raftcmdv1.RegisterAgent{Host: p, JoinTokenId: jt.ID, At: unixNano(s.now()), KeyId: keyID}, id)
	if err != nil {
		return nil, err
	}
	// A retried registration (same key) gets the host the first attempt created.
	if h, ok := a.Value.(*state.Host); ok {
		id = h.ID
	} else if hid := s.hostIDByKey(keyID); hid != "" {
		id = hid
	}
	certDER, err := ca.SignClient(csrDER, id, s.now(), s.cfg.Rand)
	if err != nil {
		return nil, v1.InvalidField("csr", "%v", err)
	}
	return &AgentRegistration{HostID: id, InfraID: jt.InfraID, CertificateDER: certDER, CADER: ca.Cert.Raw}, nil
}

// AgentCAPool is the pool agent client certificates must chain to (nil before the CA exists).
func (s *Service) AgentCAPool() *x509.CertPool {
	ca := s.agentCA()
	if ca == nil {
		return nil
	}
	return ca.Pool()
}

// AgentHost returns a host as this replica knows it, for checking an agent's identity on
// every stream (a decommissioned host's certificate is refused).
func (s *Service) AgentHost(hostID string) (*v1.Host, bool) {
	h, err := s.localHost(hostID)
	if err != nil {
		// An agent that registered through another replica may reach this one before it
		// has applied the registration: catch up once before refusing it.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s.linearize(ctx) != nil {
			return nil, false
		}
		if h, err = s.localHost(hostID); err != nil {
			return nil, false
		}
	}
	return h, true
}

// RenewAgent signs a new certificate request for a registered, not decommissioned host.
func (s *Service) RenewAgent(_ context.Context, hostID string, csrDER []byte) ([]byte, error) {
	h, ok := s.AgentHost(hostID)
	if !ok || h.State == v1.HostDecommissioned {
		return nil, v1.Errorf(v1.CodeUnauthorized, "host %s is not registered or was decommissioned", hostID)
	}
	ca := s.agentCA()
	if ca == nil {
		return nil, v1.Errorf(v1.CodeUnavailable, "the agent CA does not exist yet")
	}
	der, err := ca.SignClient(csrDER, hostID, s.now(), s.cfg.Rand)
	if err != nil {
		return nil, v1.InvalidField("csr", "%v", err)
	}
	return der, nil
}

// AgentCoordinators lists every replica's agent (gRPC) address, so agents can fail over.
func (s *Service) AgentCoordinators() []string {
	var out []string
	s.store.Read(func(st *state.State) {
		for _, m := range st.Members() {
			if m.GRPCAddr != "" {
				out = append(out, m.GRPCAddr)
			}
		}
	})
	if len(out) == 0 && s.cfg.AdvertiseGRPC != "" {
		out = []string{s.cfg.AdvertiseGRPC}
	}
	return out
}

// HostCount is the number of hosts in this replica's state (the agent service sizes
// heartbeat intervals by it).
func (s *Service) HostCount() int {
	var n int
	s.store.Read(func(st *state.State) { n = st.HostCount() })
	return n
}

// SetHostLiveness records a liveness transition decided by the leader's liveness loop.
func (s *Service) SetHostLiveness(ctx context.Context, hostID string, online bool, lastSeen time.Time, replica string) error {
	_, err := s.apply(ctx, command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{
		HostId: hostID, Online: online, LastSeen: unixNano(lastSeen), At: unixNano(s.now()), Replica: replica,
	}, hostID)
	return err
}

// LivenessHosts lists hosts as the liveness rule sees them.
func (s *Service) LivenessHosts() []liveness.Host {
	var out []liveness.Host
	s.store.Read(func(st *state.State) {
		for _, h := range st.Hosts() {
			out = append(out, liveness.Host{ID: h.ID, State: h.State, LastSeen: h.LastSeen, ConnectedTo: h.ConnectedTo})
		}
	})
	return out
}

func (s *Service) hostIDByKey(keyID string) string {
	var id string
	s.store.Read(func(st *state.State) {
		if h, ok := st.HostByKey(keyID); ok {
			id = h.ID
		}
	})
	return id
}
