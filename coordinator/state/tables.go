package state

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// TablesVersion is the layout version of Tables; Restore refuses a newer one.
const TablesVersion = 1

// Tables is every table as plain sorted slices: what a snapshot persists and restores.
// Listing each table here (and in FromTables) is how "snapshot covers every table" is kept:
// the round-trip test fills every table and compares.
type Tables struct {
	Version      int          `json:"version"`
	Bootstrapped bool         `json:"bootstrapped"`
	Tokens       []*Token     `json:"tokens"`
	Infras       []*Infra     `json:"infras"`
	JoinTokens   []*JoinToken `json:"join_tokens"`
	Hosts        []*Host      `json:"hosts"`
	Clusters     []*Cluster   `json:"clusters"`
	Nodes        []*Node      `json:"nodes"`
	Events       []Event      `json:"events"`
	NextEventSeq uint64       `json:"next_event_seq"`
	Members      []*Member    `json:"members"`
	// Idempotency is in the order recorded (expiry relies on it).
	Idempotency []*IdempotencyRecord `json:"idempotency"`
	AgentCA     *AgentCA             `json:"agent_ca,omitempty"`
	// Machines are the network-booted machines seen by the boot services.
	Machines []*Machine `json:"machines,omitempty"`
}

// Tables returns every table sorted by key. Objects are shared (they are immutable), so
// this is cheap enough to call under the FSM lock.
func (s *State) Tables() *Tables {
	t := &Tables{
		Version:      TablesVersion,
		Bootstrapped: s.bootstrapped,
		Tokens:       values(s.tokens),
		Infras:       values(s.infras),
		JoinTokens:   values(s.joinTokens),
		Hosts:        values(s.hosts),
		Clusters:     values(s.clusters),
		Nodes:        values(s.nodes),
		NextEventSeq: s.nextEventSeq,
		Members:      s.Members(),
		AgentCA:      s.agentCA,
		Machines:     values(s.machines),
	}
	for _, k := range s.idempotencyOrder {
		if r, ok := s.idempotency[k]; ok {
			t.Idempotency = append(t.Idempotency, r)
		}
	}
	ids := make([]string, 0, len(s.events))
	for id := range s.events {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		t.Events = append(t.Events, s.events[id]...)
	}
	return t
}

// FromTables rebuilds a state and its indexes from tables.
func FromTables(t *Tables) (*State, error) {
	if t.Version > TablesVersion {
		return nil, fmt.Errorf("state tables version %d is newer than this coordinator understands (%d)", t.Version, TablesVersion)
	}
	s := New()
	s.bootstrapped = t.Bootstrapped
	for _, x := range t.Tokens {
		s.PutToken(x)
	}
	for _, x := range t.Infras {
		s.PutInfra(x)
	}
	for _, x := range t.JoinTokens {
		s.PutJoinToken(x)
	}
	for _, x := range t.Hosts {
		s.PutHost(x)
	}
	for _, x := range t.Clusters {
		s.PutCluster(x)
	}
	for _, x := range t.Nodes {
		if _, ok := s.clusters[x.ClusterID]; !ok {
			return nil, fmt.Errorf("node %s belongs to missing cluster %s", x.HostID, x.ClusterID)
		}
		s.PutNode(x)
	}
	for _, e := range t.Events {
		s.events[e.ClusterID] = append(s.events[e.ClusterID], e)
	}
	for id, h := range s.events {
		slices.SortFunc(h, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
		s.events[id] = h
	}
	s.nextEventSeq = max(t.NextEventSeq, 1)
	for _, m := range t.Members {
		s.PutMember(m)
	}
	for _, r := range t.Idempotency {
		s.PutIdempotency(r)
	}
	s.agentCA = t.AgentCA
	for _, m := range t.Machines {
		s.PutMachine(m)
	}
	return s, nil
}

type keyed interface {
	*Token | *Infra | *JoinToken | *Host | *Cluster | *Node | *Machine
}

func keyOf(v any) string {
	switch x := v.(type) {
	case *Token:
		return x.ID
	case *Infra:
		return x.ID
	case *JoinToken:
		return x.ID
	case *Host:
		return x.ID
	case *Cluster:
		return x.ID
	case *Node:
		return x.HostID
	case *Machine:
		return x.MAC
	}
	return ""
}

func values[T keyed](m map[string]T) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(keyOf(a), keyOf(b)) })
	return out
}
