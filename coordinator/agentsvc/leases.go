package agentsvc

import (
	"maps"
	"sync"
	"time"
)

// Lease is when a host was last heard from, and by which replica.
type Lease struct {
	LastSeen time.Time
	Replica  string
}

// Leases is the in-memory record of agent liveness on this replica. Heartbeats only touch
// it; liveness timers read it and write transitions to Raft.
type Leases struct {
	mu sync.Mutex
	m  map[string]Lease
}

// NewLeases returns an empty lease table.
func NewLeases() *Leases { return &Leases{m: make(map[string]Lease)} }

// Renew records that replica heard from host at t.
func (l *Leases) Renew(host, replica string, t time.Time) {
	l.mu.Lock()
	l.m[host] = Lease{LastSeen: t, Replica: replica}
	l.mu.Unlock()
}

// Snapshot returns a copy of every lease.
func (l *Leases) Snapshot() map[string]Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.m)
}

// LastSeen returns when each host was last heard from on this replica.
func (l *Leases) LastSeen() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]time.Time, len(l.m))
	for h, le := range l.m {
		out[h] = le.LastSeen
	}
	return out
}
