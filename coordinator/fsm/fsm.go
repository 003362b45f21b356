// Package fsm is the coordinator's raft.FSM: it decodes each committed log entry and applies
// it to the state tables, and it snapshots and restores every table.
//
// Apply is deterministic: no clock, randomness, network or goroutines. Times, IDs and secrets'
// hashes are chosen by the service before the command is proposed and travel inside it.
// See DESIGN.md beside this file for the invariants.
package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	"github.com/deployme/deployme/internal/logkey"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// FSM applies commands to the state. Readers use Read; Apply is the only writer.
type FSM struct {
	logger *slog.Logger

	mu sync.RWMutex
	st *state.State

	applied atomic.Uint64

	// changed is closed and replaced after every applied entry, so watchers (event streams)
	// wake up without polling.
	changedMu sync.Mutex
	changed   chan struct{}
}

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM over an empty state.
func New(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{logger: logger, st: state.New(), changed: make(chan struct{})}
}

// Read runs fn with the state under a read lock. fn must not keep or modify what it sees.
func (f *FSM) Read(fn func(*state.State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// AppliedIndex is the index of the last entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Changed returns a channel closed at the next applied entry.
func (f *FSM) Changed() <-chan struct{} {
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	return f.changed
}

func (f *FSM) notify() {
	f.changedMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.changedMu.Unlock()
}

// Apply applies one committed entry. Its result is what the proposer's Apply returns: the
// stored object on success, a *state.Error for a refused write.
func (f *FSM) Apply(l *raft.Log) any {
	defer f.notify()
	defer f.applied.Store(l.Index)
	if l.Type != raft.LogCommand {
		return nil
	}
	t, msg, err := command.Decode(l.Data)
	if err != nil {
		if errors.Is(err, command.ErrUnknownType) && t&command.IgnoreIfUnknown != 0 {
			f.logger.Warn("skipping unknown advisory command", logkey.CommandType, t.String(), logkey.RaftIndex, l.Index)
			return nil
		}
		// Carrying on would make this replica diverge from the ones that understood the
		// entry; stopping is the only safe answer. It means an older binary is running
		// against a newer log.
		panic(fmt.Sprintf("fsm: cannot apply log entry %d: %v", l.Index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dispatch(msg)
}

func (f *FSM) dispatch(msg proto.Message) any {
	switch m := msg.(type) {
	case *raftcmdv1.Bootstrap:
		return f.applyBootstrap(m)
	case *raftcmdv1.CreateToken:
		return f.applyCreateToken(m)
	case *raftcmdv1.DeleteToken:
		return f.applyDeleteToken(m)
	case *raftcmdv1.CreateInfra:
		return f.applyCreateInfra(m)
	case *raftcmdv1.DeleteInfra:
		return f.applyDeleteInfra(m)
	case *raftcmdv1.CreateJoinToken:
		return f.applyCreateJoinToken(m)
	case *raftcmdv1.DeleteJoinToken:
		return f.applyDeleteJoinToken(m)
	case *raftcmdv1.RegisterHost:
		return f.applyRegisterHost(m)
	case *raftcmdv1.DecommissionHost:
		return f.applyDecommissionHost(m)
	case *raftcmdv1.AcceptHost:
		return f.applyAcceptHost(m)
	case *raftcmdv1.SetVIPHolder:
		return f.applySetVIPHolder(m)
	case *raftcmdv1.ReportVIPStatus:
		return f.applyReportVIPStatus(m)
	case *raftcmdv1.RecordBoot:
		return f.applyRecordBoot(m)
	case *raftcmdv1.SetMachineBoot:
		return f.applySetMachineBoot(m)
	case *raftcmdv1.AllocateLease:
		return f.applyAllocateLease(m)
	case *raftcmdv1.SetHostNetwork:
		return f.applySetHostNetwork(m)
	case *raftcmdv1.ReplaceWorker:
		return f.applyReplaceWorker(m)
	case *raftcmdv1.RollNode:
		return f.applyRollNode(m)
	case *raftcmdv1.CreateCluster:
		return f.applyCreateCluster(m)
	case *raftcmdv1.PatchCluster:
		return f.applyPatchCluster(m)
	case *raftcmdv1.UpgradeCluster:
		return f.applyUpgradeCluster(m)
	case *raftcmdv1.DeleteCluster:
		return f.applyDeleteCluster(m)
	case *raftcmdv1.SetClusterStatus:
		return f.applySetClusterStatus(m)
	case *raftcmdv1.SetNodeState:
		return f.applySetNodeState(m)
	case *raftcmdv1.SetMember:
		return f.applySetMember(m)
	case *raftcmdv1.RemoveMember:
		return f.applyRemoveMember(m)
	case *raftcmdv1.Idempotent:
		return f.applyIdempotent(m)
	case *raftcmdv1.SetAgentCA:
		return f.applySetAgentCA(m)
	case *raftcmdv1.RegisterAgent:
		return f.applyRegisterAgent(m)
	case *raftcmdv1.SetHostLiveness:
		return f.applySetHostLiveness(m)
	case *raftcmdv1.SetClusterPKI:
		return f.applySetClusterPKI(m)
	case *raftcmdv1.DispatchStep:
		return f.applyDispatchStep(m)
	case *raftcmdv1.ReportStep:
		return f.applyReportStep(m)
	}
	// command.New and this switch list the same types; reaching here is a programming error
	// caught by the codec test that applies every type.
	panic(fmt.Sprintf("fsm: no apply function for %T", msg))
}
