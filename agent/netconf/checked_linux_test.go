package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/internal/netnstest"
	"github.com/deployme/deployme/internal/poll"
)

const coordAddr = "10.55.0.1:7443"

var errUnreachable = errors.New("coordinator unreachable")

// mgmtNet builds a host whose eth1 is cabled to a namespace running a "coordinator" on
// 10.55.0.1:7443, and whose eth2 is cabled to a namespace where nothing answers. It returns
// the host and a probe: a TCP dial to the coordinator from inside the host.
func mgmtNet(t *testing.T) (*netnstest.NS, func(context.Context) error) {
	t.Helper()
	host, coord, nowhere := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Veth(t, host, "eth1", coord, "uplink")
	netnstest.Veth(t, host, "eth2", nowhere, "uplink")
	coord.MustIP(t, "addr", "add", "10.55.0.1/24", "dev", "uplink")
	ln, err := coord.Listen("tcp", coordAddr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	probe := func(ctx context.Context) error {
		return host.Do(func() error {
			d := net.Dialer{Timeout: 300 * time.Millisecond}
			c, err := d.DialContext(ctx, "tcp", coordAddr)
			if err != nil {
				return fmt.Errorf("%w: %w", errUnreachable, err)
			}
			return c.Close()
		})
	}
	return host, probe
}

// waitReachable polls the probe: ARP and neighbour entries take a moment after a change.
func waitReachable(t *testing.T, probe func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last error
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		last = probe(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("the coordinator is not reachable: %v", last)
	}
}

func TestApplyCheckedRollsBack(t *testing.T) {
	previous := Config{Addresses: []Address{{Link: "eth1", CIDR: "10.55.0.2/24"}}}
	tests := []struct {
		name  string
		kinds []string
		// cfg moves the host's address where the coordinator cannot be reached.
		cfg     Config
		created []string
	}{
		{
			name: "address on a bridge over the wrong cable",
			cfg: Config{
				Bridges:   []Bridge{{Name: "br-mgmt", Interfaces: []string{"eth2"}}},
				Addresses: []Address{{Link: "br-mgmt", CIDR: "10.55.0.2/24"}},
			},
			created: []string{"br-mgmt"},
		},
		{
			name:  "address on a VLAN the other side does not carry",
			kinds: []string{"vlan"},
			cfg: Config{
				VLANs:     []VLAN{{Name: "eth1.200", Link: "eth1", ID: 200}},
				Addresses: []Address{{Link: "eth1.200", CIDR: "10.55.0.2/24"}},
			},
			created: []string{"eth1.200"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, probe := mgmtNet(t)
			requireKinds(t, host, tt.kinds...)
			path := stateFile(t)
			a := newApplier(t, host, path)
			mustApply(t, a, previous)
			waitReachable(t, probe)
			before := dump(t, host, true)

			start := time.Now()
			changes, err := a.ApplyChecked(context.Background(), tt.cfg, probe, time.Second)
			t.Logf("after %s: %q", time.Since(start).Round(time.Millisecond), changes)
			if !errors.Is(err, ErrRolledBack) || !errors.Is(err, errUnreachable) {
				t.Fatalf("ApplyChecked = %v, want ErrRolledBack wrapping the probe's error", err)
			}
			if !slices.ContainsFunc(changes, func(c string) bool { return strings.HasPrefix(c, "rollback: ") }) {
				t.Errorf("no rollback among the changes %q", changes)
			}
			if diff := cmp.Diff(before, dump(t, host, true)); diff != "" {
				t.Errorf("after the rollback (-before +now):\n%s", diff)
			}
			for _, l := range tt.created {
				if _, err := host.Handle().LinkByName(l); err == nil {
					t.Errorf("%s survived the rollback", l)
				}
			}
			if !hasAddress(t, host, "eth1", "10.55.0.2/24") {
				t.Error("eth1 lost 10.55.0.2/24")
			}
			if diff := cmp.Diff(&previous, owned(t, path).Applied); diff != "" {
				t.Errorf("applied config in the state (-want +got):\n%s", diff)
			}
			waitReachable(t, probe)
		})
	}
}

func TestApplyCheckedKeepsAWorkingChange(t *testing.T) {
	host, probe := mgmtNet(t)
	a := newApplier(t, host, stateFile(t))
	mustApply(t, a, Config{Addresses: []Address{{Link: "eth1", CIDR: "10.55.0.2/24"}}})
	waitReachable(t, probe)
	next := Config{Addresses: []Address{{Link: "eth1", CIDR: "10.55.0.2/24"}, {Link: "eth1", CIDR: "10.55.0.3/24"}}}
	changes, err := a.ApplyChecked(context.Background(), next, probe, 5*time.Second)
	if err != nil {
		t.Fatalf("ApplyChecked: %v", err)
	}
	if diff := cmp.Diff(Changes{"add address 10.55.0.3/24 on eth1"}, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if !hasAddress(t, host, "eth1", "10.55.0.3/24") {
		t.Error("10.55.0.3/24 is not on eth1")
	}
	// Nothing to change, nothing to check: a probe failing for other reasons rolls nothing back.
	failing := func(context.Context) error { return errUnreachable }
	if changes, err := a.ApplyChecked(context.Background(), next, failing, time.Second); err != nil || len(changes) != 0 {
		t.Errorf("ApplyChecked of the applied config = %q, %v; want no change and no error", changes, err)
	}
}

// TestApplyCheckedRollsBackAFailedApply: an apply that fails half way (here on a default
// route that conflicts with the host's) is undone too, without waiting for the probe.
func TestApplyCheckedRollsBackAFailedApply(t *testing.T) {
	host, probe := mgmtNet(t)
	path := stateFile(t)
	a := newApplier(t, host, path)
	previous := Config{Addresses: []Address{{Link: "eth1", CIDR: "10.55.0.2/24"}}}
	mustApply(t, a, previous)
	host.MustIP(t, "route", "add", "default", "via", "10.55.0.1")
	before := dump(t, host, true)
	next := Config{
		Addresses: []Address{{Link: "eth1", CIDR: "10.55.0.2/24"}, {Link: "eth1", CIDR: "10.55.0.3/24"}},
		Routes:    []Route{{Dst: "default", Gateway: "10.55.0.254"}},
	}
	changes, err := a.ApplyChecked(context.Background(), next, probe, time.Minute)
	if !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrConflict) {
		t.Fatalf("ApplyChecked = %v, want ErrRolledBack wrapping ErrConflict", err)
	}
	want := Changes{"add address 10.55.0.3/24 on eth1", "rollback: delete address 10.55.0.3/24 on eth1"}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, dump(t, host, true)); diff != "" {
		t.Errorf("(-before +now):\n%s", diff)
	}
	if diff := cmp.Diff(&previous, owned(t, path).Applied); diff != "" {
		t.Errorf("applied config in the state (-want +got):\n%s", diff)
	}
}

func TestApplyCheckedRefusesInvalid(t *testing.T) {
	host, probe := mgmtNet(t)
	a := newApplier(t, host, stateFile(t))
	bad := Config{Routes: []Route{{Dst: "default"}}}
	if _, err := a.ApplyChecked(context.Background(), bad, probe, time.Second); !errors.Is(err, ErrInvalid) || errors.Is(err, ErrRolledBack) {
		t.Errorf("ApplyChecked = %v, want ErrInvalid and no rollback", err)
	}
	if _, err := a.ApplyChecked(context.Background(), Config{}, nil, time.Second); !errors.Is(err, ErrInvalid) {
		t.Errorf("ApplyChecked without probe = %v, want ErrInvalid", err)
	}
}
