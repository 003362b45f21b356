// Package fleet runs a fleet of real agent clients (agent/coordclient) in-process against a
// real 3-replica coordinator cluster (coordinator/clustertest) and checks the agent fleet's
// acceptance criteria: failover of the leader without any host flapping offline, and the
// liveness of a single agent that stops and comes back.
package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/coordclient"
	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/liveness"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/internal/poll"
)

const (
	agents    = 50
	ttl       = 3 * time.Second
	grace     = 2 * time.Second
	heartbeat = 500 * time.Millisecond
)

func ptr[T any](v T) *T { return &v }

// agent is one in-process agent client.
type agent struct {
	i        int
	stateDir string
	addrs    []string
	hostname string

	cancel context.CancelFunc
	done   chan error
}

// fakeInventory is a small fixed inventory with a hostname and a MAC of its own.
func fakeInventory(i int, hostname string) func(context.Context) (*inventory.Inventory, error) {
	return func(context.Context) (*inventory.Inventory, error) {
		return &inventory.Inventory{
			Hostname: hostname, OSRelease: "Fleet Linux 1.0", Kernel: "6.1.0-fleet",
			CPUs: 2, CPUModel: "fleet-cpu", MemoryBytes: 4 << 30,
			Disks:    []inventory.Disk{{Name: "vda", SizeBytes: 20 << 30}},
			NICs:     []inventory.NIC{{Name: "eth0", MAC: fmt.Sprintf("52:54:00:fe:%02x:%02x", i>>8&0xff, i&0xff), Addresses: []string{fmt.Sprintf("10.77.%d.%d/16", i/250, i%250+1)}, Up: true}},
			Versions: map[string]string{}, Labels: map[string]string{"fleet": "yes"},
		}, nil
	}
}

// start runs the agent until stop; joinToken is empty on a restart (the state dir holds the
// identity).
func (a *agent) start(t *testing.T, joinToken, caHash string) {
	t.Helper()
	cfg := coordclient.DefaultConfig()
	cfg.Coordinators = a.addrs
	cfg.JoinToken = joinToken
	cfg.CAHash = caHash
	cfg.StateDir = a.stateDir
	cfg.Inventory = fakeInventory(a.i, a.hostname)
	cfg.AgentVersion = "fleet-test"
	cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, time.Second
	cfg.WelcomeTimeout, cfg.DialTimeout = 3*time.Second, 3*time.Second
	cl, err := coordclient.New(cfg)
	if err != nil {
		t.Fatalf("agent %d: %v", a.i, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	a.cancel, a.done = cancel, done
}

// stop cancels the agent and waits for Run to return; its error is reported.
func (a *agent) stop(t *testing.T) {
	if a.cancel == nil {
		return
	}
	a.cancel()
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent %d (%s) ended with: %v", a.i, a.hostname, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("agent %d (%s) did not stop", a.i, a.hostname)
	}
	a.cancel = nil
}

// freshestLeases merges the lease tables of the given replicas, keeping the newest per host.
func freshestLeases(replicas []*clustertest.Replica) map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range replicas {
		s := r.Server()
		if s == nil {
			continue
		}
		for h, at := range s.Leases().LastSeen() {
			if at.After(out[h]) {
				out[h] = at
			}
		}
	}
	return out
}

// listHosts reads GET /v1/hosts of one infra through r, as a stale (local) read.
func listHosts(ctx context.Context, cl *client.Client, infraID string) ([]v1.Host, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cl.Do(rctx, http.MethodGet, "/v1/hosts?stale=1&per_page=100&infra_id="+infraID, nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/hosts: %d %s", resp.Status, resp.Body)
	}
	var list v1.HostList
	if err := json.Unmarshal(resp.Body, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// TestLeaderFailoverWithAgentFleet: kill the leader of a 3-replica cluster with 50 agents
// connected: no host is marked offline; every agent is connected again within 10 s. Stop an
// agent: it is offline within its lease plus grace, and online again within seconds of
// coming back.
func TestLeaderFailoverWithAgentFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("fleet test: 3 replicas and 50 agents")
	}
	testStart := time.Now()
	// The coordinators' liveness and leadership logs are shown if the test fails.
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("coordinator liveness and leadership logs:\n%s", logs.filter("liveness", "leadership"))
		}
	})
	c := clustertest.Start(t, clustertest.Options{Replicas: 3, Configure: func(cfg *server.Config) {
		cfg.Liveness = liveness.Policy{TTL: ttl, Grace: grace}
		cfg.AgentHeartbeat = heartbeat
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", cfg.NodeID)
	}})
	waitFor(t, 20*time.Second, "the agent CA", func() bool { return c.Service().AgentCAFingerprint() != "" })
	caHash := "sha256:" + c.Service().AgentCAFingerprint()

	ctx := context.Background()
	cl := c.Client()
	infra, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("fleet"), Kind: ptr("onpremise")})
	if err != nil {
		t.Fatal(err)
	}
	jt, err := cl.CreateJoinToken(ctx, infra.ID, v1.CreateJoinTokenRequest{MaxUses: ptr(agents)})
	if err != nil {
		t.Fatal(err)
	}

	// 50 agents, each given every replica but starting from a different one.
	var grpcAddrs []string
	for _, r := range c.Replicas {
		grpcAddrs = append(grpcAddrs, r.GRPCAddr())
	}
	fleet := make([]*agent, agents)
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, a := range fleet {
			if a != nil {
				wg.Add(1)
				go func() { defer wg.Done(); a.stop(t) }()
			}
		}
		wg.Wait()
	})
	for i := range fleet {
		k := i % len(grpcAddrs)
		a := &agent{i: i, stateDir: t.TempDir(), hostname: fmt.Sprintf("fleet-%02d", i),
			addrs: slices.Concat(grpcAddrs[k:], grpcAddrs[:k])}
		fleet[i] = a
		a.start(t, jt.Secret, caHash)
	}

	// Every host registered, and every one with a fresh lease on some replica.
	hostOf := map[string]string{} // hostname -> host id
	waitFor(t, 30*time.Second, "50 registered hosts", func() bool {
		hosts, err := listHosts(ctx, cl, infra.ID)
		if err != nil || len(hosts) != agents {
			return false
		}
		for _, h := range hosts {
			hostOf[h.Hostname] = h.ID
		}
		return len(hostOf) == agents
	})
	waitFor(t, 20*time.Second, "a fresh lease for every host", func() bool {
		leases := freshestLeases(c.Replicas)
		for _, id := range hostOf {
			if time.Since(leases[id]) > 3*heartbeat {
				return false
			}
		}
		return true
	})
	setupDone := time.Now()

	leader := c.Leader(10 * time.Second)
	var survivors []*clustertest.Replica
	for _, r := range c.Replicas {
		if r != leader {
			survivors = append(survivors, r)
		}
	}
	ours := map[string]bool{}
	for _, id := range hostOf {
		ours[id] = true
	}
	perReplica := map[string]int{}
	for _, r := range c.Replicas {
		for id, l := range r.Server().Leases().Snapshot() {
			if ours[id] && time.Since(l.LastSeen) <= 3*heartbeat {
				perReplica[r.ID]++
			}
		}
	}
	t.Logf("setup: 3 replicas, %d agents registered and connected in %v; agents per replica %v; leader %s",
		agents, setupDone.Sub(testStart).Round(time.Millisecond), perReplica, leader.ID)
	if perReplica[leader.ID] == 0 {
		t.Fatalf("no agent is connected to the leader %s: the failover would prove nothing", leader.ID)
	}

	// Every leadership change restarts the grace period: track when the last one happened.
	track := trackLeadership(t, c)

	// Watch the hosts through a surviving replica from before the leader stops until well
	// after the new leader's grace period: no host may ever be offline.
	watchCtx, stopWatch := context.WithCancel(ctx)
	type watchResult struct {
		polls, failures int
		offline         map[string]time.Time
	}
	watchDone := make(chan watchResult, 1)
	go func() {
		res := watchResult{offline: map[string]time.Time{}}
		watchers := []*client.Client{survivors[0].Client(), survivors[1].Client()}
		for n := 0; watchCtx.Err() == nil; n++ {
			hosts, err := listHosts(watchCtx, watchers[n%2], infra.ID)
			if err != nil {
				if watchCtx.Err() == nil {
					res.failures++
				}
			} else {
				res.polls++
				for _, h := range hosts {
					if h.State == v1.HostOffline {
						if _, ok := res.offline[h.Hostname]; !ok {
							res.offline[h.Hostname] = time.Now()
						}
					}
				}
			}
			select {
			case <-watchCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		watchDone <- res
	}()

	// Kill the leader. Stop drains the agent endpoint gracefully (bounded by 5 s), so it
	// runs aside while the survivors are watched.
	stopAt := time.Now()
	stopped := make(chan time.Time, 1)
	go func() { leader.Stop(); stopped <- time.Now() }()

	var leaderAt, reconnectedAt, stopReturned time.Time
	var newLeader *clustertest.Replica
	deadline, cancelDeadline := context.WithTimeout(ctx, 20*time.Second)
	err = poll.Until(deadline, 20*time.Millisecond, func() (bool, error) {
		now := time.Now()
		select {
		case at := <-stopped:
			stopReturned = at
		default:
		}
		if leaderAt.IsZero() {
			for _, r := range survivors {
				if s := r.Server(); s != nil && s.LeaderReady() {
					leaderAt, newLeader = now, r
				}
			}
		}
		if reconnectedAt.IsZero() {
			leases := freshestLeases(survivors)
			all := true
			for _, id := range hostOf {
				if !leases[id].After(stopAt) {
					all = false
					break
				}
			}
			if all {
				reconnectedAt = now
			}
		}
		return !leaderAt.IsZero() && !reconnectedAt.IsZero() && !stopReturned.IsZero(), nil
	})
	cancelDeadline()
	if err != nil {
		stopWatch()
		<-watchDone
		t.Fatalf("after stopping leader %s: new leader at %v, all agents reconnected at %v, Stop returned at %v (zero: never within 20 s)",
			leader.ID, sinceOrZero(leaderAt, stopAt), sinceOrZero(reconnectedAt, stopAt), sinceOrZero(stopReturned, stopAt))
	}
	reconnect := reconnectedAt.Sub(stopAt)
	t.Logf("leader %s stopped: Stop returned after %v; new leader %s established after %v; every agent connected to a survivor after %v",
		leader.ID, stopReturned.Sub(stopAt).Round(time.Millisecond), newLeader.ID, leaderAt.Sub(stopAt).Round(time.Millisecond), reconnect.Round(time.Millisecond))
	if reconnect > 10*time.Second {
		t.Errorf("agents took %v to reconnect after the leader stopped, want at most 10 s", reconnect)
	}

	// Keep watching for TTL + grace + 1 s after both the reconnection and the latest
	// leadership change: that is when a leader first may declare hosts offline. (Should
	// leadership keep moving, the window is capped at 30 s after the stop.)
	waitFor(t, 35*time.Second, "the end of the watch window", func() bool {
		last, _ := track.last()
		end := maxTime(reconnectedAt, last).Add(ttl + grace + time.Second)
		return !time.Now().Before(end) || time.Since(stopAt) > 30*time.Second
	})
	stopWatch()
	res := <-watchDone
	_, changes := track.last()
	t.Logf("watched /v1/hosts for %v after the stop: %d reads, %d failed; %d leadership establishments since the stop",
		time.Since(stopAt).Round(time.Millisecond), res.polls, res.failures, changes)
	if len(res.offline) > 0 {
		for name, at := range res.offline {
			t.Errorf("host %s was offline %v after the leader stopped", name, at.Sub(stopAt).Round(time.Millisecond))
		}
	}
	if res.polls < 10 {
		t.Errorf("only %d successful reads of /v1/hosts during the watch window", res.polls)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Stop one agent: its host goes offline within TTL + grace (+ margin).
	victim := fleet[7]
	victimID := hostOf[victim.hostname]
	reader := newLeader.Client()
	hostState := func() string {
		hosts, err := listHosts(ctx, reader, infra.ID)
		if err != nil {
			return ""
		}
		for _, h := range hosts {
			if h.ID == victimID {
				return h.State
			}
		}
		return ""
	}
	cancelAt := time.Now()
	victim.stop(t)
	lastSeen := freshestLeases(c.Replicas)[victimID]
	const margin = 3 * time.Second
	waitFor(t, 30*time.Second, "the stopped agent's host to go offline", func() bool { return hostState() == v1.HostOffline })
	offlineAt := time.Now()
	offline := offlineAt.Sub(cancelAt)
	// The lease expires TTL after the agent was last heard; a leader declares nothing
	// offline before it has led for TTL + grace.
	lastLeader, _ := track.last()
	due := maxTime(lastSeen.Add(ttl), lastLeader.Add(ttl+grace))
	t.Logf("agent %s stopped: host offline after %v (last heard %v before the stop; TTL %v, grace %v; the leader had led for %v at the stop); due at most %v after the stop",
		victim.hostname, offline.Round(time.Millisecond), cancelAt.Sub(lastSeen).Round(time.Millisecond), ttl, grace,
		cancelAt.Sub(lastLeader).Round(time.Millisecond), due.Sub(cancelAt).Round(time.Millisecond))
	if late := offlineAt.Sub(due); late > margin {
		t.Errorf("host went offline %v after its agent stopped: %v later than lease + grace allow (margin %v)", offline, late, margin)
	}
	if offline > ttl+grace+margin {
		t.Logf("note: beyond TTL + grace + %v after the stop, because leadership changed meanwhile", margin)
	}
	if early := lastSeen.Add(ttl).Sub(time.Now()); early > 0 {
		t.Errorf("host went offline before its lease expired (%v early)", early)
	}
	others, err := listHosts(ctx, reader, infra.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range others {
		if h.ID != victimID && h.State == v1.HostOffline {
			t.Errorf("host %s is offline while its agent runs", h.Hostname)
		}
	}

	// Restart it from its state dir, without the join token: online again within seconds.
	restartAt := time.Now()
	victim.start(t, "", caHash)
	waitFor(t, 15*time.Second, "the restarted agent's host to come back", func() bool {
		st := hostState()
		return st != "" && st != v1.HostOffline
	})
	back := time.Since(restartAt)
	t.Logf("agent %s restarted: host online again after %v (same host id %s)", victim.hostname, back.Round(time.Millisecond), victimID)
	if back > 5*time.Second {
		t.Errorf("host came back %v after its agent restarted, want at most 5 s", back)
	}
	hosts, err := listHosts(ctx, reader, infra.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != agents {
		t.Errorf("%d hosts after the restart, want %d (the restart must reuse its identity)", len(hosts), agents)
	}
	t.Logf("whole test: %v", time.Since(testStart).Round(time.Millisecond))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// leadershipTracker records when some replica last established leadership.
type leadershipTracker struct {
	mu      sync.Mutex
	at      time.Time
	changes int
}

func (l *leadershipTracker) last() (time.Time, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at, l.changes
}

// trackLeadership polls every replica's leadership count until the test ends.
func trackLeadership(t *testing.T, c *clustertest.Cluster) *leadershipTracker {
	tr := &leadershipTracker{at: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	counts := make([]int64, len(c.Replicas))
	for i, r := range c.Replicas {
		if s := r.Server(); s != nil {
			counts[i] = s.LeadershipsEstablished()
		}
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for i, r := range c.Replicas {
				s := r.Server()
				if s == nil {
					continue
				}
				if n := s.LeadershipsEstablished(); n != counts[i] {
					counts[i] = n
					tr.mu.Lock()
					tr.at, tr.changes = time.Now(), tr.changes+1
					tr.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return tr
}

func sinceOrZero(at, from time.Time) time.Duration {
	if at.IsZero() {
		return 0
	}
	return at.Sub(from)
}

// logBuffer collects log lines from every replica.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// filter returns the lines that mention any of words.
func (l *logBuffer) filter(words ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
