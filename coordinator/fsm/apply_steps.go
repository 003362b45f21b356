package fsm

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

const simulatedMark = "[simulated] "

// maxOutput bounds the command output kept with a failed step (the agent sends a tail of
// 20 lines; this also bounds a misbehaving one).
const maxOutput = 4 << 10

func (f *FSM) applySetClusterPKI(m *raftcmdv1.SetClusterPKI) any {
	old, ok := f.st.Cluster(m.GetClusterId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetClusterId())
	}
	if old.PKI != nil {
		return old // first one wins: two leaders racing cannot give a cluster two CAs
	}
	c := *old
	c.PKI = &state.ClusterPKI{
		CACert: m.GetCaCert(), CAKeySealed: m.GetCaKeySealed(),
		FrontProxyCACert: m.GetFrontProxyCaCert(), FrontProxyCAKeySealed: m.GetFrontProxyCaKeySealed(),
		EtcdCACert: m.GetEtcdCaCert(), EtcdCAKeySealed: m.GetEtcdCaKeySealed(),
		SAPub: m.GetSaPub(), SAKeySealed: m.GetSaKeySealed(), KeyringID: m.GetKeyringId(),
	}
	at := unixTime(m.GetAt())
	c.UpdatedAt = at
	f.st.PutCluster(&c)
	f.event(c.ID, "", "cluster.pki", "cluster CA, front-proxy CA, etcd CA and service-account key generated", at)
	return &c
}

func (f *FSM) applyDispatchStep(m *raftcmdv1.DispatchStep) any {
	old, ok := f.st.Node(m.GetHostId())
	if !ok {
		return state.NotFound("host %s is not a node of any cluster", m.GetHostId())
	}
	c, ok := f.st.Cluster(old.ClusterID)
	if !ok {
		return state.NotFound("cluster %s not found", old.ClusterID)
	}
	i := old.StepIndex(m.GetStep())
	if i < 0 {
		return state.Conflict("node %s has no step %s", old.HostID, m.GetStep())
	}
	next := old.Next()
	if old.State == state.NodeRemoving {
		next = old.NextRemoval()
	}
	// Two steps run again before a join that needs them: credentials (a fresh token) and
	// etcd-cleanup (before each retry of a control plane's join).
	again := (m.GetStep() == state.StepCredentials || m.GetStep() == state.StepEtcdCleanup) &&
		next > i && old.Steps[next].Name == state.StepJoin
	if next != i && !again {
		return state.Conflict("step %s is not the next step of node %s", m.GetStep(), old.HostID)
	}
	s := old.Steps[i]
	switch {
	case s.State == state.StepRunning:
		return state.Conflict("step %s of node %s is already running (attempt %d)", s.Name, old.HostID, s.Attempt)
	case s.State == state.StepSucceeded && !again:
		return state.Conflict("step %s of node %s has succeeded", s.Name, old.HostID)
	case int(m.GetAttempt()) != s.Attempt+1:
		return state.Conflict("step %s of node %s: attempt %d does not follow %d", s.Name, old.HostID, m.GetAttempt(), s.Attempt)
	case s.Name == state.StepInit && c.InitHost != "":
		// By construction: one kubeadm init per cluster, whoever asks.
		return state.Conflict("cluster %s was initialised on host %s; init cannot run again", c.ID, c.InitHost)
	case s.Name == state.StepCredentials && m.GetCred() == nil:
		return state.Invalid("cred", "a credentials step needs a token")
	}
	if _, ok := f.st.Host(m.GetExecutor()); !ok {
		return state.NotFound("executor host %s not found", m.GetExecutor())
	}
	at := unixTime(m.GetAt())
	n := *old
	n.Steps = append([]state.Step(nil), old.Steps...)
	n.Steps[i] = state.Step{Name: s.Name, State: state.StepRunning, Attempt: int(m.GetAttempt()), Executor: m.GetExecutor(), StartedAt: at}
	if s.Name == state.StepCredentials {
		cr := m.GetCred()
		n.Cred = &state.JoinCred{TokenSealed: cr.GetTokenSealed(), ExpiresAt: unixTime(cr.GetExpiresAt()), KeyringID: cr.GetKeyringId()}
		// A fresh token invalidates a join that failed with the old one: it restarts too.
		if j := n.StepIndex(state.StepJoin); j > i && n.Steps[j].State == state.StepFailed {
			n.Steps[j].State = state.StepPending
		}
	}
	if n.State == state.NodeReserved {
		n.State = state.NodeJoining
	}
	n.Step = s.Name
	n.UpdatedAt = at
	f.st.PutNode(&n)
	msg := fmt.Sprintf("%s started (attempt %d)", s.Name, m.GetAttempt())
	if m.GetExecutor() != n.HostID {
		msg += " on " + m.GetExecutor()
	}
	f.event(n.ClusterID, n.HostID, "step.started", f.simulated(n.HostID, msg), at)
	return &n
}

func (f *FSM) applyReportStep(m *raftcmdv1.ReportStep) any {
	hostID, gen, name, attempt, ok := state.ParseStepID(m.GetStepId())
	if !ok {
		return state.Invalid("step_id", "malformed step id %q", m.GetStepId())
	}
	old, ok := f.st.Node(hostID)
	if !ok {
		return state.NotFound("host %s is not a node of any cluster", hostID)
	}
	i := old.StepIndex(name)
	if i < 0 || old.Gen() != gen || old.Steps[i].Attempt != attempt || old.Steps[i].State != state.StepRunning {
		return state.Conflict("step %s is not running", m.GetStepId())
	}
	s := old.Steps[i]
	if m.GetReporter() != s.Executor {
		return state.Conflict("step %s runs on %s, not %s", m.GetStepId(), s.Executor, m.GetReporter())
	}
	at := unixTime(m.GetAt())
	n := *old
	n.Steps = append([]state.Step(nil), old.Steps...)
	n.UpdatedAt = at
	// Simulated agents mark their own messages; the event gets the mark once, in front.
	// What an agent says is bounded before it is kept: a phase or a reason is a short line.
	m.Message = clip(strings.TrimPrefix(m.GetMessage(), simulatedMark), maxMessage)
	m.Reason = clip(m.GetReason(), maxReason)
	switch m.GetState() {
	case state.StepRunning:
		if m.GetMessage() == "" || m.GetMessage() == s.Phase {
			return old
		}
		n.Steps[i].Phase = m.GetMessage()
		f.st.PutNode(&n)
		f.event(n.ClusterID, n.HostID, "step.progress", f.simulated(hostID, name+": "+m.GetMessage()), at)
		return &n
	case state.StepSucceeded:
		n.Steps[i].State = state.StepSucceeded
		n.Steps[i].EndedAt = at
		n.Steps[i].Reason, n.Steps[i].Output = "", ""
		msg := name + " succeeded"
		if m.GetMessage() != "" {
			msg += ": " + m.GetMessage()
		}
		f.stepEvent(&n, "step.succeeded", msg, s.StartedAt, at)
		return f.stepSucceeded(&n, name, m.GetResults(), at)
	case state.StepFailed:
		n.Steps[i].State = state.StepFailed
		n.Steps[i].EndedAt = at
		n.Steps[i].Reason = m.GetReason()
		n.Steps[i].Output = tail(m.GetOutputTail(), maxOutput)
		f.st.PutNode(&n)
		msg := fmt.Sprintf("%s failed (attempt %d): %s", name, attempt, m.GetReason())
		if m.GetMessage() != "" {
			msg += ": " + m.GetMessage()
		}
		if out := n.Steps[i].Output; out != "" {
			msg += "\n" + out
		}
		f.stepEvent(&n, "step.failed", msg, s.StartedAt, at)
		return &n
	}
	return state.Invalid("state", "unknown step state %q", m.GetState())
}

// stepSucceeded applies what a finished step means for its node and cluster.
func (f *FSM) stepSucceeded(n *state.Node, name string, results map[string]string, at time.Time) any {
	switch name {
	case state.StepEtcdCheck:
		if id := results["etcd_member_id"]; etcdMemberID.MatchString(id) && id != n.EtcdMemberID {
			n.EtcdMemberID = id
			f.event(n.ClusterID, n.HostID, "etcd.member", "control plane on host "+n.HostID+" is etcd member "+id, at)
		}
	case state.StepEtcdRemove:
		f.event(n.ClusterID, n.HostID, "etcd.member_removed", "etcd member "+cmp.Or(n.EtcdMemberID, "of host "+n.HostID)+" removed", at)
		n.EtcdMemberID = ""
	case state.StepEtcdCleanup:
		if r := results["removed"]; r != "" {
			f.event(n.ClusterID, n.HostID, "etcd.member_removed", "stale etcd member(s) "+clip(r, maxMessage)+" of host "+n.HostID+" removed before its join", at)
		}
	case state.StepInit:
		if c, ok := f.st.Cluster(n.ClusterID); ok && c.InitHost == "" {
			nc := *c
			nc.InitHost = n.HostID
			nc.UpdatedAt = at
			f.st.PutCluster(&nc)
		}
	case state.StepReady:
		if n.State != state.NodeRemoving {
			n.State = state.NodeJoined
		}
	case state.StepDrain:
		f.event(n.ClusterID, n.HostID, "node.drained", "node of host "+n.HostID+" cordoned and drained", at)
	case state.StepDeleteNode:
		f.event(n.ClusterID, n.HostID, "node.deleted", "Node object of host "+n.HostID+" deleted from the cluster", at)
	case state.StepReset:
		f.st.PutNode(n)
		f.release(n)
		f.event(n.ClusterID, n.HostID, "node.released", "host "+n.HostID+" reset and released", at)
		f.removeIfDrained(n.ClusterID)
		return nil
	}
	next := n.Next()
	if n.State == state.NodeRemoving {
		next = n.NextRemoval()
	}
	if next < 0 {
		n.Step = ""
	} else {
		n.Step = n.Steps[next].Name
	}
	f.st.PutNode(n)
	f.replaced(n, at)
	return n
}

// etcdMemberID is how etcdctl --hex prints a member id.
var etcdMemberID = regexp.MustCompile(`^[0-9a-f]{1,16}$`)

// removeIfDrained deletes a deleting cluster (and its PKI with it) once its last node is gone.
func (f *FSM) removeIfDrained(clusterID string) {
	c, ok := f.st.Cluster(clusterID)
	if ok && c.Status == state.StatusDeleting && len(f.st.NodesOf(clusterID)) == 0 {
		f.st.DeleteCluster(clusterID)
	}
}

// markRemoving turns a node's plan into its removal: what ran stays for the record, what
// never started is dropped, and the removal steps come last (state.RemovalSteps,
// state.ReplacementSteps). A node already
// removing keeps its removal (a cluster deleted during a scale-down still drains the
// worker it had started on).
func (f *FSM) markRemoving(old *state.Node, at time.Time, removal []string) {
	if old.State == state.NodeRemoving {
		return
	}
	n := *old
	n.State = state.NodeRemoving
	n.Steps = nil
	for _, s := range old.Steps {
		if s.State != state.StepPending && !state.IsRemovalStep(s.Name) {
			n.Steps = append(n.Steps, s)
		}
	}
	for _, name := range removal {
		n.Steps = append(n.Steps, state.Step{Name: name, State: state.StepPending})
	}
	n.Step = n.Steps[n.NextRemoval()].Name
	n.UpdatedAt = at
	f.st.PutNode(&n)
}

func (f *FSM) stepEvent(n *state.Node, typ, msg string, started, at time.Time) {
	e := state.Event{ClusterID: n.ClusterID, HostID: n.HostID, Type: typ, Message: f.simulated(n.HostID, msg), Time: at}
	if !started.IsZero() {
		e.DurationMS = at.Sub(started).Milliseconds()
	}
	f.st.AppendEvent(e)
}

// simulated marks events of development-mode hosts, so nobody mistakes them for real ones.
func (f *FSM) simulated(hostID, msg string) string {
	if h, ok := f.st.Host(hostID); ok && h.Labels["simulated"] == "true" {
		return simulatedMark + msg
	}
	return msg
}

// Bounds of what an agent's step update may store.
const (
	maxMessage = 512
	maxReason  = 128
)

// clip keeps the first n bytes of s (on a rune boundary).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return s
}
