package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployme/deployme/internal/logkey"
)

// LeaderLoop is work that runs only on the leader: started once leadership is gained and
// the term's barrier has applied, cancelled when leadership is lost.
type LeaderLoop struct {
	Name string
	Run  func(ctx context.Context) error
}

// leaderRaft is what the leadership manager needs of Raft.
type leaderRaft interface {
	IsLeader() bool
	LeadershipChanges() <-chan bool
	Barrier(ctx context.Context) error
}

// leadership is the one place leadership transitions are handled (Nomad's
// establishLeadership / revokeLeadership). hashicorp/raft reports leadership before the
// term's first entry has committed, so a new leader may not have applied everything its
// predecessor acknowledged; nothing leader-only runs and nothing is served as leader until a
// barrier for the term completes.
type leadership struct {
	raft   leaderRaft
	loops  []LeaderLoop
	logger *slog.Logger
	ready  atomic.Bool

	// established counts completed barriers (tests and metrics).
	established atomic.Int64
}

// Ready tells whether this replica leads and has applied its term's barrier.
func (l *leadership) Ready() bool { return l.ready.Load() && l.raft.IsLeader() }

// run follows leadership until ctx ends. It is level-triggered: every signal re-reads the
// current state, so a lost or coalesced signal cannot leave loops running on a follower.
func (l *leadership) run(ctx context.Context) error {
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		leader := l.raft.IsLeader()
		switch {
		case leader && stop == nil:
			if err := l.barrier(ctx); err != nil {
				break // lost leadership or stopping; re-evaluated below
			}
			if !l.raft.IsLeader() {
				break
			}
			l.ready.Store(true)
			l.established.Add(1)
			stop = l.startLoops(ctx)
			l.logger.Info("leadership established")
		case !leader && stop != nil:
			l.ready.Store(false)
			stop()
			stop = nil
			l.logger.Info("leadership lost; leader loops stopped")
		}
		select {
		case <-ctx.Done():
			l.ready.Store(false)
			return nil
		case <-l.raft.LeadershipChanges():
		case <-tick.C:
		}
	}
}

func (l *leadership) barrier(ctx context.Context) error {
	for {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.raft.Barrier(bctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !l.raft.IsLeader() {
			return err
		}
		l.logger.Warn("leader barrier failed; retrying", logkey.Err, err)
	}
}

func (l *leadership) startLoops(parent context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	for _, loop := range l.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := loop.Run(ctx)
				if ctx.Err() != nil {
					return
				}
				l.logger.Error("leader loop ended; restarting", "loop", loop.Name, logkey.Err, err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}
