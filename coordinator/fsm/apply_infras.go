package fsm

import (
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// ManagedInfraID is the built-in infra of the platform's own pool; it cannot be deleted.
const ManagedInfraID = "infra_managed"

func (f *FSM) applyCreateInfra(m *raftcmdv1.CreateInfra) any {
	i := infraFrom(m.GetInfra())
	if _, ok := f.st.Infra(i.ID); ok {
		return state.Conflict("infra %s already exists", i.ID)
	}
	if other, ok := f.st.InfraByName(i.Name); ok {
		e := state.Conflict("an infra named %q already exists (%s)", i.Name, other.ID)
		e.Field = "name"
		return e
	}
	f.st.PutInfra(i)
	return i
}

func (f *FSM) applyDeleteInfra(m *raftcmdv1.DeleteInfra) any {
	id := m.GetId()
	if _, ok := f.st.Infra(id); !ok {
		return state.NotFound("infra %s not found", id)
	}
	if id == ManagedInfraID {
		return state.Conflict("infra %s is built in and cannot be deleted", id)
	}
	if hosts, clusters := f.st.InfraInUse(id); hosts > 0 || clusters > 0 {
		e := state.Conflict("infra %s still has %d host(s) and %d cluster(s)", id, hosts, clusters)
		e.Details = map[string]any{"hosts": hosts, "clusters": clusters}
		return e
	}
	f.st.DeleteInfra(id)
	return nil
}

func (f *FSM) applyCreateJoinToken(m *raftcmdv1.CreateJoinToken) any {
	j := joinTokenFrom(m.GetJoinToken())
	if _, ok := f.st.Infra(j.InfraID); !ok {
		return state.NotFound("infra %s not found", j.InfraID)
	}
	if _, ok := f.st.JoinToken(j.ID); ok {
		return state.Conflict("join token %s already exists", j.ID)
	}
	if _, ok := f.st.JoinTokenByHash(j.Hash); ok {
		return state.Conflict("a join token with this secret already exists")
	}
	f.st.PutJoinToken(j)
	return j
}

func (f *FSM) applyDeleteJoinToken(m *raftcmdv1.DeleteJoinToken) any {
	if _, ok := f.st.JoinToken(m.GetId()); !ok {
		return state.NotFound("join token %s not found", m.GetId())
	}
	f.st.DeleteJoinToken(m.GetId())
	return nil
}
