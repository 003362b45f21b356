// Package clustertest runs coordinator replicas in-process for tests: real Raft and real
// gRPC over TCP on 127.0.0.1, real HTTP, a temporary data dir per replica. It can stop,
// restart and partition replicas (dropping traffic between chosen ones), and puts hosts into
// state through the same service path the agent service uses.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/coordinator/service"
	"github.com/deployme/deployme/internal/poll"
)

// Options configures a test cluster.
type Options struct {
	// Replicas is the number of coordinator replicas (default 1).
	Replicas int
	// Configure changes each replica's config after the harness defaults are set.
	Configure func(*server.Config)
}

// Cluster is a running set of test coordinator replicas.
type Cluster struct {
	t        testing.TB
	opts     Options
	net      *Network
	Replicas []*Replica

	// AdminToken is the bootstrap admin token's secret.
	AdminToken string
}

// Replica is one in-process coordinator.
type Replica struct {
	c       *Cluster
	Index   int
	ID      string
	dataDir string
	addrs   [3]string // http, grpc, raft: kept across restarts
	join    []string
	// tokenFile holds the admin token a joining replica presents.
	tokenFile string

	mu     sync.Mutex
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
}

// Start starts the replicas, joins them into one cluster, and waits until every one is a
// voter and ready. They are stopped when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	c := &Cluster{t: t, opts: opts, net: newNetwork()}
	t.Cleanup(c.StopAll)
	first := c.newReplica(0, nil)
	if err := first.start(); err != nil {
		t.Fatalf("start replica 0: %v", err)
	}
	tok, err := os.ReadFile(filepath.Join(first.dataDir, "admin-token"))
	if err != nil {
		t.Fatalf("read admin token: %v", err)
	}
	c.AdminToken = strings.TrimSpace(string(tok))
	tokenFile := filepath.Join(t.TempDir(), "join-token")
	if err := os.WriteFile(tokenFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < opts.Replicas; i++ {
		r := c.newReplica(i, []string{first.URL()})
		r.tokenFile = tokenFile
		if err := r.start(); err != nil {
			t.Fatalf("start replica %d: %v", i, err)
		}
	}
	if opts.Replicas > 1 {
		c.WaitVoters(opts.Replicas)
	}
	return c
}

func (c *Cluster) newReplica(i int, join []string) *Replica {
	r := &Replica{c: c, Index: i, ID: fmt.Sprintf("node-%d", i+1), dataDir: c.t.TempDir(), join: join}
	c.Replicas = append(c.Replicas, r)
	return r
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	// A restarted replica takes its old ports back; the previous listener may take a moment
	// to release them.
	var ln net.Listener
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil, nil
	})
	return ln, err
}

func (r *Replica) start() error {
	var lns [3]net.Listener
	for i := range lns {
		ln, err := listen(r.addrs[i])
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return err
		}
		lns[i] = ln
		r.addrs[i] = ln.Addr().String()
	}
	r.c.net.register(r.Index, r.addrs[2])
	cfg := server.DefaultConfig()
	cfg.NodeID = r.ID
	cfg.DataDir = r.dataDir
	cfg.HTTPListener, cfg.GRPCListener, cfg.RaftListener = lns[0], lns[1], lns[2]
	cfg.Stdout = io.Discard
	cfg.Join = r.join
	cfg.AdminTokenFile = r.tokenFile
	cfg.PeerDialer = r.c.net.dialer(r.Index)
	// Hosts put into state through the service have no agent behind them: liveness would
	// mark them offline. Tests about liveness turn it back on in Configure.
	cfg.Liveness.TTL = 0
	// Nor could their clusters be provisioned: tests that run agents turn the reconciler on.
	cfg.NoReconciler = true
	// Every replica needs the same keyring; operators copy it, the harness does too.
	if r.Index > 0 {
		if err := copyKeyring(r.c.Replicas[0].dataDir, r.dataDir); err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
	}
	if r.c.opts.Replicas <= 1 {
		// A single voter elects itself at once with short timeouts.
		cfg.Raft.HeartbeatTimeout = 200 * time.Millisecond
		cfg.Raft.ElectionTimeout = 200 * time.Millisecond
		cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
	} else {
		// Several replicas share 2 CPUs (and the race detector): timeouts short enough for
		// quick failover tests, long enough not to flap under load.
		cfg.Raft.HeartbeatTimeout = 500 * time.Millisecond
		cfg.Raft.ElectionTimeout = 500 * time.Millisecond
		cfg.Raft.LeaderLeaseTimeout = 250 * time.Millisecond
	}
	if r.c.opts.Configure != nil {
		r.c.opts.Configure(&cfg)
	}
	if cfg.KubeArtifactsDir == "" {
		// Like development mode: an artifact store of fake binaries for every version in
		// the catalog, so upgrades can run.
		dir := filepath.Join(r.dataDir, "kube-artifacts")
		var versions []string
		for _, v := range cfg.Service.KubernetesVersions {
			versions = append(versions, v.Version)
		}
		if err := devmode.SeedKubeArtifacts(dir, versions); err != nil {
			return err
		}
		cfg.KubeArtifactsDir = dir
	}
	srv, err := server.New(cfg)
	if err != nil {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	r.mu.Lock()
	r.srv, r.cancel, r.done = srv, cancel, done
	r.mu.Unlock()
	return r.waitReady(done)
}

// waitReady waits until /readyz answers 200 (a leader is known and state bootstrapped).
func (r *Replica) waitReady(done chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	return poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Errorf("coordinator exited during start: %v", err)
		default:
		}
		resp, err := hc.Get(r.URL() + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// URL is the replica's REST API base URL.
func (r *Replica) URL() string { return "http://" + r.addrs[0] }

// GRPCAddr is the replica's agent (gRPC) address.
func (r *Replica) GRPCAddr() string { return r.addrs[1] }

// DataDir is the replica's data directory.
func (r *Replica) DataDir() string { return r.dataDir }

// Server is the running server (nil while stopped).
func (r *Replica) Server() *server.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

// Running tells whether the replica is started.
func (r *Replica) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cancel != nil
}

// Client returns an admin API client for this replica.
func (r *Replica) Client() *client.Client { return client.New(r.URL(), r.c.AdminToken) }

// Stop stops the replica (idempotent).
func (r *Replica) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel = nil
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		// A stop that hangs is a bug worth a full picture: every goroutine's stack says
		// what the replica is still waiting for.
		var buf strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
		r.c.t.Errorf("replica %s still stopping after 15 s; goroutines:\n%s", r.ID, buf.String())
		err = <-done
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		r.c.t.Errorf("replica %s stopped with error: %v", r.ID, err)
	}
}

// copyKeyring gives a replica the first replica's keyring, unless it has one.
func copyKeyring(from, to string) error {
	dst := filepath.Join(to, "keyring")
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(from, "keyring"))
	if err != nil {
		return fmt.Errorf("copy keyring: %w", err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// Restart starts a stopped replica (or stops and starts a running one) on the same data dir
// and addresses.
func (r *Replica) Restart() {
	r.c.t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		r.c.t.Fatalf("restart %s: %v", r.ID, err)
	}
}

// StartAgain starts a stopped replica without waiting for it to be ready (a replica alone
// in a minority is never ready).
func (r *Replica) StartAgain() error {
	r.Stop()
	err := r.start()
	return err
}

// AddReplica starts a new replica that joins the cluster through the running replicas (as
// a non-voter; the leader promotes it once it has caught up), waits until it is ready, and
// returns it.
func (c *Cluster) AddReplica() *Replica {
	c.t.Helper()
	var join []string
	tokenFile := ""
	for _, r := range c.Replicas {
		if r.Running() {
			join = append(join, r.URL())
		}
		if r.tokenFile != "" {
			tokenFile = r.tokenFile
		}
	}
	if len(join) == 0 {
		c.t.Fatal("add replica: no replica is running")
	}
	if tokenFile == "" {
		tokenFile = filepath.Join(c.t.TempDir(), "join-token")
		if err := os.WriteFile(tokenFile, []byte(c.AdminToken+"\n"), 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	r := c.newReplica(len(c.Replicas), join)
	r.tokenFile = tokenFile
	if err := r.start(); err != nil {
		c.t.Fatalf("start replica %s: %v", r.ID, err)
	}
	return r
}

// StopAll stops every replica.
func (c *Cluster) StopAll() {
	var wg sync.WaitGroup
	for _, r := range c.Replicas {
		wg.Add(1)
		go func() { defer wg.Done(); r.Stop() }()
	}
	wg.Wait()
}

// --- single-replica shorthands (replica 0), kept for tests that need one coordinator

// URL is replica 0's REST API base URL.
func (c *Cluster) URL() string { return c.Replicas[0].URL() }

// GRPCAddr is replica 0's agent (gRPC) address.
func (c *Cluster) GRPCAddr() string { return c.Replicas[0].GRPCAddr() }

// DataDir is replica 0's data directory.
func (c *Cluster) DataDir() string { return c.Replicas[0].DataDir() }

// Server is replica 0's server.
func (c *Cluster) Server() *server.Server { return c.Replicas[0].Server() }

// Service is a running replica's application layer (writes are forwarded to the leader).
func (c *Cluster) Service() *service.Service {
	for _, r := range c.Replicas {
		if s := r.Server(); s != nil {
			return s.Service()
		}
	}
	c.t.Fatal("no replica is running")
	return nil
}

// Client returns an admin API client for replica 0.
func (c *Cluster) Client() *client.Client { return c.Replicas[0].Client() }

// ClientWith returns an API client for replica 0 with another token ("" for none).
func (c *Cluster) ClientWith(token string) *client.Client { return client.New(c.URL(), token) }

// Stop stops replica 0.
func (c *Cluster) Stop() { c.Replicas[0].Stop() }

// Restart restarts replica 0.
func (c *Cluster) Restart() { c.Replicas[0].Restart() }

// --- leadership and membership

// Leader waits until one running replica leads and has established leadership, and
// returns it.
func (c *Cluster) Leader(timeout time.Duration) *Replica {
	c.t.Helper()
	var leader *Replica
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) {
		for _, r := range c.Replicas {
			if s := r.Server(); s != nil && s.LeaderReady() {
				leader = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		c.t.Fatalf("no leader within %v", timeout)
	}
	return leader
}

// WaitVoters waits until the leader's configuration has n voters.
func (c *Cluster) WaitVoters(n int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		l := c.Leader(30 * time.Second)
		servers, err := l.Server().Raft().Servers()
		if err != nil {
			return false, nil
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		return voters == n, nil
	})
	if err != nil {
		c.t.Fatalf("cluster did not reach %d voters", n)
	}
}

// Partition cuts traffic between replicas of different groups (by index); replicas in no
// group are cut from everyone. Existing connections fail on their next read or write.
func (c *Cluster) Partition(groups ...[]int) { c.net.partition(groups) }

// Heal restores all traffic.
func (c *Cluster) Heal() { c.net.heal() }

// --- hosts

// HostSpec describes hosts to put into state.
type HostSpec struct {
	InfraID     string
	CPUs        int
	MemoryBytes int64
	Labels      map[string]string
	// Discovered leaves hosts discovered instead of available.
	Discovered bool
}

// AddHosts registers n hosts through the service (the agent service's write path) and
// returns them. Host i gets hostname "host-<i>" and an address in 10.99.0.0/16 that is
// stored, never dialled.
func (c *Cluster) AddHosts(n int, spec HostSpec) []*v1.Host {
	c.t.Helper()
	if spec.InfraID == "" {
		spec.InfraID = v1.ManagedInfraID
	}
	if spec.CPUs == 0 {
		spec.CPUs, spec.MemoryBytes = 8, 32<<30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*v1.Host
	for range n {
		seq := int(hostSeq.Add(1))
		h, err := c.Service().RegisterHost(ctx, service.HostRegistration{
			InfraID:     spec.InfraID,
			Hostname:    fmt.Sprintf("host-%d", seq),
			Accept:      !spec.Discovered,
			CPUs:        spec.CPUs,
			MemoryBytes: spec.MemoryBytes,
			Disks:       []v1.Disk{{Name: "vda", SizeBytes: 100 << 30}},
			NICs:        []v1.NIC{{Name: "eth0", MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", seq>>16&0xff, seq>>8&0xff, seq&0xff), Addresses: []string{fmt.Sprintf("10.99.%d.%d/16", seq/250, seq%250+1)}, Up: true}},
			Labels:      spec.Labels,
		})
		if err != nil {
			c.t.Fatalf("register host: %v", err)
		}
		out = append(out, h)
	}
	return out
}

// hostSeq numbers hosts across every cluster of the test binary, so MACs never repeat.
var hostSeq atomic.Int64
