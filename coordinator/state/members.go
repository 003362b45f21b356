package state

import (
	"slices"
	"strings"
	"time"
)

// Member is a coordinator replica's addresses, so any replica can list them and tell
// agents where to go. Raft's own configuration is the truth for voting; this table adds what
// Raft does not know (HTTP and gRPC addresses).
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	GRPCAddr string `json:"grpc_addr,omitempty"`
}

// Member returns a replica by ID.
func (s *State) Member(id string) (*Member, bool) { m, ok := s.members[id]; return m, ok }

// Members lists replicas by ID.
func (s *State) Members() []*Member {
	out := make([]*Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// PutMember stores a replica's addresses.
func (s *State) PutMember(m *Member) { s.members[m.ID] = m }

// DeleteMember forgets a replica.
func (s *State) DeleteMember(id string) { delete(s.members, id) }

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// IdempotencyRecord is the outcome of the first request that used a key: retries get the
// same outcome instead of applying again.
type IdempotencyRecord struct {
	// Key is "<token id>/<client key>": keys of different callers never collide.
	Key string `json:"key"`
	// ObjectID is the object the first request created or changed ("" if none).
	ObjectID string `json:"object_id,omitempty"`
	// Refusal is why the first request was refused, if it was.
	Refusal *Error `json:"refusal,omitempty"`
	// Fingerprint identifies the request (method, path, body hash): the same key with a
	// different request is refused rather than answered with the wrong object.
	Fingerprint string    `json:"fingerprint"`
	At          time.Time `json:"at"`
}

// Idempotency returns the record of a key.
func (s *State) Idempotency(key string) (*IdempotencyRecord, bool) {
	r, ok := s.idempotency[key]
	return r, ok
}

// PutIdempotency records a key's outcome.
func (s *State) PutIdempotency(r *IdempotencyRecord) {
	s.idempotency[r.Key] = r
	s.idempotencyOrder = append(s.idempotencyOrder, r.Key)
}

// ExpireIdempotency forgets keys recorded before cutoff. Records are appended in log
// order, so the oldest are at the front.
func (s *State) ExpireIdempotency(cutoff time.Time) {
	n := 0
	for _, k := range s.idempotencyOrder {
		r, ok := s.idempotency[k]
		if !ok {
			n++
			continue
		}
		if !r.At.Before(cutoff) {
			break
		}
		delete(s.idempotency, k)
		n++
	}
	if n > 0 {
		s.idempotencyOrder = slices.Delete(s.idempotencyOrder, 0, n)
	}
}
