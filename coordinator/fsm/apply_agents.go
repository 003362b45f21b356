package fsm

import (
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func (f *FSM) applySetAgentCA(m *raftcmdv1.SetAgentCA) any {
	if f.st.AgentCA() != nil {
		// Two leaders in a row may both try to create it; the first one wins for good,
		// or certificates already issued would stop verifying.
		return state.Conflict("the agent CA already exists")
	}
	if len(m.GetCertDer()) == 0 || len(m.GetKeyDer()) == 0 {
		return state.Invalid("", "the agent CA needs a certificate and a key")
	}
	f.st.SetAgentCA(&state.AgentCA{CertDER: m.GetCertDer(), KeyDER: m.GetKeyDer(), CreatedAt: unixTime(m.GetAt())})
	return nil
}

// applyRegisterAgent creates the host of an agent that presented a join token, counting the
// token's use. Hosts of bare-metal infras start discovered (an operator or an auto-accept
// rule makes them available); elsewhere the token itself is the operator's acceptance.
func (f *FSM) applyRegisterAgent(m *raftcmdv1.RegisterAgent) any {
	at := unixTime(m.GetAt())
	jt, ok := f.st.JoinToken(m.GetJoinTokenId())
	if !ok {
		return state.NotFound("join token %s not found (revoked?)", m.GetJoinTokenId())
	}
	p := m.GetHost()
	if p.GetInfraId() != jt.InfraID {
		return state.Invalid("infra_id", "join token %s registers hosts of infra %s only", jt.ID, jt.InfraID)
	}
	if k := m.GetKeyId(); k != "" {
		if h, ok := f.st.HostByKey(k); ok && h.InfraID == jt.InfraID && h.State != state.HostDecommissioned {
			// The same agent asking again (its first answer was lost): same host, no
			// second use of the token.
			return h
		}
	}
	if !at.Before(jt.ExpiresAt) {
		return state.Conflict("join token %s expired", jt.ID)
	}
	if jt.MaxUses > 0 && jt.Uses >= jt.MaxUses {
		return state.Conflict("join token %s has been used %d time(s), its limit", jt.ID, jt.Uses)
	}
	infra, ok := f.st.Infra(jt.InfraID)
	if !ok {
		return state.NotFound("infra %s not found", jt.InfraID)
	}
	if infra.Kind == "baremetal" {
		if old := f.bootedHost(p, infra.ID); old != nil {
			// A network-booted machine's live image keeps no identity across boots: the
			// same machine (by the MAC it boots from) registering again takes its host back
			// instead of leaving a stale one behind. The join token is checked as for a
			// new host.
			h := *old
			h.KeyID, h.LastSeen = m.GetKeyId(), at
			inventoryInto(&h, p)
			f.st.PutHost(&h)
			f.linkMachine(&h, at)
			used := *jt
			used.Uses++
			f.st.PutJoinToken(&used)
			return &h
		}
	}
	if _, exists := f.st.Host(p.GetId()); exists {
		return state.Conflict("host %s already exists", p.GetId())
	}
	h := &state.Host{ID: p.GetId(), InfraID: jt.InfraID, State: state.HostAvailable, CreatedAt: at, LastSeen: at, KeyID: m.GetKeyId()}
	inventoryInto(h, p)
	if infra.Kind == "baremetal" && !infra.AutoAccept.Accepts(h) {
		h.State = state.HostDiscovered
	}
	f.st.PutHost(h)
	f.linkMachine(h, at)
	used := *jt
	used.Uses++
	f.st.PutJoinToken(&used)
	return h
}

// applySetHostLiveness moves a host offline or back. Decommissioned hosts stay as they are;
// a repeated transition changes nothing (two leaders in a row may both decide it).
func (f *FSM) applySetHostLiveness(m *raftcmdv1.SetHostLiveness) any {
	old, ok := f.st.Host(m.GetHostId())
	if !ok {
		return state.NotFound("host %s not found", m.GetHostId())
	}
	h := *old
	if seen := unixTime(m.GetLastSeen()); seen.After(h.LastSeen) {
		h.LastSeen = seen
	}
	h.ConnectedTo = m.GetReplica()
	switch {
	case old.State == state.HostDecommissioned:
		return old
	case m.GetOnline() && old.State == state.HostOffline:
		h.State, h.OfflineFrom = old.OfflineFrom, ""
		if h.State == "" {
			h.State = state.HostAvailable
		}
	case !m.GetOnline() && old.State != state.HostOffline:
		h.State, h.OfflineFrom = state.HostOffline, old.State
	}
	f.st.PutHost(&h)
	return &h
}
