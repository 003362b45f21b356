package hostnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/netconf"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// fakeApplier records configs and runs the probe once, as netconf's ApplyChecked would
// before deciding to keep or roll back.
type fakeApplier struct {
	applied []netconf.Config
	probed  []error
}

func (f *fakeApplier) ApplyChecked(ctx context.Context, c netconf.Config, probe func(context.Context) error, _ time.Duration) (netconf.Changes, error) {
	f.applied = append(f.applied, c)
	err := probe(ctx)
	f.probed = append(f.probed, err)
	if err != nil {
		return netconf.Changes{"create bridge br0", "rollback: delete bridge br0"}, fmt.Errorf("%w: %w", netconf.ErrRolledBack, err)
	}
	return netconf.Changes{"create bridge br0"}, nil
}

func apply(t *testing.T, h *Handler, c *agentv1.NetworkConfig) *agentv1.NetworkResult {
	t.Helper()
	got := make(chan *agentv1.NetworkResult, 1)
	h.ApplyNetwork(context.Background(), c, func(r *agentv1.NetworkResult) { got <- r })
	select {
	case r := <-got:
		return r
	case <-time.After(10 * time.Second):
		return nil
	}
}

func TestApplyOnceThenSkip(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fa := &fakeApplier{}
	h, err := New(Config{Applier: fa, Coordinators: []string{ln.Addr().String()}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(netconf.Config{Bridges: []netconf.Bridge{{Name: "br0"}}})
	r := apply(t, h, &agentv1.NetworkConfig{Revision: "r1", Json: b})
	if r == nil || r.GetState() != "applied" || len(r.GetChanges()) != 1 || fa.probed[0] != nil {
		t.Fatalf("first apply: %+v (probe %v)", r, fa.probed)
	}
	// The same revision again (a reconnect) is not applied twice.
	if r := apply(t, h, &agentv1.NetworkConfig{Revision: "r1", Json: b}); r == nil || r.GetState() != "applied" || len(r.GetChanges()) != 0 {
		t.Fatalf("a repeated revision: %+v, want applied without changes", r)
	}
	if len(fa.applied) != 1 {
		t.Errorf("applied %d times, want 1", len(fa.applied))
	}
}

func TestUnreachableCoordinatorRollsBack(t *testing.T) {
	// A listener closed at once: its port refuses connections (loopback only).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fa := &fakeApplier{}
	h, err := New(Config{Applier: fa, Coordinators: []string{addr}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(netconf.Config{Bridges: []netconf.Bridge{{Name: "br0"}}})
	r := apply(t, h, &agentv1.NetworkConfig{Revision: "r2", Json: b})
	if r == nil || r.GetState() != "rolled_back" || r.GetError() == "" {
		t.Fatalf("result = %+v, want rolled_back with the reason", r)
	}
	// Not recorded as applied: the next push of r2 is tried again.
	if r := apply(t, h, &agentv1.NetworkConfig{Revision: "r2", Json: b}); r == nil || r.GetState() != "rolled_back" || len(fa.applied) != 2 {
		t.Fatalf("a rolled-back revision was recorded as applied: %+v", r)
	}
}

func TestBadConfigIsRefusedUntouched(t *testing.T) {
	fa := &fakeApplier{}
	h, err := New(Config{Applier: fa, Coordinators: []string{"127.0.0.1:1"}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"bonds":[{"name":"bond0","mode":"balance-rr","interfaces":["eth0"]}]}`, `{"bridges":"x"}`, `{"unknown":1}`, `not json`} {
		r := apply(t, h, &agentv1.NetworkConfig{Revision: "bad", Json: []byte(body)})
		if r == nil || r.GetState() != "failed" || r.GetError() == "" {
			t.Errorf("%s: result %+v, want failed with a reason", body, r)
		}
	}
	if len(fa.applied) != 0 {
		t.Errorf("an invalid config reached netconf: %+v", fa.applied)
	}
}
