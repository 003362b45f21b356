package fsm

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func (f *FSM) applySetMember(m *raftcmdv1.SetMember) any {
	if m.GetId() == "" || m.GetRaftAddr() == "" {
		return state.Invalid("id", "a member needs an id and a raft address")
	}
	mem := &state.Member{ID: m.GetId(), RaftAddr: m.GetRaftAddr(), HTTPAddr: m.GetHttpAddr(), GRPCAddr: m.GetGrpcAddr()}
	f.st.PutMember(mem)
	return mem
}

func (f *FSM) applyRemoveMember(m *raftcmdv1.RemoveMember) any {
	if _, ok := f.st.Member(m.GetId()); !ok {
		return state.NotFound("member %s not found", m.GetId())
	}
	f.st.DeleteMember(m.GetId())
	return nil
}

// applyIdempotent applies a wrapped command once per key; a retry gets the recorded outcome.
func (f *FSM) applyIdempotent(m *raftcmdv1.Idempotent) any {
	at := unixTime(m.GetAt())
	f.st.ExpireIdempotency(at.Add(-state.IdempotencyTTL))
	if rec, ok := f.st.Idempotency(m.GetKey()); ok {
		if rec.Fingerprint != m.GetFingerprint() {
			return state.Conflict("Idempotency-Key was already used for a different request")
		}
		if rec.Refusal != nil {
			return rec.Refusal
		}
		return nil
	}
	t, inner, err := command.Decode(m.GetInner())
	if err != nil {
		if errors.Is(err, command.ErrUnknownType) && t&command.IgnoreIfUnknown != 0 {
			return nil
		}
		// Same rule as a bare entry: refusing what newer replicas apply would diverge.
		panic(fmt.Sprintf("fsm: cannot apply idempotent inner entry: %v", err))
	}
	if t == command.TypeIdempotent {
		return state.Invalid("", "idempotent commands do not nest")
	}
	res := f.dispatch(inner)
	rec := &state.IdempotencyRecord{Key: m.GetKey(), Fingerprint: m.GetFingerprint(), At: at, ObjectID: objectID(res)}
	if r, ok := res.(*state.Error); ok {
		rec.Refusal = normalized(r)
	}
	f.st.PutIdempotency(rec)
	return res
}

func objectID(res any) string {
	_, id := state.Describe(res)
	return id
}

// normalized returns a copy of a refusal whose details went through JSON, as they do in a
// snapshot, so a recorded refusal is identical before and after a restore (numbers become
// float64 either way).
func normalized(e *state.Error) *state.Error {
	c := *e
	if len(e.Details) > 0 {
		var d map[string]any
		if b, err := json.Marshal(e.Details); err == nil && json.Unmarshal(b, &d) == nil {
			c.Details = d
		}
	}
	return &c
}
