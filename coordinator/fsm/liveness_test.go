package fsm_test

import (
	"testing"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// TestHostLiveness: an offline host returns to the state it had; repeats change nothing;
// decommissioned hosts are left alone.
func TestHostLiveness(t *testing.T) {
	r := filled(t)
	hostState := func(id string) (st, from string) {
		r.f.Read(func(s *state.State) {
			h, _ := s.Host(id)
			st, from = h.State, h.OfflineFrom
		})
		return st, from
	}
	// An assigned host (a node of cls_prod) and an available one.
	var assigned, available string
	r.f.Read(func(s *state.State) {
		for _, h := range s.Hosts() {
			switch {
			case h.State == state.HostAssigned && assigned == "":
				assigned = h.ID
			case h.State == state.HostAvailable && available == "":
				available = h.ID
			}
		}
	})
	if assigned == "" || available == "" {
		t.Fatal("fill() has no assigned and available hosts")
	}
	for _, id := range []string{assigned, available} {
		before, _ := hostState(id)
		r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: id, Online: false, At: r.at()})
		r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: id, Online: false, At: r.at()})
		if st, from := hostState(id); st != state.HostOffline || from != before {
			t.Fatalf("%s after offline twice: %s (from %q), want offline from %s", id, st, from, before)
		}
		r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: id, Online: true, LastSeen: r.at(), At: r.at()})
		if st, from := hostState(id); st != before || from != "" {
			t.Fatalf("%s after coming back: %s (from %q), want %s", id, st, from, before)
		}
	}
	r.ok(command.TypeDecommissionHost, &raftcmdv1.DecommissionHost{Id: available, At: r.at()})
	r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: available, Online: false, At: r.at()})
	if st, _ := hostState(available); st != state.HostDecommissioned {
		t.Fatalf("decommissioned host went %s", st)
	}
}
