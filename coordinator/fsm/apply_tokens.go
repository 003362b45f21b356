package fsm

import (
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func (f *FSM) applyBootstrap(m *raftcmdv1.Bootstrap) any {
	if f.st.Bootstrapped() {
		// A coordinator that crashed between proposing bootstrap and seeing it applied
		// proposes it again on restart; the second one must change nothing.
		return state.Conflict("already bootstrapped")
	}
	f.st.PutToken(tokenFrom(m.GetAdminToken()))
	f.st.PutInfra(infraFrom(m.GetManagedInfra()))
	f.st.SetBootstrapped()
	return nil
}

func (f *FSM) applyCreateToken(m *raftcmdv1.CreateToken) any {
	t := tokenFrom(m.GetToken())
	if _, ok := f.st.Token(t.ID); ok {
		return state.Conflict("token %s already exists", t.ID)
	}
	if _, ok := f.st.TokenByHash(t.Hash); ok {
		return state.Conflict("a token with this secret already exists")
	}
	f.st.PutToken(t)
	return t
}

func (f *FSM) applyDeleteToken(m *raftcmdv1.DeleteToken) any {
	if _, ok := f.st.Token(m.GetId()); !ok {
		return state.NotFound("token %s not found", m.GetId())
	}
	f.st.DeleteToken(m.GetId())
	return nil
}
