package state

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// MaxEventsPerCluster bounds each cluster's event history; older events are dropped first.
const MaxEventsPerCluster = 1000

// State holds every table and its indexes. It is not safe for concurrent use: the FSM
// serialises writers and readers around it.
type State struct {
	bootstrapped bool

	tokens      map[string]*Token
	tokenByHash map[string]string

	infras      map[string]*Infra
	infraByName map[string]string

	joinTokens      map[string]*JoinToken
	joinTokenByHash map[string]string

	hosts map[string]*Host
	// hostByKey finds an agent's host by the ID of its key (idempotent registration).
	hostByKey map[string]string
	// free holds each infra's available hosts sorted by (CPUs, memory, ID): placement is a
	// binary search plus a short scan instead of a sort of the whole fleet per create.
	free map[string][]*Host

	clusters      map[string]*Cluster
	clusterByName map[string]string
	// clusterOrder lists cluster IDs by (CreatedAt, ID): the order every list is served in.
	clusterOrder []string

	nodes          map[string]*Node // by host ID
	nodesByCluster map[string]map[string]struct{}

	events       map[string][]Event // by cluster ID, oldest first
	nextEventSeq uint64

	members map[string]*Member

	agentCA *AgentCA

	idempotency      map[string]*IdempotencyRecord
	idempotencyOrder []string // keys in the order recorded

	machines map[string]*Machine // by MAC
}

// New returns an empty state.
func New() *State {
	return &State{
		tokens:          map[string]*Token{},
		tokenByHash:     map[string]string{},
		infras:          map[string]*Infra{},
		infraByName:     map[string]string{},
		joinTokens:      map[string]*JoinToken{},
		joinTokenByHash: map[string]string{},
		hosts:           map[string]*Host{},
		hostByKey:       map[string]string{},
		free:            map[string][]*Host{},
		clusters:        map[string]*Cluster{},
		clusterByName:   map[string]string{},
		nodes:           map[string]*Node{},
		nodesByCluster:  map[string]map[string]struct{}{},
		events:          map[string][]Event{},
		nextEventSeq:    1,
		members:         map[string]*Member{},
		idempotency:     map[string]*IdempotencyRecord{},
		machines:        map[string]*Machine{},
	}
}

// Bootstrapped tells whether the first admin token and the managed infra exist.
func (s *State) Bootstrapped() bool { return s.bootstrapped }

// SetBootstrapped records that bootstrap has been applied.
func (s *State) SetBootstrapped() { s.bootstrapped = true }

// --- tokens

// Token returns a token by ID.
func (s *State) Token(id string) (*Token, bool) { t, ok := s.tokens[id]; return t, ok }

// TokenByHash returns the token whose secret hashes to hash.
func (s *State) TokenByHash(hash string) (*Token, bool) {
	id, ok := s.tokenByHash[hash]
	if !ok {
		return nil, false
	}
	return s.tokens[id], true
}

// Tokens lists tokens by creation time.
func (s *State) Tokens() []*Token {
	return sortedByCreation(s.tokens, func(t *Token) (time.Time, string) { return t.CreatedAt, t.ID })
}

// PutToken stores a token.
func (s *State) PutToken(t *Token) {
	if old, ok := s.tokens[t.ID]; ok {
		delete(s.tokenByHash, old.Hash)
	}
	s.tokens[t.ID] = t
	s.tokenByHash[t.Hash] = t.ID
}

// DeleteToken removes a token; its secret stops working at once.
func (s *State) DeleteToken(id string) {
	if t, ok := s.tokens[id]; ok {
		delete(s.tokenByHash, t.Hash)
		delete(s.tokens, id)
	}
}

// --- infras

// Infra returns an infra by ID.
func (s *State) Infra(id string) (*Infra, bool) { i, ok := s.infras[id]; return i, ok }

// InfraByName returns an infra by its unique name.
func (s *State) InfraByName(name string) (*Infra, bool) {
	id, ok := s.infraByName[name]
	if !ok {
		return nil, false
	}
	return s.infras[id], true
}

// Infras lists infras by creation time.
func (s *State) Infras() []*Infra {
	return sortedByCreation(s.infras, func(i *Infra) (time.Time, string) { return i.CreatedAt, i.ID })
}

// PutInfra stores an infra.
func (s *State) PutInfra(i *Infra) {
	if old, ok := s.infras[i.ID]; ok {
		delete(s.infraByName, old.Name)
	}
	s.infras[i.ID] = i
	s.infraByName[i.Name] = i.ID
}

// DeleteInfra removes an infra and its join tokens.
func (s *State) DeleteInfra(id string) {
	i, ok := s.infras[id]
	if !ok {
		return
	}
	for _, jt := range s.JoinTokensOf(id) {
		s.DeleteJoinToken(jt.ID)
	}
	delete(s.infraByName, i.Name)
	delete(s.infras, id)
}

// --- join tokens

// JoinToken returns a join token by ID.
func (s *State) JoinToken(id string) (*JoinToken, bool) { j, ok := s.joinTokens[id]; return j, ok }

// JoinTokenByHash returns the join token whose secret hashes to hash.
func (s *State) JoinTokenByHash(hash string) (*JoinToken, bool) {
	id, ok := s.joinTokenByHash[hash]
	if !ok {
		return nil, false
	}
	return s.joinTokens[id], true
}

// JoinTokensOf lists an infra's join tokens by creation time.
func (s *State) JoinTokensOf(infraID string) []*JoinToken {
	var out []*JoinToken
	for _, j := range s.joinTokens {
		if j.InfraID == infraID {
			out = append(out, j)
		}
	}
	sortCreation(out, func(j *JoinToken) (time.Time, string) { return j.CreatedAt, j.ID })
	return out
}

// PutJoinToken stores a join token.
func (s *State) PutJoinToken(j *JoinToken) {
	if old, ok := s.joinTokens[j.ID]; ok {
		delete(s.joinTokenByHash, old.Hash)
	}
	s.joinTokens[j.ID] = j
	s.joinTokenByHash[j.Hash] = j.ID
}

// DeleteJoinToken removes a join token.
func (s *State) DeleteJoinToken(id string) {
	if j, ok := s.joinTokens[id]; ok {
		delete(s.joinTokenByHash, j.Hash)
		delete(s.joinTokens, id)
	}
}

// --- hosts

// Host returns a host by ID.
func (s *State) Host(id string) (*Host, bool) { h, ok := s.hosts[id]; return h, ok }

// HostCount is the number of hosts, decommissioned ones included.
func (s *State) HostCount() int { return len(s.hosts) }

// HostByKey returns the host an agent key registered, if any.
func (s *State) HostByKey(keyID string) (*Host, bool) {
	id, ok := s.hostByKey[keyID]
	if !ok {
		return nil, false
	}
	return s.hosts[id], true
}

// Hosts lists hosts by creation time.
func (s *State) Hosts() []*Host {
	return sortedByCreation(s.hosts, func(h *Host) (time.Time, string) { return h.CreatedAt, h.ID })
}

// HostsOf lists an infra's hosts by ID.
func (s *State) HostsOf(infraID string) []*Host {
	var out []*Host
	for _, h := range s.hosts {
		if h.InfraID == infraID {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b *Host) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// PutHost stores a host.
func (s *State) PutHost(h *Host) {
	if old, ok := s.hosts[h.ID]; ok && old.State == HostAvailable {
		s.free[old.InfraID] = removeFree(s.free[old.InfraID], old)
	}
	s.hosts[h.ID] = h
	if h.KeyID != "" {
		s.hostByKey[h.KeyID] = h.ID
	}
	if h.State == HostAvailable {
		s.free[h.InfraID] = insertFree(s.free[h.InfraID], h)
	}
}

func compareFit(a, b *Host) int {
	return cmp.Or(cmp.Compare(a.CPUs, b.CPUs), cmp.Compare(a.MemoryBytes, b.MemoryBytes), strings.Compare(a.ID, b.ID))
}

func insertFree(list []*Host, h *Host) []*Host {
	i, _ := slices.BinarySearchFunc(list, h, compareFit)
	return slices.Insert(list, i, h)
}

func removeFree(list []*Host, h *Host) []*Host {
	if i, ok := slices.BinarySearchFunc(list, h, compareFit); ok {
		return slices.Delete(list, i, i+1)
	}
	return list
}

// --- clusters

// Cluster returns a cluster by ID.
func (s *State) Cluster(id string) (*Cluster, bool) { c, ok := s.clusters[id]; return c, ok }

// ClusterByName returns the live cluster with that name.
func (s *State) ClusterByName(name string) (*Cluster, bool) {
	id, ok := s.clusterByName[name]
	if !ok {
		return nil, false
	}
	return s.clusters[id], true
}

// Clusters lists clusters by (creation time, ID); the slice is fresh, the objects shared.
func (s *State) Clusters() []*Cluster {
	out := make([]*Cluster, len(s.clusterOrder))
	for i, id := range s.clusterOrder {
		out[i] = s.clusters[id]
	}
	return out
}

// ClusterCount is the number of clusters.
func (s *State) ClusterCount() int { return len(s.clusters) }

// ClustersWhere calls fn on clusters in list order, stopping when fn returns false.
func (s *State) ClustersWhere(fn func(*Cluster) bool) {
	for _, id := range s.clusterOrder {
		if !fn(s.clusters[id]) {
			return
		}
	}
}

// InfraInUse tells whether any host or cluster still belongs to the infra.
func (s *State) InfraInUse(id string) (hosts, clusters int) {
	for _, h := range s.hosts {
		if h.InfraID == id && h.State != HostDecommissioned {
			hosts++
		}
	}
	for _, c := range s.clusters {
		if c.InfraID == id {
			clusters++
		}
	}
	return hosts, clusters
}

// PutCluster stores a cluster.
func (s *State) PutCluster(c *Cluster) {
	old, existed := s.clusters[c.ID]
	if existed {
		delete(s.clusterByName, old.Name)
	}
	s.clusters[c.ID] = c
	s.clusterByName[c.Name] = c.ID
	if !existed {
		key := func(id string) (time.Time, string) { x := s.clusters[id]; return x.CreatedAt, x.ID }
		i, _ := slices.BinarySearchFunc(s.clusterOrder, c.ID, func(e, target string) int {
			et, eid := key(e)
			tt, tid := key(target)
			return cmp.Or(et.Compare(tt), strings.Compare(eid, tid))
		})
		s.clusterOrder = slices.Insert(s.clusterOrder, i, c.ID)
	}
}

// DeleteCluster removes a cluster, its nodes and its events. Hosts are released by the caller.
func (s *State) DeleteCluster(id string) {
	c, ok := s.clusters[id]
	if !ok {
		return
	}
	for hostID := range s.nodesByCluster[id] {
		delete(s.nodes, hostID)
	}
	delete(s.nodesByCluster, id)
	delete(s.events, id)
	delete(s.clusterByName, c.Name)
	delete(s.clusters, id)
	if i := slices.Index(s.clusterOrder, id); i >= 0 {
		s.clusterOrder = slices.Delete(s.clusterOrder, i, i+1)
	}
}

// --- nodes

// Node returns the node a host is, if any.
func (s *State) Node(hostID string) (*Node, bool) { n, ok := s.nodes[hostID]; return n, ok }

// NodesOf lists a cluster's nodes: control planes first (the init one first), then workers,
// each by host ID.
func (s *State) NodesOf(clusterID string) []*Node {
	out := make([]*Node, 0, len(s.nodesByCluster[clusterID]))
	for hostID := range s.nodesByCluster[clusterID] {
		out = append(out, s.nodes[hostID])
	}
	rank := map[string]int{RoleInitControlPlane: 0, RoleControlPlane: 1, RoleWorker: 2}
	slices.SortFunc(out, func(a, b *Node) int {
		return cmp.Or(cmp.Compare(rank[a.Role], rank[b.Role]), strings.Compare(a.HostID, b.HostID))
	})
	return out
}

// JoinedCount is how many of a cluster's nodes are joined Kubernetes nodes.
func (s *State) JoinedCount(clusterID string) int {
	n := 0
	for hostID := range s.nodesByCluster[clusterID] {
		if s.nodes[hostID].State == NodeJoined {
			n++
		}
	}
	return n
}

// PutNode stores a node.
func (s *State) PutNode(n *Node) {
	if old, ok := s.nodes[n.HostID]; ok && old.ClusterID != n.ClusterID {
		delete(s.nodesByCluster[old.ClusterID], n.HostID)
	}
	s.nodes[n.HostID] = n
	set := s.nodesByCluster[n.ClusterID]
	if set == nil {
		set = map[string]struct{}{}
		s.nodesByCluster[n.ClusterID] = set
	}
	set[n.HostID] = struct{}{}
}

// DeleteNode removes a node.
func (s *State) DeleteNode(hostID string) {
	if n, ok := s.nodes[hostID]; ok {
		delete(s.nodesByCluster[n.ClusterID], hostID)
		delete(s.nodes, hostID)
	}
}

// --- events

// AppendEvent adds an event to its cluster's history, assigning the next sequence number.
func (s *State) AppendEvent(e Event) Event {
	e.Seq = s.nextEventSeq
	s.nextEventSeq++
	h := append(s.events[e.ClusterID], e)
	if len(h) > MaxEventsPerCluster {
		h = slices.Clone(h[len(h)-MaxEventsPerCluster:])
	}
	s.events[e.ClusterID] = h
	return e
}

// EventsOf returns a cluster's events with Seq > since, oldest first.
func (s *State) EventsOf(clusterID string, since uint64) []Event {
	h := s.events[clusterID]
	i, _ := slices.BinarySearchFunc(h, since+1, func(e Event, seq uint64) int { return cmp.Compare(e.Seq, seq) })
	return slices.Clone(h[i:])
}

// --- helpers

func sortedByCreation[T any](m map[string]*T, key func(*T) (time.Time, string)) []*T {
	out := make([]*T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sortCreation(out, key)
	return out
}

func sortCreation[T any](s []*T, key func(*T) (time.Time, string)) {
	slices.SortFunc(s, func(a, b *T) int {
		at, aid := key(a)
		bt, bid := key(b)
		return cmp.Or(at.Compare(bt), strings.Compare(aid, bid))
	})
}

// stripPrefix turns "10.0.0.5/24" or "10.0.0.5" into "10.0.0.5"; "" if neither.
func stripPrefix(a string) string {
	if p, err := netip.ParsePrefix(a); err == nil {
		return p.Addr().String()
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.String()
	}
	return ""
}
