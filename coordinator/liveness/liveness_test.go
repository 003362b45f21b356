package liveness_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/liveness"
)

func TestDecide(t *testing.T) {
	p := liveness.Policy{TTL: 15 * time.Second, Grace: 10 * time.Second}
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	longLeader := t0.Add(-time.Hour)
	tests := []struct {
		name   string
		now    time.Time
		since  time.Time
		hosts  []liveness.Host
		leases map[string]liveness.Lease
		want   []liveness.Transition
	}{
		{name: "fresh lease: nothing", now: t0, since: longLeader,
			hosts:  []liveness.Host{{ID: "h1", State: "available", LastSeen: t0.Add(-time.Hour)}},
			leases: map[string]liveness.Lease{"h1": {At: t0.Add(-5 * time.Second)}}},
		{name: "expired lease: offline", now: t0, since: longLeader,
			hosts:  []liveness.Host{{ID: "h1", State: "assigned", LastSeen: t0.Add(-time.Hour)}},
			leases: map[string]liveness.Lease{"h1": {At: t0.Add(-20 * time.Second)}},
			want:   []liveness.Transition{{HostID: "h1", Online: false, LastSeen: t0.Add(-20 * time.Second)}}},
		{name: "no lease anywhere and stale in state: offline", now: t0, since: longLeader,
			hosts: []liveness.Host{{ID: "h1", State: "available", LastSeen: t0.Add(-time.Minute)}},
			want:  []liveness.Transition{{HostID: "h1", Online: false, LastSeen: t0.Add(-time.Minute)}}},
		{name: "new leader inside TTL+grace: nothing goes offline", now: t0, since: t0.Add(-20 * time.Second),
			hosts: []liveness.Host{{ID: "h1", State: "available", LastSeen: t0.Add(-time.Minute)}}},
		{name: "new leader after TTL+grace: offline", now: t0, since: t0.Add(-25 * time.Second),
			hosts: []liveness.Host{{ID: "h1", State: "available", LastSeen: t0.Add(-time.Minute)}},
			want:  []liveness.Transition{{HostID: "h1", Online: false, LastSeen: t0.Add(-time.Minute)}}},
		{name: "offline host heard again: back", now: t0, since: t0, // no grace needed to come back
			hosts:  []liveness.Host{{ID: "h1", State: "offline", LastSeen: t0.Add(-time.Minute)}},
			leases: map[string]liveness.Lease{"h1": {At: t0.Add(-time.Second)}},
			want:   []liveness.Transition{{HostID: "h1", Online: true, LastSeen: t0.Add(-time.Second)}}},
		{name: "agent moved to another replica: recorded once", now: t0, since: longLeader,
			hosts:  []liveness.Host{{ID: "h1", State: "available", LastSeen: t0.Add(-time.Hour), ConnectedTo: "c1"}},
			leases: map[string]liveness.Lease{"h1": {At: t0.Add(-time.Second), Replica: "c2"}},
			want:   []liveness.Transition{{HostID: "h1", Online: true, LastSeen: t0.Add(-time.Second), Replica: "c2"}}},
		{name: "same replica, fresh lease: nothing (heartbeats are not writes)", now: t0, since: longLeader,
			hosts:  []liveness.Host{{ID: "h1", State: "available", LastSeen: t0.Add(-time.Hour), ConnectedTo: "c2"}},
			leases: map[string]liveness.Lease{"h1": {At: t0.Add(-time.Second), Replica: "c2"}}},
		{name: "offline host with an old lease: stays", now: t0, since: longLeader,
			hosts:  []liveness.Host{{ID: "h1", State: "offline", LastSeen: t0.Add(-time.Minute)}},
			leases: map[string]liveness.Lease{"h1": {At: t0.Add(-time.Minute)}}},
		{name: "decommissioned: never touched", now: t0, since: longLeader,
			hosts: []liveness.Host{{ID: "h1", State: "decommissioned", LastSeen: t0.Add(-time.Hour)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := liveness.Decide(p, tc.now, tc.since, tc.hosts, tc.leases)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("transitions (-want +got):\n%s", diff)
			}
		})
	}
}
