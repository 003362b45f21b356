package fsm

import (
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func (f *FSM) applyRegisterHost(m *raftcmdv1.RegisterHost) any {
	p := m.GetHost()
	at := unixTime(m.GetAt())
	if _, ok := f.st.Infra(p.GetInfraId()); !ok {
		return state.NotFound("infra %s not found", p.GetInfraId())
	}
	if old, ok := f.st.Host(p.GetId()); ok {
		if old.State == state.HostDecommissioned {
			return state.Conflict("host %s is decommissioned", old.ID)
		}
		if old.InfraID != p.GetInfraId() {
			return state.Conflict("host %s belongs to infra %s", old.ID, old.InfraID)
		}
		h := *old
		inventoryInto(&h, p)
		h.LastSeen = at
		f.st.PutHost(&h)
		return &h
	}
	st := p.GetState()
	if st != state.HostDiscovered && st != state.HostAvailable {
		return state.Invalid("state", "a new host starts discovered or available, not %q", st)
	}
	h := &state.Host{ID: p.GetId(), InfraID: p.GetInfraId(), State: st, CreatedAt: at, LastSeen: at}
	inventoryInto(h, p)
	f.st.PutHost(h)
	return h
}

func (f *FSM) applyDecommissionHost(m *raftcmdv1.DecommissionHost) any {
	old, ok := f.st.Host(m.GetId())
	if !ok {
		return state.NotFound("host %s not found", m.GetId())
	}
	if old.State == state.HostDecommissioned {
		return old
	}
	if n, ok := f.st.Node(old.ID); ok {
		return state.Conflict("host %s is a node of cluster %s; remove it from the cluster first", old.ID, n.ClusterID)
	}
	h := *old
	h.State = state.HostDecommissioned
	f.st.PutHost(&h)
	return &h
}

// applyAcceptHost makes a discovered host available, so placement can use it. Accepting a
// host that is already available or assigned changes nothing (the operator's retry, or an
// accept racing with placement, must not fail or undo anything). An offline host keeps its
// state: what changes is the state it returns to, so it comes back accepted.
func (f *FSM) applyAcceptHost(m *raftcmdv1.AcceptHost) any {
	old, ok := f.st.Host(m.GetId())
	if !ok {
		return state.NotFound("host %s not found", m.GetId())
	}
	h := *old
	switch {
	case old.State == state.HostDiscovered:
		h.State = state.HostAvailable
	case old.State == state.HostOffline && old.OfflineFrom == state.HostDiscovered:
		h.OfflineFrom = state.HostAvailable
	case old.State == state.HostDecommissioned:
		return state.Conflict("host %s is %s and cannot be accepted", old.ID, old.State)
	default:
		return old
	}
	f.st.PutHost(&h)
	return &h
}

// applySetHostNetwork sets or clears a host's own network (validated by the service: the
// state machine only stores it). A decommissioned host's network cannot change.
func (f *FSM) applySetHostNetwork(m *raftcmdv1.SetHostNetwork) any {
	old, ok := f.st.Host(m.GetHostId())
	if !ok {
		return state.NotFound("host %s not found", m.GetHostId())
	}
	if old.State == state.HostDecommissioned {
		return state.Conflict("host %s is decommissioned", old.ID)
	}
	h := *old
	h.NetworkJSON = nil
	if len(m.GetConfigJson()) > 0 {
		h.NetworkJSON = append([]byte(nil), m.GetConfigJson()...)
	}
	f.st.PutHost(&h)
	return &h
}
