package raftnode

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// ApplyIndexed is Apply that also returns the log index the entry was applied at, so a
// replica that forwarded it can wait until it has applied that index itself.
func (n *Node) ApplyIndexed(ctx context.Context, entry []byte) (uint64, any, error) {
	if ctx.Err() != nil {
		return 0, nil, ErrTimeout // nothing was proposed
	}
	f := n.raft.Apply(entry, timeoutOf(ctx))
	// hashicorp/raft can accept an entry into its batch channel during shutdown and never
	// answer it (hashicorp/raft#498), so the wait is bounded by ctx and by Close too.
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return 0, nil, classify(err)
		}
		return f.Index(), f.Response(), nil
	case <-ctx.Done():
		return 0, nil, ErrUnknownOutcome
	case <-n.stopped:
		return 0, nil, ErrShutdown
	}
}

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 10 * time.Second
}

// CommitIndex is the highest index known committed.
func (n *Node) CommitIndex() uint64 { return n.raft.CommitIndex() }

// LastContact is when this follower last heard from the leader (zero on the leader).
func (n *Node) LastContact() time.Time { return n.raft.LastContact() }

// State is "Leader", "Follower", "Candidate" or "Shutdown".
func (n *Node) State() string { return n.raft.State().String() }

// AddNonvoter adds a replica that receives the log but does not vote yet.
func (n *Node) AddNonvoter(ctx context.Context, id, addr string) error {
	return classify(n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx)).Error())
}

// AddVoter adds (or promotes) a voting replica.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	return classify(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx)).Error())
}

// RemoveServer removes a replica from the configuration.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return classify(n.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)).Error())
}

// ID is this replica's Raft ID.
func (n *Node) ID() string { return n.cfg.ID }

// LeadershipChanges signals leadership transitions (true on gaining it). Signals may be
// coalesced: consumers re-read IsLeader.
func (n *Node) LeadershipChanges() <-chan bool { return n.notify }

// Fresh tells whether the node started with no Raft state (a new replica, before bootstrap
// or joining).
func (n *Node) Fresh() bool { return n.fresh }

// maxScan bounds how many log entries CommandsApplied inspects; past it, it waits instead.
const maxScan = 256

// CommandsApplied reports whether the state machine has applied every command at or below
// index, given the index of the last command it applied. Raft's own applied index is not
// enough: it moves before the state machine has processed what it was handed, and no-op,
// barrier and configuration entries never reach the state machine, so its own count can
// stay below the commit index forever. The entries in between are read from the log: if
// none is a command, nothing is missing.
func (n *Node) CommandsApplied(fsmApplied, index uint64) bool {
	if fsmApplied >= index {
		return true
	}
	if n.raft.AppliedIndex() < index {
		return false
	}
	from := fsmApplied + 1
	// Entries up to the last snapshot are in the state machine already (applied before the
	// snapshot was taken, or restored from it), and may be gone from the log.
	if snap, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64); err == nil && snap+1 > from {
		from = snap + 1
	}
	if from > index {
		return true
	}
	if index-from > maxScan {
		return false
	}
	for i := from; i <= index; i++ {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil || l.Type == raft.LogCommand {
			return false
		}
	}
	return true
}

// TransferLeadership hands leadership to another voter when this node leads (a planned
// stop); it returns once the transfer is done, failed, or took more than a few seconds.
func (n *Node) TransferLeadership() {
	if !n.IsLeader() {
		return
	}
	servers, err := n.Servers()
	if err != nil || len(servers) < 2 {
		return
	}
	done := make(chan struct{})
	go func() { _ = n.raft.LeadershipTransfer().Error(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}
