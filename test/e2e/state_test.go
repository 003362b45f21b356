package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
)

// apiState is everything the list endpoints return, the way a user sees the state.
// Coordinator members are left out: they describe the running process (applied index,
// last contact), not stored state.
type apiState struct {
	Clusters   []v1.Cluster
	Nodes      map[string][]v1.Node  // by cluster ID
	Events     map[string][]v1.Event // by cluster ID
	Tokens     []v1.Token
	Infras     []v1.Infra
	JoinTokens map[string][]v1.JoinToken // by infra ID
	Hosts      []v1.Host
}

// dumpState lists every list endpoint, every page.
func dumpState(t *testing.T, cl *client.Client) apiState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("list %s: %v", what, err)
		}
	}
	s := apiState{Nodes: map[string][]v1.Node{}, Events: map[string][]v1.Event{}, JoinTokens: map[string][]v1.JoinToken{}}
	for page := 1; ; page++ {
		l, err := cl.ListClusters(ctx, client.ListOptions{Page: page, PerPage: 100})
		must(err, "clusters")
		s.Clusters = append(s.Clusters, l.Items...)
		if len(l.Items) == 0 || len(s.Clusters) >= l.Total {
			break
		}
	}
	for _, c := range s.Clusters {
		nodes, err := cl.ClusterNodes(ctx, c.ID)
		must(err, "nodes of "+c.ID)
		s.Nodes[c.ID] = nodes.Items
		events, err := cl.ClusterEvents(ctx, c.ID, 0)
		must(err, "events of "+c.ID)
		s.Events[c.ID] = events.Items
	}
	tokens, err := cl.ListTokens(ctx)
	must(err, "tokens")
	s.Tokens = tokens.Items
	infras, err := cl.ListInfras(ctx)
	must(err, "infras")
	s.Infras = infras.Items
	for _, i := range s.Infras {
		jts, err := cl.ListJoinTokens(ctx, i.ID)
		must(err, "join tokens of "+i.ID)
		s.JoinTokens[i.ID] = jts.Items
	}
	for page := 1; ; page++ {
		l, err := cl.ListHosts(ctx, client.ListOptions{Page: page, PerPage: 100})
		must(err, "hosts")
		s.Hosts = append(s.Hosts, l.Items...)
		if len(l.Items) == 0 || len(s.Hosts) >= l.Total {
			break
		}
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// populate makes one of each object the REST API can create, including some that are
// deleted again (a restart must not bring them back).
func populate(t *testing.T, cl *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := cl.CreateToken(ctx, v1.CreateTokenRequest{Name: ptr("ci"), Permissions: &[]string{"read", "write"}, Expires: ptr("90d"), Plan: ptr("pro")})
	must(err)
	_, err = cl.CreateToken(ctx, v1.CreateTokenRequest{Name: ptr("viewer"), Permissions: &[]string{"read"}, Scope: ptr("cluster:*")})
	must(err)
	gone, err := cl.CreateToken(ctx, v1.CreateTokenRequest{Name: ptr("gone"), Permissions: &[]string{"read"}})
	must(err)
	must(cl.RevokeToken(ctx, gone.ID))

	paris, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("paris"), Kind: ptr("onpremise"), VIPPool: ptr("10.20.0.240/28"),
		Network: &v1.Network{CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", DNS: []string{"10.20.0.2"}, MTU: 9000}})
	must(err)
	rack, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("rack-12"), Kind: ptr("baremetal")})
	must(err)
	goneInfra, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("gone"), Kind: ptr("onpremise")})
	must(err)
	must(cl.DeleteInfra(ctx, goneInfra.ID))

	_, err = cl.CreateJoinToken(ctx, paris.ID, v1.CreateJoinTokenRequest{Expires: ptr("24h")})
	must(err)
	_, err = cl.CreateJoinToken(ctx, paris.ID, v1.CreateJoinTokenRequest{Expires: ptr("7d"), MaxUses: ptr(5)})
	must(err)
	goneJT, err := cl.CreateJoinToken(ctx, rack.ID, v1.CreateJoinTokenRequest{})
	must(err)
	must(cl.RevokeJoinToken(ctx, rack.ID, goneJT.ID))

	// Hosts reach the state only through the agent service, which the binary does not
	// serve yet, so no cluster can be placed: the create is refused. Clusters and hosts
	// are checked across restarts in durability_inprocess_test.go.
	_, err = cl.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("prod"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
	if client.Code(err) != v1.CodeInsufficientCapacity {
		t.Fatalf("create cluster without hosts: %v, want insufficient_capacity", err)
	}
}

// ledger records the writes a client saw acknowledged (a 2xx answer).
type ledger struct {
	mu         sync.Mutex
	tokens     map[string]bool
	infras     map[string]bool
	joinTokens map[string]string // join token ID → infra ID
	acked      atomic.Int64
}

func newLedger() *ledger {
	return &ledger{tokens: map[string]bool{}, infras: map[string]bool{}, joinTokens: map[string]string{}}
}

// writeLoop creates a token, an infra and a join token for it, over and over, until stop
// is set (it returns nil) or a request fails (it returns that error). Only answered
// writes are recorded; a write whose request failed may or may not have been applied.
func writeLoop(cl *client.Client, worker int, l *ledger, stop *atomic.Bool) error {
	ctx := context.Background()
	var infra string
	for i := 0; !stop.Load(); i++ {
		name := fmt.Sprintf("w%d-%d", worker, i)
		switch {
		case i%3 == 0:
			tok, err := cl.CreateToken(ctx, v1.CreateTokenRequest{Name: &name, Permissions: &[]string{"read"}})
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.tokens[tok.ID] = true
			l.mu.Unlock()
		case i%3 == 1:
			inf, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: &name, Kind: ptr("onpremise")})
			if err != nil {
				return err
			}
			infra = inf.ID
			l.mu.Lock()
			l.infras[inf.ID] = true
			l.mu.Unlock()
		default:
			jt, err := cl.CreateJoinToken(ctx, infra, v1.CreateJoinTokenRequest{Expires: ptr("1h")})
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.joinTokens[jt.ID] = infra
			l.mu.Unlock()
		}
		l.acked.Add(1)
	}
	return nil
}

// missing lists the acknowledged writes absent from s.
func (l *ledger) missing(s apiState) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	has := map[string]bool{}
	for _, x := range s.Tokens {
		has[x.ID] = true
	}
	for _, x := range s.Infras {
		has[x.ID] = true
	}
	for infra, jts := range s.JoinTokens {
		for _, x := range jts {
			has[infra+"/"+x.ID] = true
		}
	}
	var out []string
	for id := range l.tokens {
		if !has[id] {
			out = append(out, "token "+id)
		}
	}
	for id := range l.infras {
		if !has[id] {
			out = append(out, "infra "+id)
		}
	}
	for id, infra := range l.joinTokens {
		if !has[infra+"/"+id] {
			out = append(out, "join token "+id+" of "+infra)
		}
	}
	return out
}

// objects counts the objects in s that the write loops and populate create.
func (s apiState) objects() int {
	n := len(s.Tokens) + len(s.Infras)
	for _, jts := range s.JoinTokens {
		n += len(jts)
	}
	return n
}
