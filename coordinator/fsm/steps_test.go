package fsm_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/fsm"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// stepRun drives one step of one node through dispatch and a final report.
func (r *replay) stepRun(host, step string, attempt int32, executor, final string) {
	r.t.Helper()
	m := &raftcmdv1.DispatchStep{HostId: host, Step: step, Attempt: attempt, Executor: executor, At: r.at()}
	if step == state.StepCredentials {
		m.Cred = &raftcmdv1.JoinCred{TokenSealed: []byte("sealed"), ExpiresAt: r.at() + 1e12, KeyringId: "k"}
	}
	r.ok(command.TypeDispatchStep, m)
	r.ok(command.TypeReportStep, &raftcmdv1.ReportStep{Reporter: executor, StepId: r.sid(host, step, int(attempt)), State: final, Reason: "x", At: r.at()})
}

func refusedKind(t *testing.T, res any) state.Kind {
	t.Helper()
	e, ok := res.(*state.Error)
	if !ok {
		t.Fatalf("accepted, want a refusal: %v", res)
	}
	return e.Kind
}

// TestInitRunsOncePerCluster: once init has succeeded, no command, however it is built,
// starts another init on that cluster; a second dispatch of the same attempt (two leaders,
// a retried command) is refused too.
func TestInitRunsOncePerCluster(t *testing.T) {
	r := newReplay(t)
	r.ok(command.TypeBootstrap, bootstrapCmd())
	for i := range 2 {
		r.ok(command.TypeRegisterHost, r.hostCmd("host_"+string(rune('a'+i)), fsm.ManagedInfraID, 4, 8))
	}
	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 1, "small"))
	var cp, w string
	for _, n := range r.nodes("cls_a") {
		if n.Role == state.RoleInitControlPlane {
			cp = n.HostID
		} else {
			w = n.HostID
		}
	}
	r.stepRun(cp, state.StepPreflight, 1, cp, state.StepSucceeded)
	r.stepRun(cp, state.StepPrepare, 1, cp, state.StepSucceeded)
	r.stepRun(cp, state.StepPKI, 1, cp, state.StepSucceeded)

	initCmd := &raftcmdv1.DispatchStep{HostId: cp, Step: state.StepInit, Attempt: 1, Executor: cp, At: r.at()}
	r.ok(command.TypeDispatchStep, initCmd)
	if k := refusedKind(t, r.apply(command.TypeDispatchStep, initCmd)); k != state.KindConflict {
		t.Errorf("second dispatch of the same init attempt: %v, want conflict", k)
	}
	r.ok(command.TypeReportStep, &raftcmdv1.ReportStep{Reporter: cp, StepId: r.sid(cp, state.StepInit, 1), State: state.StepSucceeded, At: r.at()})
	for attempt := int32(1); attempt <= 3; attempt++ {
		m := &raftcmdv1.DispatchStep{HostId: cp, Step: state.StepInit, Attempt: attempt, Executor: cp, At: r.at()}
		if k := refusedKind(t, r.apply(command.TypeDispatchStep, m)); k != state.KindConflict {
			t.Errorf("init attempt %d after success: %v, want conflict", attempt, k)
		}
	}
	// A late duplicate report, and one from the wrong host, change nothing.
	refusedKind(t, r.apply(command.TypeReportStep, &raftcmdv1.ReportStep{Reporter: cp, StepId: r.sid(cp, state.StepInit, 1), State: state.StepFailed, At: r.at()}))
	r.f.Read(func(st *state.State) {
		c, _ := st.Cluster("cls_a")
		if c.InitHost != cp {
			t.Errorf("InitHost = %q, want %q", c.InitHost, cp)
		}
	})

	// The worker: its token is minted on the control plane, then it joins.
	r.stepRun(w, state.StepPreflight, 1, w, state.StepSucceeded)
	r.stepRun(w, state.StepPrepare, 1, w, state.StepSucceeded)
	if k := refusedKind(t, r.apply(command.TypeDispatchStep, &raftcmdv1.DispatchStep{HostId: w, Step: state.StepCredentials, Attempt: 1, Executor: cp, At: r.at()})); k != state.KindInvalid {
		t.Errorf("credentials without a token: %v, want invalid", k)
	}
	r.stepRun(w, state.StepCredentials, 1, cp, state.StepSucceeded)
	r.stepRun(w, state.StepJoin, 1, w, state.StepFailed)
	// A new token: the failed join goes back to pending with it.
	r.stepRun(w, state.StepCredentials, 2, cp, state.StepSucceeded)
	r.stepRun(w, state.StepJoin, 2, w, state.StepSucceeded)
	r.stepRun(w, state.StepReady, 1, w, state.StepSucceeded)
	r.f.Read(func(st *state.State) {
		n, _ := st.Node(w)
		if n.State != state.NodeJoined {
			t.Errorf("worker state %s, want joined", n.State)
		}
	})

	// Deletion: each node resets, its host comes back, and the last one takes the cluster.
	r.ok(command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: "cls_a", At: r.at()})
	r.stepRun(cp, state.StepReset, 1, cp, state.StepSucceeded)
	r.f.Read(func(st *state.State) {
		if _, ok := st.Cluster("cls_a"); !ok {
			t.Error("cluster gone while a node is still being reset")
		}
	})
	r.stepRun(w, state.StepReset, 1, w, state.StepSucceeded)
	r.f.Read(func(st *state.State) {
		if _, ok := st.Cluster("cls_a"); ok {
			t.Error("cluster still there after every node was reset")
		}
		for _, id := range []string{cp, w} {
			h, _ := st.Host(id)
			if h.State != state.HostAvailable || h.ClusterID != "" {
				t.Errorf("host %s: %s %q, want available and free", id, h.State, h.ClusterID)
			}
		}
	})
}

// sid is the step id of an attempt of a step of the node on host.
func (r *replay) sid(host, step string, attempt int) string {
	r.t.Helper()
	var id string
	r.f.Read(func(st *state.State) {
		n, ok := st.Node(host)
		if !ok {
			r.t.Fatalf("host %s is no node", host)
		}
		id = n.StepID(step, attempt)
	})
	return id
}

// An agent's update is bounded before it is stored, whatever the agent sends.
func TestStepReportIsBounded(t *testing.T) {
	r := newReplay(t)
	r.ok(command.TypeBootstrap, bootstrapCmd())
	r.ok(command.TypeRegisterHost, r.hostCmd("host_a", fsm.ManagedInfraID, 4, 8))
	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 0, "small"))
	r.ok(command.TypeDispatchStep, &raftcmdv1.DispatchStep{HostId: "host_a", Step: state.StepPreflight, Attempt: 1, Executor: "host_a", At: r.at()})
	big := "x" + strings.Repeat("é", 100_000) // odd length: a cut at a byte count lands mid-rune
	r.ok(command.TypeReportStep, &raftcmdv1.ReportStep{Reporter: "host_a", StepId: r.sid("host_a", state.StepPreflight, 1),
		State: state.StepFailed, Message: big, Reason: big, OutputTail: big, At: r.at()})
	r.f.Read(func(st *state.State) {
		n, _ := st.Node("host_a")
		s := n.Steps[0]
		if len(s.Reason) > 128 || len(s.Output) > 4<<10 || !utf8.ValidString(s.Reason) || !utf8.ValidString(s.Output) {
			t.Errorf("stored reason %d bytes, output %d bytes (valid UTF-8: %v %v)", len(s.Reason), len(s.Output), utf8.ValidString(s.Reason), utf8.ValidString(s.Output))
		}
		for _, e := range st.EventsOf("cls_a", 0) {
			if len(e.Message) > 8<<10 {
				t.Errorf("event %s of %d bytes", e.Type, len(e.Message))
			}
		}
	})
}

// TestResume: a PATCH that changes nothing on a cluster in error resumes its operation only
// when it says so (entries written before the flag existed replay as the no-ops they were);
// failed steps get a fresh retry budget, succeeded ones stay done.
func TestResume(t *testing.T) {
	r := newReplay(t)
	r.ok(command.TypeBootstrap, bootstrapCmd())
	r.ok(command.TypeRegisterHost, r.hostCmd("host_a", fsm.ManagedInfraID, 4, 8))
	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 0, "small"))
	cp := r.nodes("cls_a")[0].HostID
	r.stepRun(cp, state.StepPreflight, 1, cp, state.StepSucceeded)
	for a := int32(1); a <= 3; a++ {
		r.stepRun(cp, state.StepPrepare, a, cp, state.StepFailed)
	}
	r.setStatus("cls_a", state.StatusError)

	old := r.patchCmd("cls_a", 0, "small", "")
	r.ok(command.TypePatchCluster, old)
	if c := r.cluster("cls_a"); c.Status != state.StatusError {
		t.Fatalf("a PATCH without resume changed the status to %s", c.Status)
	}
	m := r.patchCmd("cls_a", 0, "small", "")
	m.Resume = true
	r.ok(command.TypePatchCluster, m)
	if c := r.cluster("cls_a"); c.Status != state.StatusProvisioning || c.StatusReason != "" {
		t.Errorf("after resume: %s %q, want provisioning (no init yet) without reason", c.Status, c.StatusReason)
	}
	n := r.nodes("cls_a")[0]
	pre, prep := n.Steps[n.StepIndex(state.StepPreflight)], n.Steps[n.StepIndex(state.StepPrepare)]
	if pre.State != state.StepSucceeded || prep.State != state.StepFailed || prep.Attempt != 3 || prep.Since != 3 {
		t.Errorf("after resume: preflight %v, prepare %v (since %d); want preflight done, prepare failed with a new budget from 3", pre, prep, prep.Since)
	}
	// Resuming a running cluster is a no-op.
	r.setStatus("cls_a", state.StatusRunning)
	m.At = r.at()
	r.ok(command.TypePatchCluster, m)
	if c := r.cluster("cls_a"); c.Status != state.StatusRunning {
		t.Errorf("resume of a running cluster: %s", c.Status)
	}
}

// TestRollWithoutCapacity: when the host a roll needs was taken since the PATCH, the roll
// stops with the reason in the cluster's status (not a refusal the reconciler would repeat
// forever); once a host is free, the same PATCH again resumes it.
func TestRollWithoutCapacity(t *testing.T) {
	r := newReplay(t)
	r.ok(command.TypeBootstrap, bootstrapCmd())
	r.ok(command.TypeRegisterHost, r.hostCmd("host_small", fsm.ManagedInfraID, 2, 4))
	r.ok(command.TypeRegisterHost, r.hostCmd("host_cp", fsm.ManagedInfraID, 2, 4))
	r.ok(command.TypeRegisterHost, r.hostCmd("host_big", fsm.ManagedInfraID, 8, 32))
	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_a", "a", "managed", fsm.ManagedInfraID, 1, 1, "small"))
	r.setStatus("cls_a", state.StatusRunning)
	r.ok(command.TypePatchCluster, r.patchCmd("cls_a", -1, "small", "xlarge"))
	// Another cluster takes the only xlarge host first.
	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_b", "b", "managed", fsm.ManagedInfraID, 1, 0, "xlarge"))
	var worker string
	for _, n := range r.nodes("cls_a") {
		if n.Role == state.RoleWorker {
			worker = n.HostID
		}
	}
	res := r.ok(command.TypeRollNode, &raftcmdv1.RollNode{ClusterId: "cls_a", HostId: worker, Reason: "node size small -> xlarge", Size: sizes["xlarge"], At: r.at()})
	c, ok := res.(*state.Cluster)
	if !ok || c.Status != state.StatusError || !strings.HasPrefix(c.StatusReason, "insufficient_capacity: ") {
		t.Fatalf("roll without a host: %+v, want the cluster in error with insufficient_capacity", res)
	}
	if len(r.nodes("cls_a")) != 2 {
		t.Errorf("%d nodes, want the 2 it had", len(r.nodes("cls_a")))
	}
}
