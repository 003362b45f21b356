package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployme/deployme/internal/poll"
)

// fakeRaft is a leaderRaft whose leadership the test flips. Its barrier can be held back to
// show nothing starts before it completes.
type fakeRaft struct {
	leader   atomic.Bool
	changes  chan bool
	mu       sync.Mutex
	barriers int
	release  chan struct{} // closed: barriers pass
	fail     atomic.Bool
}

func (f *fakeRaft) IsLeader() bool                 { return f.leader.Load() }
func (f *fakeRaft) LeadershipChanges() <-chan bool { return f.changes }
func (f *fakeRaft) Barrier(ctx context.Context) error {
	f.mu.Lock()
	f.barriers++
	rel := f.release
	f.mu.Unlock()
	select {
	case <-rel:
	case <-ctx.Done():
		return ctx.Err()
	}
	if f.fail.Load() {
		return errors.New("barrier failed")
	}
	return nil
}

func (f *fakeRaft) set(leader bool) {
	f.leader.Store(leader)
	select {
	case f.changes <- leader:
	default:
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := poll.Until(ctx, time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestLeaderLoopsFollowLeadership(t *testing.T) {
	fr := &fakeRaft{changes: make(chan bool, 1), release: make(chan struct{})}
	var running, starts atomic.Int32
	l := &leadership{raft: fr, logger: slog.New(slog.DiscardHandler), loops: []LeaderLoop{{Name: "probe", Run: func(ctx context.Context) error {
		running.Add(1)
		starts.Add(1)
		<-ctx.Done()
		running.Add(-1)
		return nil
	}}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.run(ctx) }()

	// Gaining leadership with the barrier held back: nothing runs, not ready.
	fr.set(true)
	waitFor(t, "the barrier to be requested", func() bool { fr.mu.Lock(); defer fr.mu.Unlock(); return fr.barriers > 0 })
	if running.Load() != 0 || l.Ready() {
		t.Fatal("a leader loop ran (or Ready was true) before the term's barrier completed")
	}
	close(fr.release)
	waitFor(t, "the loop to start after the barrier", func() bool { return running.Load() == 1 && l.Ready() })

	// Losing leadership stops the loop and readiness.
	fr.set(false)
	waitFor(t, "the loop to stop on losing leadership", func() bool { return running.Load() == 0 })
	if l.Ready() {
		t.Fatal("Ready after losing leadership")
	}

	// Gaining it again starts a fresh loop; stopping the manager stops it.
	fr.set(true)
	waitFor(t, "the loop to start again", func() bool { return running.Load() == 1 && starts.Load() == 2 })
	if got := l.established.Load(); got != 2 {
		t.Fatalf("established %d times, want 2", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if running.Load() != 0 {
		t.Fatal("loop still running after the manager stopped")
	}
}

func TestLostSignalStillStopsLoops(t *testing.T) {
	// A leadership change whose signal was dropped (the channel is lossy) is still noticed:
	// the manager re-reads the state on its periodic tick.
	fr := &fakeRaft{changes: make(chan bool), release: make(chan struct{})}
	close(fr.release)
	var running atomic.Int32
	l := &leadership{raft: fr, logger: slog.New(slog.DiscardHandler), loops: []LeaderLoop{{Name: "probe", Run: func(ctx context.Context) error {
		running.Add(1)
		<-ctx.Done()
		running.Add(-1)
		return nil
	}}}}
	fr.leader.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.run(ctx)
	waitFor(t, "the loop to start", func() bool { return running.Load() == 1 })
	fr.leader.Store(false) // no signal sent
	waitFor(t, "the loop to stop without a signal", func() bool { return running.Load() == 0 })
}
