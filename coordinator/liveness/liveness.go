// Package liveness turns agent heartbeats into host liveness, on the leader only.
// Heartbeats are not Raft writes: each replica keeps the leases of the agents connected to
// it in memory. The leader periodically gathers every replica's leases and writes only the
// transitions (online -> offline after the lease expires, offline -> back when the agent
// returns). After a leader change, leases get a grace period, so no host flaps offline just
// because the leader moved and had not yet heard from the replica holding its agent.
package liveness

import (
	"context"
	"log/slog"
	"time"
)

// Host is what the decision needs to know about a host from state.
type Host struct {
	ID          string
	State       string // available, assigned, discovered, offline, decommissioned
	LastSeen    time.Time
	ConnectedTo string
}

// Lease is the freshest word from a host's agent: when, and which replica heard it.
type Lease struct {
	At      time.Time
	Replica string
}

// Transition is a liveness change to write: online or offline, and which replica holds the
// agent's stream ("" when none).
type Transition struct {
	HostID   string
	Online   bool
	LastSeen time.Time
	Replica  string
}

// Policy is the timing of liveness decisions.
type Policy struct {
	// TTL is how long a host may go unheard before it is offline.
	TTL time.Duration
	// Grace is how long a new leader waits, beyond TTL, before declaring anything offline.
	Grace time.Duration
}

// Decide is the pure liveness rule: given the hosts, the freshest lease of each (from any
// replica), when this leader took over and now, which transitions to write. Besides going
// offline and coming back, an online host whose agent moved to another replica is recorded
// once (a reconnect, not a heartbeat: steady state writes nothing).
func Decide(p Policy, now, leaderSince time.Time, hosts []Host, leases map[string]Lease) []Transition {
	var out []Transition
	settled := now.Sub(leaderSince) >= p.TTL+p.Grace
	for _, h := range hosts {
		seen := h.LastSeen
		l, heard := leases[h.ID]
		if heard && l.At.After(seen) {
			seen = l.At
		}
		fresh := now.Sub(seen) < p.TTL
		switch h.State {
		case "decommissioned":
		case "offline":
			if heard && fresh {
				out = append(out, Transition{HostID: h.ID, Online: true, LastSeen: seen, Replica: l.Replica})
			}
		default:
			switch {
			case !fresh && settled:
				out = append(out, Transition{HostID: h.ID, Online: false, LastSeen: seen})
			case heard && fresh && l.Replica != "" && l.Replica != h.ConnectedTo:
				out = append(out, Transition{HostID: h.ID, Online: true, LastSeen: seen, Replica: l.Replica})
			}
		}
	}
	return out
}

// Source gives the loop what it reads and writes.
type Source interface {
	// Hosts lists hosts from local state.
	Hosts() []Host
	// Leases gathers the freshest lease per host from every reachable replica.
	Leases(ctx context.Context) map[string]Lease
	// Apply writes one transition through Raft.
	Apply(ctx context.Context, t Transition) error
}

// Run decides and applies transitions every interval until ctx ends. It is a leader loop:
// started when leadership is established (that moment starts the grace period).
func Run(ctx context.Context, p Policy, interval time.Duration, src Source, now func() time.Time, logger *slog.Logger) error {
	since := now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, tr := range Decide(p, now(), since, src.Hosts(), src.Leases(ctx)) {
			if err := src.Apply(ctx, tr); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				logger.Warn("cannot record host liveness", "host_id", tr.HostID, "online", tr.Online, "err", err)
				continue
			}
			logger.Info("host liveness changed", "host_id", tr.HostID, "online", tr.Online, "last_seen", tr.LastSeen)
		}
	}
}
