package state_test

import (
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/state"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// filled returns a state with something in every table, and two clusters' interleaved
// events so that their order across clusters matters.
func filled() *state.State {
	s := state.New()
	s.SetBootstrapped()
	exp := t0.Add(time.Hour)
	s.PutToken(&state.Token{ID: "tok_a", Name: "admin", Hash: "ha", Permissions: []string{"admin"}, Scope: "*", Plan: "enterprise", CreatedAt: t0})
	s.PutToken(&state.Token{ID: "tok_b", Name: "ci", Hash: "hb", Permissions: []string{"read"}, Scope: "cluster:*", Plan: "pro", ExpiresAt: &exp, CreatedAt: t0.Add(time.Second)})
	s.PutInfra(&state.Infra{ID: "infra_a", Name: "a", Kind: "onpremise", VIPPool: "10.0.0.0/28", Network: &state.Network{CIDR: "10.0.0.0/24", DNS: []string{"1.1.1.1"}}, CreatedAt: t0})
	s.PutJoinToken(&state.JoinToken{ID: "jt_a", InfraID: "infra_a", Hash: "hj", ExpiresAt: exp, CreatedAt: t0})
	s.PutHost(host("h1", 4, 8, labels("rack", "r1")))
	s.PutHost(host("h2", 4, 8, inState(state.HostAssigned)))
	s.PutHost(host("h3", 8, 16, inState(state.HostAssigned)))
	for i, id := range []string{"cls_b", "cls_a"} {
		s.PutCluster(&state.Cluster{ID: id, Name: "n" + id, Status: state.StatusProvisioning, InfraID: "infra_a", CreatedAt: t0.Add(time.Duration(i) * time.Second)})
	}
	s.PutNode(&state.Node{HostID: "h2", ClusterID: "cls_a", Role: state.RoleInitControlPlane, State: state.NodeReserved, CreatedAt: t0})
	s.PutNode(&state.Node{HostID: "h3", ClusterID: "cls_b", Role: state.RoleWorker, State: state.NodeJoined, CreatedAt: t0})
	for i := range 6 {
		s.AppendEvent(state.Event{ClusterID: []string{"cls_a", "cls_b"}[i%2], Type: "x", Message: "m", Time: t0})
	}
	return s
}

func TestTablesRoundTrip(t *testing.T) {
	s := filled()
	tables := s.Tables()
	restored, err := state.FromTables(tables)
	if err != nil {
		t.Fatalf("FromTables: %v", err)
	}
	if diff := gocmp.Diff(tables, restored.Tables()); diff != "" {
		t.Fatalf("tables changed by a round trip (-before +after):\n%s", diff)
	}
	// The indexes are rebuilt, not stored: check each one answers as on the original.
	checks := []struct {
		name string
		got  func(*state.State) any
	}{
		{"token by hash", func(s *state.State) any { t, _ := s.TokenByHash("hb"); return t }},
		{"infra by name", func(s *state.State) any { i, _ := s.InfraByName("a"); return i }},
		{"join token by hash", func(s *state.State) any { j, _ := s.JoinTokenByHash("hj"); return j }},
		{"cluster by name", func(s *state.State) any { c, _ := s.ClusterByName("ncls_a"); return c }},
		{"cluster order", func(s *state.State) any { return s.Clusters() }},
		{"nodes of cluster", func(s *state.State) any { return s.NodesOf("cls_b") }},
		{"joined count", func(s *state.State) any { return s.JoinedCount("cls_b") }},
		{"events since", func(s *state.State) any { return s.EventsOf("cls_a", 2) }},
		{"free hosts", func(s *state.State) any { return s.FreeHosts("infra_a", state.Size{}) }},
		{"next event seq", func(s *state.State) any { return s.AppendEvent(state.Event{ClusterID: "cls_a"}).Seq }},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if diff := gocmp.Diff(c.got(s), c.got(restored)); diff != "" {
				t.Errorf("(-original +restored):\n%s", diff)
			}
		})
	}
}

func TestFromTablesRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*state.Tables)
		want   string
	}{
		{"newer layout", func(t *state.Tables) { t.Version = state.TablesVersion + 1 }, "newer"},
		{"node of a missing cluster", func(t *state.Tables) {
			t.Nodes = append(t.Nodes, &state.Node{HostID: "h9", ClusterID: "cls_gone"})
		}, "missing cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tables := filled().Tables()
			tc.change(tables)
			if _, err := state.FromTables(tables); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromTables error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestEventsBounded checks the per-cluster history limit: the oldest go first, sequence
// numbers keep increasing, and other clusters are untouched.
func TestEventsBounded(t *testing.T) {
	s := state.New()
	s.AppendEvent(state.Event{ClusterID: "other"})
	for range state.MaxEventsPerCluster + 10 {
		s.AppendEvent(state.Event{ClusterID: "busy"})
	}
	got := s.EventsOf("busy", 0)
	if len(got) != state.MaxEventsPerCluster {
		t.Fatalf("kept %d events, want %d", len(got), state.MaxEventsPerCluster)
	}
	if first, last := got[0].Seq, got[len(got)-1].Seq; first != 12 || last != state.MaxEventsPerCluster+11 {
		t.Errorf("kept seqs %d..%d, want 12..%d", first, last, state.MaxEventsPerCluster+11)
	}
	if n := len(s.EventsOf("other", 0)); n != 1 {
		t.Errorf("other cluster has %d events, want 1", n)
	}
	if n := len(s.EventsOf("busy", got[len(got)-1].Seq)); n != 0 {
		t.Errorf("events after the last one: %d", n)
	}
}

// TestDeleteCluster checks that a deleted cluster takes its nodes and events with it and
// frees its name for a new cluster.
func TestDeleteCluster(t *testing.T) {
	s := filled()
	s.DeleteCluster("cls_a")
	if _, ok := s.Cluster("cls_a"); ok {
		t.Error("cluster still there")
	}
	if _, ok := s.ClusterByName("ncls_a"); ok {
		t.Error("name still taken")
	}
	if _, ok := s.Node("h2"); ok {
		t.Error("node still there")
	}
	if n := len(s.EventsOf("cls_a", 0)); n != 0 {
		t.Errorf("%d events left", n)
	}
	if got := ids2(s.Clusters()); gocmp.Diff([]string{"cls_b"}, got) != "" {
		t.Errorf("clusters = %v", got)
	}
	if _, err := state.FromTables(s.Tables()); err != nil {
		t.Errorf("tables after delete do not restore: %v", err)
	}
}

func ids2(cs []*state.Cluster) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}
