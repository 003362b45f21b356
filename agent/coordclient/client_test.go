package coordclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/deployme/deployme/agent/agenttest"
	"github.com/deployme/deployme/agent/coordclient"
	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/internal/poll"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// host is a fake inventory source whose answer a test can change.
type host struct {
	mu    sync.Mutex
	inv   inventory.Inventory
	calls int
}

func (h *host) collect(context.Context) (*inventory.Inventory, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	inv := h.inv
	return &inv, nil
}

func (h *host) setHostname(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inv.Hostname = name
}

func (h *host) callCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// config is a fast configuration against the given coordinators, with a fresh state dir.
func config(t *testing.T, h *host, addrs ...string) coordclient.Config {
	t.Helper()
	cfg := coordclient.DefaultConfig()
	cfg.Coordinators = addrs
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.JoinToken = "join-secret"
	cfg.Inventory = h.collect
	cfg.Labels = map[string]string{"rack": "r1"}
	cfg.AgentVersion = "test-version"
	cfg.BackoffMin = 5 * time.Millisecond
	cfg.BackoffMax = 50 * time.Millisecond
	cfg.InventoryInterval = 20 * time.Millisecond
	cfg.WelcomeTimeout = 5 * time.Second
	cfg.DialTimeout = 5 * time.Second
	return cfg
}

func newHost() *host {
	return &host{inv: inventory.Inventory{Hostname: "node-a", CPUs: 4, MemoryBytes: 8 << 30}}
}

// start runs a client until the test ends; the returned channel yields Run's result.
func start(t *testing.T, cfg coordclient.Config) (stop func() error) {
	t.Helper()
	c, err := coordclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			result = <-done
		})
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

// runToEnd runs a client that is expected to stop on its own.
func runToEnd(t *testing.T, cfg coordclient.Config) error {
	t.Helper()
	c, err := coordclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if ctx.Err() != nil {
		t.Fatal("Run did not return by itself")
	}
	return err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := poll.Until(ctx, 5*time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// hellos returns the stream numbers on which f received a Hello.
func hellos(f *agenttest.Coordinator) []int {
	var out []int
	for _, m := range f.Messages() {
		if m.Msg.GetHello() != nil {
			out = append(out, m.Stream)
		}
	}
	return out
}

func inventories(f *agenttest.Coordinator) []*agentv1.Inventory {
	var out []*agentv1.Inventory
	for _, m := range f.Messages() {
		if inv := m.Msg.GetInventory(); inv != nil {
			out = append(out, inv)
		}
	}
	return out
}

func heartbeats(f *agenttest.Coordinator) []uint64 {
	var out []uint64
	for _, m := range f.Messages() {
		if hb := m.Msg.GetHeartbeat(); hb != nil {
			out = append(out, hb.GetSeq())
		}
	}
	return out
}

func TestFirstRunRegistersAndWritesState(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{Coordinators: nil})
	h := newHost()
	cfg := config(t, h, f.Addr)
	cfg.CAHash = f.CA.Hash()
	stop := start(t, cfg)
	waitFor(t, "hello", func() bool { return len(hellos(f)) > 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}

	regs := f.Registrations()
	if len(regs) != 1 {
		t.Fatalf("%d registrations, want 1", len(regs))
	}
	if got := regs[0].GetJoinToken(); got != "join-secret" {
		t.Errorf("join token %q", got)
	}
	inv := regs[0].GetInventory()
	if diff := cmp.Diff(map[string]string{"rack": "r1"}, inv.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if inv.GetHostname() != "node-a" || inv.GetAgentVersion() != "test-version" {
		t.Errorf("inventory %v", inv)
	}
	if hello := f.Messages()[0]; hello.HostID != "host-1" || hello.Msg.GetHello().GetAgentVersion() != "test-version" {
		t.Errorf("first message %v from %q, want a hello from host-1", hello.Msg, hello.HostID)
	}

	modes := map[string]fs.FileMode{}
	for _, name := range []string{".", "identity.json", "agent.key", "agent.crt", "ca.crt"} {
		st, err := os.Stat(filepath.Join(cfg.StateDir, name))
		if err != nil {
			t.Fatal(err)
		}
		modes[name] = st.Mode().Perm()
	}
	want := map[string]fs.FileMode{".": 0o700, "identity.json": 0o600, "agent.key": 0o600, "agent.crt": 0o600, "ca.crt": 0o644}
	if diff := cmp.Diff(want, modes); diff != "" {
		t.Errorf("modes (-want +got):\n%s", diff)
	}
	var id map[string]any
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	wantID := map[string]any{"host_id": "host-1", "infra_id": "infra-1", "coordinators": []any{f.Addr}}
	if diff := cmp.Diff(wantID, id); diff != "" {
		t.Errorf("identity.json (-want +got):\n%s", diff)
	}
	caPEM, err := os.ReadFile(filepath.Join(cfg.StateDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(caPEM); block == nil || !bytes.Equal(block.Bytes, f.CA.Cert.Raw) {
		t.Error("ca.crt is not the coordinator's CA")
	}
	entries, err := os.ReadDir(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Errorf("state dir holds %d entries, want 4 (temporary files left?)", len(entries))
	}
}

func TestSecondRunReusesIdentity(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{})
	h := newHost()
	cfg := config(t, h, f.Addr)
	stop := start(t, cfg) // no CA hash: trust on first use
	waitFor(t, "first hello", func() bool { return len(hellos(f)) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	cfg.JoinToken = ""
	start(t, cfg)
	waitFor(t, "second hello", func() bool { return len(hellos(f)) == 2 })
	if n := len(f.Registrations()); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
	for _, m := range f.Messages() {
		if m.HostID != "host-1" {
			t.Errorf("message on stream %d from %q, want host-1", m.Stream, m.HostID)
		}
	}
}

func TestNoIdentityNoToken(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{})
	cfg := config(t, newHost(), f.Addr)
	cfg.JoinToken = ""
	if err := runToEnd(t, cfg); !errors.Is(err, coordclient.ErrNoJoinToken) {
		t.Fatalf("Run = %v, want ErrNoJoinToken", err)
	}
	if n := len(f.Registrations()); n != 0 {
		t.Errorf("%d registrations, want 0", n)
	}
}

func TestWrongCAHashIsRefusedBeforeRegister(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{})
	other := agenttest.NewCA(t)
	cfg := config(t, newHost(), f.Addr)
	cfg.CAHash = other.Hash()
	if err := runToEnd(t, cfg); !errors.Is(err, coordclient.ErrCAMismatch) {
		t.Fatalf("Run = %v, want ErrCAMismatch", err)
	}
	if n := len(f.Registrations()); n != 0 {
		t.Errorf("%d registrations reached the coordinator, want 0", n)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "identity.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("identity.json: %v, want none", err)
	}
}

func TestRefusedRegistration(t *testing.T) {
	for _, code := range []codes.Code{codes.Unauthenticated, codes.FailedPrecondition, codes.InvalidArgument} {
		t.Run(code.String(), func(t *testing.T) {
			f := agenttest.Start(t, agenttest.Options{})
			f.RefuseRegistrations(status.Error(code, "no such token"))
			err := runToEnd(t, config(t, newHost(), f.Addr))
			if !errors.Is(err, coordclient.ErrRegistrationRefused) || !hasCode(err, code) {
				t.Fatalf("Run = %v, want ErrRegistrationRefused with %v", err, code)
			}
			if n := len(f.Registrations()); n != 1 {
				t.Errorf("%d registrations, want exactly 1 (no retry)", n)
			}
		})
	}
}

// hasCode tells whether err wraps a gRPC status with code.
func hasCode(err error, code codes.Code) bool {
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se) && se.GRPCStatus().Code() == code
}

func TestUnavailableRegistrationIsRetried(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{})
	f.RefuseRegistrations(status.Error(codes.Unavailable, "no leader"))
	start(t, config(t, newHost(), f.Addr))
	waitFor(t, "a retried registration", func() bool { return len(f.Registrations()) >= 3 })
	f.RefuseRegistrations(nil)
	waitFor(t, "hello", func() bool { return len(hellos(f)) > 0 })
}

func TestReconnectAfterStreamEnds(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{})
	start(t, config(t, newHost(), f.Addr))
	waitFor(t, "hello", func() bool { return len(hellos(f)) == 1 })
	f.CloseStreams()
	waitFor(t, "hello on a new stream", func() bool { return len(hellos(f)) == 2 })
	if diff := cmp.Diff([]int{1, 2}, hellos(f)); diff != "" {
		t.Errorf("hello streams (-want +got):\n%s", diff)
	}
	// The new stream starts with the whole inventory again.
	waitFor(t, "inventory on the new stream", func() bool {
		for _, m := range f.Messages() {
			if m.Stream == 2 && m.Msg.GetInventory() != nil {
				return true
			}
		}
		return false
	})
}

func TestFirstCoordinatorDown(t *testing.T) {
	ca := agenttest.NewCA(t)
	down := agenttest.Start(t, agenttest.Options{CA: ca})
	down.Stop()
	up := agenttest.Start(t, agenttest.Options{CA: ca})
	start(t, config(t, newHost(), down.Addr, up.Addr))
	waitFor(t, "hello at the second coordinator", func() bool { return len(hellos(up)) > 0 })
}

func TestFailoverAfterRegistration(t *testing.T) {
	ca := agenttest.NewCA(t)
	a := agenttest.Start(t, agenttest.Options{CA: ca})
	b := agenttest.Start(t, agenttest.Options{CA: ca})
	start(t, config(t, newHost(), a.Addr, b.Addr))
	waitFor(t, "hello at the first coordinator", func() bool { return len(hellos(a)) > 0 })
	a.Stop()
	waitFor(t, "hello at the second coordinator", func() bool { return len(hellos(b)) > 0 })
	if n := len(b.Registrations()); n != 0 {
		t.Errorf("the agent registered again (%d times)", n)
	}
}

func TestRedirect(t *testing.T) {
	ca := agenttest.NewCA(t)
	a := agenttest.Start(t, agenttest.Options{CA: ca})
	b := agenttest.Start(t, agenttest.Options{CA: ca})
	start(t, config(t, newHost(), a.Addr)) // b is known only from the redirect
	waitFor(t, "hello at the first coordinator", func() bool { return len(hellos(a)) > 0 })
	a.Redirect(b.Addr)
	waitFor(t, "hello at the redirect target", func() bool { return len(hellos(b)) > 0 })
}

func TestHeartbeatsIncrease(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{HeartbeatInterval: 10 * time.Millisecond})
	start(t, config(t, newHost(), f.Addr))
	waitFor(t, "heartbeats", func() bool { return len(heartbeats(f)) >= 3 })
	f.CloseStreams()
	waitFor(t, "heartbeats after a reconnect", func() bool {
		for _, m := range f.Messages() {
			if m.Stream == 2 && m.Msg.GetHeartbeat() != nil {
				return true
			}
		}
		return false
	})
	seqs := heartbeats(f)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("heartbeat seqs %v do not increase", seqs)
		}
	}
	ids := map[string]bool{}
	for _, m := range f.Messages() {
		if ids[m.Msg.GetId()] || m.Msg.GetId() == "" {
			t.Fatalf("message id %q empty or repeated", m.Msg.GetId())
		}
		ids[m.Msg.GetId()] = true
	}
}

func TestInventoryResentOnlyWhenChanged(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{HeartbeatInterval: time.Hour})
	h := newHost()
	start(t, config(t, h, f.Addr))
	waitFor(t, "first inventory", func() bool { return len(inventories(f)) == 1 })
	calls := h.callCount()
	waitFor(t, "unchanged collections", func() bool { return h.callCount() >= calls+3 })
	if n := len(inventories(f)); n != 1 {
		t.Fatalf("%d inventories sent for an unchanged host, want 1", n)
	}

	h.setHostname("node-b")
	waitFor(t, "changed inventory", func() bool { return len(inventories(f)) == 2 })
	if got := inventories(f)[1].GetHostname(); got != "node-b" {
		t.Errorf("re-sent hostname %q, want node-b", got)
	}
	calls = h.callCount()
	waitFor(t, "more unchanged collections", func() bool { return h.callCount() >= calls+3 })
	if n := len(inventories(f)); n != 2 {
		t.Errorf("%d inventories, want 2", n)
	}
}

func TestCertificateRenewal(t *testing.T) {
	// A 1.5 s certificate is renewed once less than a third of it remains: after 1 s.
	f := agenttest.Start(t, agenttest.Options{ClientLifetime: 1500 * time.Millisecond, HeartbeatInterval: time.Hour})
	cfg := config(t, newHost(), f.Addr)
	start(t, cfg)
	waitFor(t, "hello", func() bool { return len(hellos(f)) > 0 })
	before, err := os.ReadFile(filepath.Join(cfg.StateDir, "agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "renewal", func() bool { return f.Renewals() > 0 })
	waitFor(t, "new agent.crt", func() bool {
		after, err := os.ReadFile(filepath.Join(cfg.StateDir, "agent.crt"))
		return err == nil && !bytes.Equal(before, after)
	})
	// The renewed certificate works on a new stream.
	f.CloseStreams()
	waitFor(t, "hello with the renewed certificate", func() bool { return len(hellos(f)) >= 2 })
}

func TestConfigValidate(t *testing.T) {
	base := coordclient.DefaultConfig()
	base.Coordinators = []string{"127.0.0.1:9090"}
	base.Inventory = newHost().collect
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := map[string]func(*coordclient.Config){
		"no coordinator":      func(c *coordclient.Config) { c.Coordinators = nil },
		"empty coordinator":   func(c *coordclient.Config) { c.Coordinators = []string{""} },
		"no state dir":        func(c *coordclient.Config) { c.StateDir = "" },
		"hash without kind":   func(c *coordclient.Config) { c.CAHash = "abcd" },
		"short hash":          func(c *coordclient.Config) { c.CAHash = "sha256:abcd" },
		"no inventory":        func(c *coordclient.Config) { c.Inventory = nil },
		"backoff max too low": func(c *coordclient.Config) { c.BackoffMax = c.BackoffMin / 2 },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			c := base
			mutate(&c)
			if err := c.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
}
