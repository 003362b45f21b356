package raftnode_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/deployme/deployme/coordinator/raftnode"
	"github.com/deployme/deployme/internal/poll"
)

func TestValidate(t *testing.T) {
	ln := dummyListener{}
	valid := func() raftnode.Config {
		c := raftnode.DefaultConfig()
		c.ID, c.Dir, c.Listener = "n1", "/tmp/x", ln
		return c
	}
	tests := []struct {
		name   string
		change func(*raftnode.Config)
		want   string // "" for valid
	}{
		{"defaults", func(*raftnode.Config) {}, ""},
		{"no id", func(c *raftnode.Config) { c.ID = "" }, "node ID"},
		{"no dir", func(c *raftnode.Config) { c.Dir = "" }, "data directory"},
		{"no listener", func(c *raftnode.Config) { c.Listener = nil }, "listener"},
		{"snapshots off", func(c *raftnode.Config) { c.SnapshotThreshold = 0 }, "threshold"},
		{"never checked", func(c *raftnode.Config) { c.SnapshotInterval = 0 }, "interval"},
		{"log never shrinks", func(c *raftnode.Config) { c.TrailingLogs = 11 * c.SnapshotThreshold }, "ever shrinking"},
		{"trailing at the bound", func(c *raftnode.Config) { c.TrailingLogs = 10 * c.SnapshotThreshold }, ""},
		{"no snapshot kept", func(c *raftnode.Config) { c.RetainSnapshots = 0 }, "retained"},
		{"lease beyond heartbeat", func(c *raftnode.Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout }, "lease"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			if tc.want == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

type dummyListener struct{ net.Listener }

// listFSM appends every entry to a list; its snapshot is the list.
type listFSM struct {
	mu      sync.Mutex
	entries []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.entries...)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) { return listSnap(f.list()), nil }

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var e []string
	if err := json.NewDecoder(rc).Decode(&e); err != nil {
		return err
	}
	f.mu.Lock()
	f.entries = e
	f.mu.Unlock()
	return nil
}

type listSnap []string

func (s listSnap) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (listSnap) Release() {}

// open starts a single-voter node on addr ("" picks a port) and waits until it leads.
func open(t *testing.T, dir, addr string, f raft.FSM) *raftnode.Node {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	// A restarted node takes its old port back (its address is in the Raft configuration);
	// the previous listener may take a moment to release it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	cfg := raftnode.DefaultConfig()
	cfg.ID, cfg.Dir, cfg.Listener, cfg.Bootstrap = "n1", dir, ln, true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.TrailingLogs = 2
	n, err := raftnode.Open(cfg, f)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) { return n.IsLeader(), nil }); err != nil {
		n.Close()
		t.Fatalf("no leadership: %v", err)
	}
	return n
}

// TestApplySnapshotRestart: applied entries come back after a restart, from a snapshot
// (the log before it is compacted) plus the log after it; an Apply past its deadline is
// ErrTimeout without touching the log.
func TestApplySnapshotRestart(t *testing.T) {
	dir := t.TempDir()
	f := &listFSM{}
	n := open(t, dir, "", f)
	servers, err := n.Servers()
	if err != nil || len(servers) != 1 || !servers[0].Voter || servers[0].ID != "n1" {
		t.Fatalf("Servers = %+v, %v", servers, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var want []string
	apply := func(n *raftnode.Node, s string) {
		t.Helper()
		res, err := n.Apply(ctx, []byte(s))
		if err != nil {
			t.Fatalf("Apply(%s): %v", s, err)
		}
		want = append(want, s)
		if res != len(f.list()) {
			t.Fatalf("Apply(%s) = %v, want the FSM's answer %d", s, res, len(f.list()))
		}
	}
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		apply(n, s)
	}
	if err := n.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	for _, s := range []string{"f", "g"} {
		apply(n, s)
	}
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	if _, err := n.Apply(expired, []byte("late")); !errors.Is(err, raftnode.ErrTimeout) {
		t.Errorf("Apply past its deadline = %v, want ErrTimeout", err)
	}
	// Apply after Close is not tried: with BatchApplyCh, hashicorp/raft can accept the
	// entry into its buffered channel after shutdown and never answer it, so the call can
	// block forever whatever its deadline (hashicorp/raft issue 498).
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	f2 := &listFSM{}
	n2 := open(t, dir, servers[0].Address, f2)
	defer n2.Close()
	if err := n2.Barrier(ctx); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	if diff := cmp.Diff(want, f2.list()); diff != "" {
		t.Errorf("entries after restart (-before +after):\n%s", diff)
	}
	if got := n2.Stats()["last_snapshot_index"]; got == "" || got == "0" {
		t.Errorf("last_snapshot_index = %q: the restart did not find the snapshot", got)
	}
}

// TestReplicationIsNotPipelined: hashicorp/raft v1.7.3's pipelined replication can deadlock
// after a follower refuses an entry (a follower stops receiving entries for good and the
// leader can never shut down; it hung our CI), so the transport must refuse pipelines and
// raft falls back to one AppendEntries in flight per follower.
func TestReplicationIsNotPipelined(t *testing.T) {
	n := open(t, t.TempDir(), "", &listFSM{})
	defer n.Close()
	if err := raftnode.PipelineErr(n); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline = %v, want ErrPipelineReplicationNotSupported", err)
	}
}
