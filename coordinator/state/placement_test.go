package state_test

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/state"
)

const gib = int64(1) << 30

var (
	small  = state.Size{CPUs: 2, MemoryBytes: 4 * gib}
	medium = state.Size{CPUs: 4, MemoryBytes: 8 * gib}
	large  = state.Size{CPUs: 4, MemoryBytes: 16 * gib}
)

// hostOpt changes a test host.
type hostOpt func(*state.Host)

func labels(kv ...string) hostOpt {
	return func(h *state.Host) {
		h.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Labels[kv[i]] = kv[i+1]
		}
	}
}

func inState(s string) hostOpt  { return func(h *state.Host) { h.State = s } }
func inInfra(id string) hostOpt { return func(h *state.Host) { h.InfraID = id } }

// host is an available host of infra "infra_a" with cpus CPUs and memGiB GiB.
func host(id string, cpus int, memGiB int64, opts ...hostOpt) *state.Host {
	h := &state.Host{ID: id, InfraID: "infra_a", Hostname: id, State: state.HostAvailable, CPUs: cpus, MemoryBytes: memGiB * gib}
	for _, o := range opts {
		o(h)
	}
	return h
}

func stateWith(hosts ...*state.Host) *state.State {
	s := state.New()
	for _, h := range hosts {
		s.PutHost(h)
	}
	return s
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name     string
		hosts    []*state.Host
		size     state.Size
		cps      int
		workers  int
		want     state.Placement
		wantFull *state.CapacityError // set when the placement must be refused
	}{
		{
			name: "best fit: smallest adequate host first, ties by memory then ID",
			hosts: []*state.Host{
				host("a", 8, 32), host("b", 2, 4), host("c", 4, 8), host("d", 2, 8), host("e", 1, 64),
			},
			size: small, workers: 3,
			want: state.Placement{Workers: []string{"b", "d", "c"}},
		},
		{
			name:  "memory is a minimum too",
			hosts: []*state.Host{host("a", 4, 8), host("b", 16, 16), host("c", 4, 15), host("d", 8, 16)},
			size:  large, workers: 2,
			want: state.Placement{Workers: []string{"d", "b"}},
		},
		{
			name:  "without labels control planes take the best fits, then workers",
			hosts: []*state.Host{host("a", 8, 32), host("b", 2, 4), host("c", 4, 8)},
			size:  small, cps: 1, workers: 2,
			want: state.Placement{ControlPlanes: []string{"b"}, Workers: []string{"c", "a"}},
		},
		{
			name:  "exactly enough hosts",
			hosts: []*state.Host{host("a", 2, 4), host("b", 2, 4)},
			size:  small, cps: 1, workers: 1,
			want: state.Placement{ControlPlanes: []string{"a"}, Workers: []string{"b"}},
		},
		{
			name:  "too few hosts: counts of needed and free matching hosts",
			hosts: []*state.Host{host("a", 8, 32), host("b", 2, 4), host("tiny", 1, 1)},
			size:  medium, cps: 3, workers: 2,
			wantFull: &state.CapacityError{Needed: 5, Available: 1, InfraID: "infra_a", Size: "test"},
		},
		{
			name:  "too few workers only",
			hosts: []*state.Host{host("a", 2, 4)},
			size:  small, workers: 2,
			wantFull: &state.CapacityError{Needed: 2, Available: 1, InfraID: "infra_a", Size: "test"},
		},
		{
			name: "empty fleet",
			size: small, cps: 1, workers: 1,
			wantFull: &state.CapacityError{Needed: 2, Available: 0, InfraID: "infra_a", Size: "test"},
		},
		{
			name: "only available hosts of the infra count",
			hosts: []*state.Host{
				host("discovered", 8, 32, inState(state.HostDiscovered)),
				host("assigned", 8, 32, inState(state.HostAssigned)),
				host("offline", 8, 32, inState(state.HostOffline)),
				host("decommissioned", 8, 32, inState(state.HostDecommissioned)),
				host("elsewhere", 8, 32, inInfra("infra_b")),
				host("ok", 8, 32),
			},
			size: small, workers: 2,
			wantFull: &state.CapacityError{Needed: 2, Available: 1, InfraID: "infra_a", Size: "test"},
		},
		{
			name: "the one available host of the infra is used",
			hosts: []*state.Host{
				host("discovered", 2, 4, inState(state.HostDiscovered)),
				host("elsewhere", 2, 4, inInfra("infra_b")),
				host("ok", 8, 32),
			},
			size: small, cps: 1,
			want: state.Placement{ControlPlanes: []string{"ok"}},
		},
		{
			name: "control planes spread across racks",
			hosts: []*state.Host{
				host("a", 4, 8, labels("rack", "r1")), host("b", 4, 8, labels("rack", "r1")),
				host("c", 4, 8, labels("rack", "r2")), host("d", 4, 8, labels("rack", "r3")),
			},
			size: small, cps: 3, workers: 1,
			want: state.Placement{ControlPlanes: []string{"a", "c", "d"}, Workers: []string{"b"}},
		},
		{
			name: "spread beats best fit for control planes, not for workers",
			hosts: []*state.Host{
				host("a", 2, 4, labels("rack", "r1")), host("b", 2, 4, labels("rack", "r1")),
				host("big", 16, 64, labels("rack", "r2")),
			},
			size: small, cps: 2, workers: 1,
			want: state.Placement{ControlPlanes: []string{"a", "big"}, Workers: []string{"b"}},
		},
		{
			name: "zones spread when racks are all new",
			hosts: []*state.Host{
				host("a", 4, 8, labels("rack", "r1", "zone", "z1")),
				host("b", 4, 8, labels("rack", "r2", "zone", "z1")),
				host("c", 4, 8, labels("rack", "r3", "zone", "z2")),
			},
			size: small, cps: 2,
			want: state.Placement{ControlPlanes: []string{"a", "c"}},
		},
		{
			name: "a new rack is preferred over a new zone",
			hosts: []*state.Host{
				host("a", 4, 8, labels("rack", "r1", "zone", "z1")),
				host("b", 4, 8, labels("rack", "r1", "zone", "z2")),
				host("c", 4, 8, labels("rack", "r2", "zone", "z1")),
			},
			size: small, cps: 2,
			want: state.Placement{ControlPlanes: []string{"a", "c"}},
		},
		{
			name: "zone labels alone spread control planes",
			hosts: []*state.Host{
				host("a", 4, 8, labels("zone", "z1")), host("b", 4, 8, labels("zone", "z1")),
				host("c", 4, 8, labels("zone", "z2")), host("d", 4, 8, labels("zone", "z3")),
			},
			size: small, cps: 3,
			want: state.Placement{ControlPlanes: []string{"a", "c", "d"}},
		},
		{
			name: "once every rack is used, best fit decides",
			hosts: []*state.Host{
				host("a", 4, 8, labels("rack", "r1")), host("b", 4, 8, labels("rack", "r2")),
				host("c", 8, 8, labels("rack", "r1")), host("d", 4, 16, labels("rack", "r2")),
			},
			size: small, cps: 3,
			want: state.Placement{ControlPlanes: []string{"a", "b", "d"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := stateWith(tc.hosts...)
			got, err := s.Place("infra_a", "test", tc.size, tc.cps, tc.workers)
			if tc.wantFull != nil {
				var ce *state.CapacityError
				if !errors.As(err, &ce) {
					t.Fatalf("Place = %+v, %v; want a *CapacityError", got, err)
				}
				if diff := gocmp.Diff(tc.wantFull, ce); diff != "" {
					t.Errorf("capacity error (-want +got):\n%s", diff)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("%d needed", tc.wantFull.Needed)) {
					t.Errorf("message %q does not say how many hosts are needed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Place: %v", err)
			}
			if diff := gocmp.Diff(tc.want, got); diff != "" {
				t.Errorf("placement (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlaceDeterministic builds the same fleet in many insertion orders: Place runs inside
// the FSM, so any dependence on map order would make replicas reserve different hosts.
func TestPlaceDeterministic(t *testing.T) {
	var fleet []*state.Host
	for i := range 60 {
		fleet = append(fleet, host(fmt.Sprintf("h%02d", i), 2+2*(i%4), int64(4+4*(i%5)),
			labels("rack", fmt.Sprintf("r%d", i%5), "zone", fmt.Sprintf("z%d", i%3))))
	}
	place := func(s *state.State) [2]state.Placement {
		a, err := s.Place("infra_a", "small", small, 3, 10)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Place("infra_a", "medium", medium, 0, 7)
		if err != nil {
			t.Fatal(err)
		}
		return [2]state.Placement{a, b}
	}
	want := place(stateWith(fleet...))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 100 {
		hosts := slices.Clone(fleet)
		rng.Shuffle(len(hosts), func(a, b int) { hosts[a], hosts[b] = hosts[b], hosts[a] })
		if diff := gocmp.Diff(want, place(stateWith(hosts...))); diff != "" {
			t.Fatalf("insertion order %d changed the placement (-first +now):\n%s", i, diff)
		}
	}
}

// TestFreeHostsIndex checks the free-host index against a brute-force scan after many host
// updates (state changes, inventory changes, moves between infras), and after a rebuild
// from tables: the index is derived state, and a stale entry would place a busy host.
func TestFreeHostsIndex(t *testing.T) {
	bruteForce := func(s *state.State, infra string, size state.Size) []string {
		var out []*state.Host
		for _, h := range s.Hosts() {
			if h.InfraID == infra && h.State == state.HostAvailable && size.Fits(h) {
				out = append(out, h)
			}
		}
		slices.SortFunc(out, func(a, b *state.Host) int {
			return cmp.Or(cmp.Compare(a.CPUs, b.CPUs), cmp.Compare(a.MemoryBytes, b.MemoryBytes), strings.Compare(a.ID, b.ID))
		})
		return ids(out)
	}
	states := []string{state.HostAvailable, state.HostAvailable, state.HostAssigned, state.HostDiscovered, state.HostOffline, state.HostDecommissioned}
	infras := []string{"infra_a", "infra_b"}
	sizes := []state.Size{{}, small, medium, large}
	rng := rand.New(rand.NewPCG(3, 4))
	s := state.New()
	check := func(t *testing.T, s *state.State, step int) {
		t.Helper()
		for _, infra := range infras {
			for _, size := range sizes {
				want := bruteForce(s, infra, size)
				if diff := gocmp.Diff(want, ids(s.FreeHosts(infra, size))); diff != "" {
					t.Fatalf("step %d: FreeHosts(%s, %+v) (-scan +index):\n%s", step, infra, size, diff)
				}
				if got := s.CountFree(infra, size); got != len(want) {
					t.Fatalf("step %d: CountFree(%s, %+v) = %d, want %d", step, infra, size, got, len(want))
				}
			}
		}
	}
	for step := range 2000 {
		id := fmt.Sprintf("h%02d", rng.IntN(40))
		h := host(id, 1+rng.IntN(8), int64(1+rng.IntN(32)), inState(states[rng.IntN(len(states))]), inInfra(infras[rng.IntN(len(infras))]))
		if old, ok := s.Host(id); ok && rng.IntN(2) == 0 {
			// Often only the state changes, as when a host is reserved or released.
			cp := *old
			cp.State = h.State
			h = &cp
		}
		s.PutHost(h)
		if step%50 == 0 {
			check(t, s, step)
		}
	}
	check(t, s, -1)
	restored, err := state.FromTables(s.Tables())
	if err != nil {
		t.Fatal(err)
	}
	check(t, restored, -2)
}

func ids(hosts []*state.Host) []string {
	out := []string{}
	for _, h := range hosts {
		out = append(out, h.ID)
	}
	return out
}
