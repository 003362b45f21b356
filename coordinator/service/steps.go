package service

import (
	"context"
	"errors"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/scheduler"
	"github.com/deployme/deployme/coordinator/state"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// SetClusterPKI stores a cluster's generated PKI (the reconciler's write).
func (s *Service) SetClusterPKI(ctx context.Context, m *raftcmdv1.SetClusterPKI) error {
	_, err := s.apply(ctx, command.TypeSetClusterPKI, m, m.GetClusterId())
	return err
}

// DispatchStep starts a step attempt (the reconciler's write).
func (s *Service) DispatchStep(ctx context.Context, m *raftcmdv1.DispatchStep) error {
	_, err := s.apply(ctx, command.TypeDispatchStep, m, m.GetHostId())
	return err
}

// ErrStaleReport means a step report was about an attempt that is no longer current: a
// harmless late duplicate.
var ErrStaleReport = errors.New("stale step report")

// ReportStep records what the agent on host reporter said about a step. Reports about
// attempts that are no longer current come back as ErrStaleReport.
func (s *Service) ReportStep(ctx context.Context, reporter string, u *agentv1.StepUpdate) error {
	_, err := s.apply(ctx, command.TypeReportStep, &raftcmdv1.ReportStep{
		Reporter: reporter, StepId: u.GetStepId(), State: u.GetState(), Message: u.GetMessage(),
		Reason: u.GetReason(), OutputTail: u.GetOutputTail(), Results: u.GetResults(), At: unixNano(s.now()),
	}, u.GetStepId())
	if refused(err) {
		return errors.Join(ErrStaleReport, err)
	}
	return err
}

// refused tells whether the state machine refused a write (as opposed to not knowing).
func refused(err error) bool {
	var ve *v1.Error
	if !errors.As(err, &ve) {
		return false
	}
	switch ve.Code {
	case v1.CodeConflict, v1.CodeNotFound, v1.CodeInvalidRequest:
		return true
	}
	return false
}

// RunningExecutors returns the hosts that have at least one step to run now.
func (s *Service) RunningExecutors() map[string]bool {
	out := map[string]bool{}
	s.store.Read(func(st *state.State) {
		for _, c := range st.Clusters() {
			for _, n := range st.NodesOf(c.ID) {
				for _, step := range n.Steps {
					if step.State == state.StepRunning {
						out[step.Executor] = true
					}
				}
			}
		}
	})
	return out
}

// Assignments returns the steps host hostID must run now, ready to send.
func (s *Service) Assignments(hostID string) ([]*agentv1.StepAssignment, error) {
	var out []*agentv1.StepAssignment
	var err error
	s.store.Read(func(st *state.State) { out, err = scheduler.Assignments(st, hostID, s.cfg.Keyring, s.now()) })
	return out, err
}

// Changed is closed at the next state change.
func (s *Service) Changed() <-chan struct{} { return s.store.Changed() }

// RollNode places the node that replaces a host's (the reconciler's write), at the
// cluster's node size from the catalog.
func (s *Service) RollNode(ctx context.Context, m *raftcmdv1.RollNode) error {
	var size string
	s.store.Read(func(st *state.State) {
		if c, ok := st.Cluster(m.GetClusterId()); ok {
			size = c.NodeSize
		}
	})
	m.Size = s.sizeMsg(size)
	_, err := s.apply(ctx, command.TypeRollNode, m, m.GetClusterId())
	return err
}

// ReplaceWorker replaces a worker whose host stayed offline (the reconciler's write); the new
// worker is placed at the cluster's node size from the catalog.
func (s *Service) ReplaceWorker(ctx context.Context, m *raftcmdv1.ReplaceWorker) error {
	var size string
	s.store.Read(func(st *state.State) {
		if c, ok := st.Cluster(m.GetClusterId()); ok {
			size = c.NodeSize
		}
	})
	m.Size = s.sizeMsg(size)
	_, err := s.apply(ctx, command.TypeReplaceWorker, m, m.GetClusterId())
	return err
}
