package fsm_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// TestAcceptHost: a discovered host becomes available and placeable; accepting a host that
// is already available or assigned changes nothing; an offline host that was discovered
// keeps being offline but comes back accepted; a decommissioned host is refused.
func TestAcceptHost(t *testing.T) {
	offline := func(r *replay, id string) string {
		r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: id, Online: false, At: r.at()})
		return id
	}
	tests := []struct {
		name string
		// host puts the host of the case in its starting state and returns its ID.
		host                func(r *replay) string
		wantState, wantFrom string
		// unchanged: the accept must leave every table as it was.
		unchanged bool
	}{
		{name: "discovered", host: func(*replay) string { return "host_new" }, wantState: state.HostAvailable},
		{name: "available", host: func(*replay) string { return "host_accepted" }, wantState: state.HostAvailable, unchanged: true},
		{name: "assigned", host: func(r *replay) string { return r.nodes("cls_prod")[0].HostID }, wantState: state.HostAssigned, unchanged: true},
		{name: "offline, was discovered", host: func(r *replay) string { return offline(r, "host_new") },
			wantState: state.HostOffline, wantFrom: state.HostAvailable},
		{name: "offline, was available", host: func(r *replay) string { return offline(r, "host_accepted") },
			wantState: state.HostOffline, wantFrom: state.HostAvailable, unchanged: true},
		{name: "offline, was assigned", host: func(r *replay) string { return offline(r, r.nodes("cls_prod")[0].HostID) },
			wantState: state.HostOffline, wantFrom: state.HostAssigned, unchanged: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := filled(t)
			id := tc.host(r)
			before := r.f.Tables()
			res := r.ok(command.TypeAcceptHost, &raftcmdv1.AcceptHost{Id: id, At: r.at()})
			h, ok := res.(*state.Host)
			if !ok {
				t.Fatalf("result %T %+v, want the host", res, res)
			}
			if h.ID != id || h.State != tc.wantState || h.OfflineFrom != tc.wantFrom {
				t.Errorf("host %s is %s (from %q), want %s (from %q)", h.ID, h.State, h.OfflineFrom, tc.wantState, tc.wantFrom)
			}
			if diff := cmp.Diff(r.host(id), h); diff != "" {
				t.Errorf("the result is not the stored host (-stored +result):\n%s", diff)
			}
			if tc.unchanged {
				if diff := cmp.Diff(before, r.f.Tables()); diff != "" {
					t.Errorf("accepting a %s host changed the tables (-before +after):\n%s", tc.name, diff)
				}
			}
			// Placement must see the host exactly when it is available: the free-host
			// index is kept by PutHost, not rebuilt.
			var free bool
			r.f.Read(func(st *state.State) {
				for _, x := range st.FreeHosts(h.InfraID, state.Size{CPUs: 1, MemoryBytes: 1}) {
					free = free || x.ID == id
				}
			})
			if want := tc.wantState == state.HostAvailable; free != want {
				t.Errorf("host %s in the free-host index: %v, want %v", id, free, want)
			}
		})
	}

	t.Run("offline host comes back accepted", func(t *testing.T) {
		r := filled(t)
		offline(r, "host_new")
		r.ok(command.TypeAcceptHost, &raftcmdv1.AcceptHost{Id: "host_new", At: r.at()})
		r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: "host_new", Online: true, LastSeen: r.at(), At: r.at()})
		if h := r.host("host_new"); h.State != state.HostAvailable || h.OfflineFrom != "" {
			t.Errorf("host_new came back %s (from %q), want available", h.State, h.OfflineFrom)
		}
	})

	t.Run("decommissioned", func(t *testing.T) {
		r := filled(t)
		res := r.apply(command.TypeAcceptHost, &raftcmdv1.AcceptHost{Id: "host_old", At: r.at()})
		e, ok := res.(*state.Error)
		if !ok || e.Kind != state.KindConflict {
			t.Fatalf("result %T %+v, want a conflict", res, res)
		}
		// The operator reads why: the message names the state that forbids it.
		if !strings.Contains(e.Message, state.HostDecommissioned) {
			t.Errorf("message %q does not name the host's state", e.Message)
		}
	})
}
