// Package clustertest runs coordinator replicas in-process for tests: real Raft over TCP on
// 127.0.0.1, real HTTP, a temporary data dir per replica, and helpers to restart replicas
// and to put hosts into state through the same service path the agent service uses.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/coordinator/service"
	"github.com/deployme/deployme/internal/poll"
)

// Options configures a test cluster.
type Options struct {
	// Configure changes each replica's config after the harness defaults are set.
	Configure func(*server.Config)
}

// Cluster is a running test coordinator (one replica for now).
type Cluster struct {
	t       testing.TB
	opts    Options
	dataDir string
	addrs   [3]string // http, grpc, raft: kept across restarts

	mu     sync.Mutex
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error

	// AdminToken is the bootstrap admin token's secret.
	AdminToken string
}

// Start starts a single-replica coordinator and waits until it is ready. It is stopped when
// the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts, dataDir: t.TempDir()}
	if err := c.start(); err != nil {
		t.Fatalf("start coordinator: %v", err)
	}
	t.Cleanup(func() { c.Stop() })
	tok, err := os.ReadFile(filepath.Join(c.dataDir, "admin-token"))
	if err != nil {
		t.Fatalf("read admin token: %v", err)
	}
	c.AdminToken = strings.TrimSpace(string(tok))
	return c
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// A restarted replica takes its old ports back; the previous listener may take a moment
	// to release them.
	var ln net.Listener
	err := poll.Until(context.Background(), 20*time.Millisecond, func() (bool, error) {
		var err error
		ln, err = net.Listen("tcp", addr)
		if err != nil && strings.Contains(addr, ":0") {
			return false, err
		}
		return err == nil, nil
	})
	return ln, err
}

func (c *Cluster) start() error {
	var lns [3]net.Listener
	for i := range lns {
		ln, err := listen(c.addrs[i])
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return err
		}
		lns[i] = ln
		c.addrs[i] = ln.Addr().String()
	}
	cfg := server.DefaultConfig()
	cfg.NodeID = "node-1"
	cfg.DataDir = c.dataDir
	cfg.HTTPListener, cfg.GRPCListener, cfg.RaftListener = lns[0], lns[1], lns[2]
	// A single voter elects itself faster with short timeouts; tests need no LAN margin.
	cfg.Raft.HeartbeatTimeout = 200 * time.Millisecond
	cfg.Raft.ElectionTimeout = 200 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
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
	c.mu.Lock()
	c.srv, c.cancel, c.done = srv, cancel, done
	c.mu.Unlock()
	return c.waitReady(done)
}

func (c *Cluster) waitReady(done chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	return poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Errorf("coordinator exited during start: %v", err)
		default:
		}
		resp, err := hc.Get(c.URL() + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// URL is the REST API's base URL.
func (c *Cluster) URL() string { return "http://" + c.addrs[0] }

// DataDir is the replica's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// Server is the running replica.
func (c *Cluster) Server() *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv
}

// Service is the running replica's application layer.
func (c *Cluster) Service() *service.Service { return c.Server().Service() }

// Client returns an API client with the admin token.
func (c *Cluster) Client() *client.Client { return client.New(c.URL(), c.AdminToken) }

// ClientWith returns an API client with another token ("" for none).
func (c *Cluster) ClientWith(token string) *client.Client { return client.New(c.URL(), token) }

// Stop stops the replica cleanly (idempotent).
func (c *Cluster) Stop() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel = nil
	c.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		c.t.Errorf("coordinator stopped with error: %v", err)
	}
}

// Restart stops the replica and starts it again on the same data dir and addresses.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.Stop()
	if err := c.start(); err != nil {
		c.t.Fatalf("restart coordinator: %v", err)
	}
}

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
// returns them. Host i gets hostname "<prefix>-<i>" and address 10.99.x.y/16 (never dialled).
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
