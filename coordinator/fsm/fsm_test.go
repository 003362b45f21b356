package fsm_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/fsm"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// The FSM is driven directly with raft.Log entries built by command.Encode, as Raft would
// deliver them: no Raft, no service, no clock.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const gib = int64(1) << 30

// sizes are the service's default node-size minimums, plus one no host can take.
var sizes = map[string]*raftcmdv1.Size{
	"small":  {Name: "small", Cpus: 2, MemoryBytes: 4 * gib},
	"medium": {Name: "medium", Cpus: 4, MemoryBytes: 8 * gib},
	"large":  {Name: "large", Cpus: 4, MemoryBytes: 16 * gib},
	"xlarge": {Name: "xlarge", Cpus: 8, MemoryBytes: 32 * gib},
	"huge":   {Name: "huge", Cpus: 256, MemoryBytes: 1024 * gib},
}

// replay is an FSM plus the log applied to it, so the same log can be replayed elsewhere.
type replay struct {
	t       testing.TB
	f       *fsm.FSM
	entries []*raft.Log
	results []any
	// applied counts the entries of each type the FSM accepted (not refused).
	applied map[command.Type]int
	clock   int
	// hostSeq gives every registered host its own MAC and address.
	hostSeq int
}

func newReplay(t testing.TB) *replay {
	return &replay{t: t, f: fsm.New(nil), applied: map[command.Type]int{}}
}

// at returns a fresh, increasing command time, as the service would choose.
func (r *replay) at() int64 {
	r.clock++
	return t0.Add(time.Duration(r.clock) * time.Second).UnixNano()
}

// apply encodes and applies one command and returns the FSM's result.
func (r *replay) apply(typ command.Type, msg proto.Message) any {
	r.t.Helper()
	data, err := command.Encode(typ, msg)
	if err != nil {
		r.t.Fatalf("encode %s: %v", typ, err)
	}
	entry := &raft.Log{Index: uint64(len(r.entries) + 1), Term: 1, Type: raft.LogCommand, Data: data}
	r.entries = append(r.entries, entry)
	var res any
	func() {
		// A panic here would abort the whole test binary; report it as this test's failure
		// (a type missing from the FSM's switch panics, for one).
		defer func() {
			if p := recover(); p != nil {
				r.t.Fatalf("applying %s panicked: %v", typ, p)
			}
		}()
		res = r.f.Apply(entry)
	}()
	r.results = append(r.results, res)
	if _, refused := res.(*state.Error); !refused {
		r.applied[typ]++
	}
	return res
}

// ok applies a command that must be accepted.
func (r *replay) ok(typ command.Type, msg proto.Message) any {
	r.t.Helper()
	res := r.apply(typ, msg)
	if e, refused := res.(*state.Error); refused {
		r.t.Fatalf("%s refused: %v", typ, e)
	}
	return res
}

// nodes returns a cluster's nodes as the state lists them.
func (r *replay) nodes(clusterID string) []*state.Node {
	var out []*state.Node
	r.f.Read(func(st *state.State) { out = st.NodesOf(clusterID) })
	return out
}

func (r *replay) cluster(id string) *state.Cluster {
	var c *state.Cluster
	r.f.Read(func(st *state.State) { c, _ = st.Cluster(id) })
	return c
}

func (r *replay) host(id string) *state.Host {
	var h *state.Host
	r.f.Read(func(st *state.State) { h, _ = st.Host(id) })
	return h
}

// --- command builders

func bootstrapCmd() *raftcmdv1.Bootstrap {
	return &raftcmdv1.Bootstrap{
		AdminToken:   &raftcmdv1.Token{Id: "tok_admin", Name: "bootstrap-admin", Hash: "hash-admin", Permissions: []string{"admin", "read", "write"}, Scope: "*", Plan: "enterprise", CreatedAt: t0.UnixNano()},
		ManagedInfra: &raftcmdv1.Infra{Id: fsm.ManagedInfraID, Name: "managed", Kind: "managed", CreatedAt: t0.UnixNano()},
	}
}

func tokenCmd(id, hash string) *raftcmdv1.CreateToken {
	return &raftcmdv1.CreateToken{Token: &raftcmdv1.Token{Id: id, Name: id, Hash: hash, Permissions: []string{"read"}, Scope: "*", Plan: "community", CreatedAt: t0.UnixNano()}}
}

func infraCmd(id, name, kind, vipPool string) *raftcmdv1.CreateInfra {
	return &raftcmdv1.CreateInfra{Infra: &raftcmdv1.Infra{Id: id, Name: name, Kind: kind, VipPool: vipPool, CreatedAt: t0.UnixNano(),
		Network: &raftcmdv1.Network{Cidr: "10.99.0.0/16", Gateway: "10.99.0.1", Dns: []string{"10.99.0.2"}, Mtu: 1500}}}
}

func joinTokenCmd(id, infraID, hash string) *raftcmdv1.CreateJoinToken {
	return &raftcmdv1.CreateJoinToken{JoinToken: &raftcmdv1.JoinToken{Id: id, InfraId: infraID, Hash: hash, ExpiresAt: t0.Add(24 * time.Hour).UnixNano(), MaxUses: 10, CreatedAt: t0.UnixNano()}}
}

// hostCmd registers an available host with an address and optional rack/zone labels.
func (r *replay) hostCmd(id, infraID string, cpus int32, memGiB int64, labels ...string) *raftcmdv1.RegisterHost {
	r.hostSeq++
	seq := r.hostSeq
	h := &raftcmdv1.Host{
		Id: id, InfraId: infraID, Hostname: "n-" + id, State: state.HostAvailable, Cpus: cpus, MemoryBytes: memGiB * gib,
		Disks: []*raftcmdv1.Disk{{Name: "vda", SizeBytes: 100 * gib}},
		Nics:  []*raftcmdv1.NIC{{Name: "eth0", Mac: fmt.Sprintf("52:54:00:00:%02x:%02x", seq>>8&0xff, seq&0xff), Addresses: []string{fmt.Sprintf("10.99.%d.%d/16", seq/250, seq%250+1)}, Up: true}},
	}
	if len(labels) > 0 {
		h.Labels = map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			h.Labels[labels[i]] = labels[i+1]
		}
	}
	return &raftcmdv1.RegisterHost{Host: h, At: r.at()}
}

func (r *replay) clusterCmd(id, name, phase, infraID string, cps, workers int32, size string) *raftcmdv1.CreateCluster {
	return &raftcmdv1.CreateCluster{
		Cluster: &raftcmdv1.Cluster{Id: id, Name: name, Phase: phase, ControlPlanes: cps, Workers: workers, KubernetesVersion: "v1.37.2", InfraId: infraID},
		Size:    sizes[size],
		At:      r.at(),
	}
}

func (r *replay) setStatus(id, status string) {
	r.t.Helper()
	r.ok(command.TypeSetClusterStatus, &raftcmdv1.SetClusterStatus{Id: id, Status: status, At: r.at()})
}

func (r *replay) setNode(hostID, nodeState, step string) {
	r.t.Helper()
	r.ok(command.TypeSetNodeState, &raftcmdv1.SetNodeState{HostId: hostID, State: nodeState, Step: step, At: r.at()})
}

// patchCmd changes workers (when workers >= 0) and/or the node size (when newSize != "")
// of a cluster whose current size is curSize.
func (r *replay) patchCmd(id string, workers int32, curSize, newSize string) *raftcmdv1.PatchCluster {
	m := &raftcmdv1.PatchCluster{Id: id, WorkerSize: sizes[curSize], At: r.at()}
	if workers >= 0 {
		m.Workers = proto.Int32(workers)
	}
	if newSize != "" {
		m.Size = sizes[newSize]
	}
	return m
}

// fill builds a realistic history that applies every command type and leaves something in
// every table. Tests build on it; TestEveryTypeApplied and TestSnapshotRoundTrip check that
// it keeps doing both as commands and tables are added.
func fill(r *replay) {
	r.t.Helper()
	r.ok(command.TypeBootstrap, bootstrapCmd())

	ci := tokenCmd("tok_ci", "hash-ci")
	ci.Token.ExpiresAt = t0.Add(90 * 24 * time.Hour).UnixNano()
	ci.Token.Scope = "cluster:*"
	r.ok(command.TypeCreateToken, ci)
	r.ok(command.TypeCreateToken, tokenCmd("tok_gone", "hash-gone"))
	r.ok(command.TypeDeleteToken, &raftcmdv1.DeleteToken{Id: "tok_gone"})

	r.ok(command.TypeCreateInfra, infraCmd("infra_dc", "dc1", "onpremise", "10.20.0.0/29"))
	r.ok(command.TypeCreateInfra, infraCmd("infra_gone", "gone", "baremetal", ""))
	r.ok(command.TypeDeleteInfra, &raftcmdv1.DeleteInfra{Id: "infra_gone"})

	r.ok(command.TypeCreateJoinToken, joinTokenCmd("jt_dc", "infra_dc", "hash-jt-dc"))
	r.ok(command.TypeCreateJoinToken, joinTokenCmd("jt_gone", "infra_dc", "hash-jt-gone"))
	r.ok(command.TypeDeleteJoinToken, &raftcmdv1.DeleteJoinToken{Id: "jt_gone"})

	for i := range 8 {
		cpus, mem := int32(4), int64(8)
		if i >= 4 {
			cpus, mem = 8, 32
		}
		r.ok(command.TypeRegisterHost, r.hostCmd(fmt.Sprintf("host_m%d", i), fsm.ManagedInfraID, cpus, mem, "rack", fmt.Sprintf("r%d", i%3), "zone", fmt.Sprintf("z%d", i%2)))
	}
	for i := range 4 {
		r.ok(command.TypeRegisterHost, r.hostCmd(fmt.Sprintf("host_d%d", i), "infra_dc", 4, 16))
	}
	discovered := r.hostCmd("host_new", "infra_dc", 2, 4)
	discovered.Host.State = state.HostDiscovered
	r.ok(command.TypeRegisterHost, discovered)
	// Another one is accepted by the operator; host_new stays discovered, so the snapshot
	// still holds a discovered host.
	accepted := r.hostCmd("host_accepted", "infra_dc", 2, 4)
	accepted.Host.State = state.HostDiscovered
	r.ok(command.TypeRegisterHost, accepted)
	r.ok(command.TypeAcceptHost, &raftcmdv1.AcceptHost{Id: "host_accepted", At: r.at()})
	// A re-registration refreshes the inventory (a new agent version here).
	again := r.hostCmd("host_m0", fsm.ManagedInfraID, 4, 8, "rack", "r0", "zone", "z0")
	again.Host.AgentVersion = "v0.2.0"
	r.ok(command.TypeRegisterHost, again)
	r.ok(command.TypeRegisterHost, r.hostCmd("host_old", fsm.ManagedInfraID, 1, 1))
	r.ok(command.TypeDecommissionHost, &raftcmdv1.DecommissionHost{Id: "host_old", At: r.at()})

	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_prod", "prod", "managed", fsm.ManagedInfraID, 1, 2, "small"))
	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_dc", "dc", "onpremise", "infra_dc", 1, 1, "medium"))
	for _, n := range r.nodes("cls_prod") {
		r.setNode(n.HostID, state.NodeJoining, "kubeadm")
		r.setNode(n.HostID, state.NodeJoined, "")
	}
	r.setStatus("cls_prod", state.StatusRunning)
	r.ok(command.TypePatchCluster, r.patchCmd("cls_prod", 3, "small", ""))
	r.setStatus("cls_prod", state.StatusRunning)
	r.ok(command.TypeUpgradeCluster, &raftcmdv1.UpgradeCluster{Id: "cls_prod", KubernetesVersion: "v1.38.0", Artifacts: testArtifacts(), At: r.at()})
	r.setStatus("cls_prod", state.StatusRunning)

	r.ok(command.TypeCreateCluster, r.clusterCmd("cls_gone", "gone", "managed", fsm.ManagedInfraID, 1, 1, "small"))
	r.ok(command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: "cls_gone", At: r.at()})

	// cls_dc gets its PKI and its first control plane starts its plan: preflight passes,
	// prepare fails once (the failure, its reason and output are kept).
	r.ok(command.TypeSetClusterPKI, &raftcmdv1.SetClusterPKI{ClusterId: "cls_dc", CaCert: []byte("ca"), CaKeySealed: []byte("sealed"), KeyringId: "k1", At: r.at()})
	dcInit := r.nodes("cls_dc")[0].HostID
	r.ok(command.TypeDispatchStep, &raftcmdv1.DispatchStep{HostId: dcInit, Step: state.StepPreflight, Attempt: 1, Executor: dcInit, At: r.at()})
	r.ok(command.TypeReportStep, &raftcmdv1.ReportStep{Reporter: dcInit, StepId: r.sid(dcInit, state.StepPreflight, 1), State: state.StepRunning, Message: "swap", At: r.at()})
	r.ok(command.TypeReportStep, &raftcmdv1.ReportStep{Reporter: dcInit, StepId: r.sid(dcInit, state.StepPreflight, 1), State: state.StepSucceeded, At: r.at()})
	r.ok(command.TypeDispatchStep, &raftcmdv1.DispatchStep{HostId: dcInit, Step: state.StepPrepare, Attempt: 1, Executor: dcInit, At: r.at()})
	r.ok(command.TypeReportStep, &raftcmdv1.ReportStep{Reporter: dcInit, StepId: r.sid(dcInit, state.StepPrepare, 1), State: state.StepFailed,
		Reason: "io", OutputTail: "permission denied", At: r.at()})
	// cls_dc's endpoint is a VIP of infra_dc's pool: its first control plane takes it.
	r.ok(command.TypeSetVIPHolder, &raftcmdv1.SetVIPHolder{ClusterId: "cls_dc", HostId: dcInit, Epoch: 1, Reason: "first control plane", At: r.at()})
	r.ok(command.TypeReportVIPStatus, &raftcmdv1.ReportVIPStatus{ClusterId: "cls_dc", HostId: dcInit, Epoch: 1, Holding: true, At: r.at()})

	r.ok(command.TypeSetAgentCA, &raftcmdv1.SetAgentCA{CertDer: []byte("ca-cert"), KeyDer: []byte("ca-key"), At: r.at()})
	// An agent registers with the dc1 join token (10 uses): the host appears and the use counts.
	// A machine network-boots (a full-mode lease, its script) and its agent registers.
	r.ok(command.TypeAllocateLease, &raftcmdv1.AllocateLease{Mac: "52:54:00:AA:00:01", InfraId: "infra_dc", RangeStart: "10.20.0.100",
		RangeEnd: "10.20.0.110", DurationNs: int64(time.Hour), At: r.at()})
	r.ok(command.TypeRecordBoot, &raftcmdv1.RecordBoot{Mac: "52:54:00:aa:00:01", InfraId: "infra_dc", Kind: "boot.script", Detail: "agent", LoopLimit: 5, At: r.at()})
	r.ok(command.TypeRegisterAgent, &raftcmdv1.RegisterAgent{JoinTokenId: "jt_dc", At: r.at(),
		Host: &raftcmdv1.Host{Id: "host_agent1", InfraId: "infra_dc", Hostname: "agent1", Cpus: 4, MemoryBytes: 8 << 30,
			Nics: []*raftcmdv1.NIC{{Name: "eth0", Mac: "52:54:00:aa:00:01", Addresses: []string{"10.20.0.100/24"}, Up: true}}}})
	r.ok(command.TypeSetMachineBoot, &raftcmdv1.SetMachineBoot{Mac: "52:54:00:aa:00:01", NextBoot: "disk", At: r.at()})
	r.ok(command.TypeSetHostNetwork, &raftcmdv1.SetHostNetwork{HostId: "host_agent1", ConfigJson: []byte(`{"bridges":[{"name":"br0"}]}`), At: r.at()})

	// Its lease expires, then it comes back: offline and back to available.
	r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: "host_agent1", Online: false, At: r.at()})
	r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: "host_agent1", Online: true, LastSeen: r.at(), At: r.at()})

	r.ok(command.TypeSetMember, &raftcmdv1.SetMember{Id: "n1", RaftAddr: "10.0.0.1:7000", HttpAddr: "10.0.0.1:8080", GrpcAddr: "10.0.0.1:9090"})
	r.ok(command.TypeSetMember, &raftcmdv1.SetMember{Id: "n2", RaftAddr: "10.0.0.2:7000"})
	r.ok(command.TypeRemoveMember, &raftcmdv1.RemoveMember{Id: "n2"})

	// A request with an Idempotency-Key, then its retry: applied once, answered twice.
	idem := r.idempotentCmd("tok_admin/k1", "POST /v1/tokens a", command.TypeCreateToken, tokenCmd("tok_idem", "hash-idem"))
	r.ok(command.TypeIdempotent, idem)
	idem.At = r.at()
	r.ok(command.TypeIdempotent, idem)
	// A refused request's outcome is recorded too, details included, so its retry is
	// refused the same way.
	r.apply(command.TypeIdempotent, r.idempotentCmd("tok_admin/k2", "POST /v1/clusters b", command.TypeCreateCluster,
		r.clusterCmd("cls_huge", "huge", "managed", fsm.ManagedInfraID, 3, 50, "small")))

	// A worker of the running cls_prod loses its host: it is replaced by a free host.
	lost := workerOf(r, "cls_prod")
	r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: lost, Online: false, At: r.at()})
	r.ok(command.TypeReplaceWorker, &raftcmdv1.ReplaceWorker{ClusterId: "cls_prod", HostId: lost, Reason: "offline for 10m0s", Size: sizes["small"], At: r.at()})
	r.setStatus("cls_prod", state.StatusRunning)

	// Its control plane goes offline too and the operator allows its replacement: a new
	// control plane is placed to replace it.
	var cp string
	for _, n := range r.nodes("cls_prod") {
		if n.IsControlPlane() {
			cp = n.HostID
		}
	}
	// (A host is added first so the free hosts later cases count on stay as they were; the
	// old control plane's host comes back afterwards.)
	r.ok(command.TypeRegisterHost, r.hostCmd("host_cpspare", fsm.ManagedInfraID, 4, 8))
	r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: cp, Online: false, At: r.at()})
	r.ok(command.TypeRollNode, &raftcmdv1.RollNode{ClusterId: "cls_prod", HostId: cp, Reason: "control plane offline", Size: sizes["small"], At: r.at()})
	r.ok(command.TypeSetHostLiveness, &raftcmdv1.SetHostLiveness{HostId: cp, Online: true, At: r.at()})
	r.setStatus("cls_prod", state.StatusRunning)
}

// idempotentCmd wraps a command as the REST layer does for a request with an
// Idempotency-Key.
func (r *replay) idempotentCmd(key, fingerprint string, typ command.Type, inner proto.Message) *raftcmdv1.Idempotent {
	r.t.Helper()
	entry, err := command.Encode(typ, inner)
	if err != nil {
		r.t.Fatal(err)
	}
	return &raftcmdv1.Idempotent{Key: key, Fingerprint: fingerprint, At: r.at(), Inner: entry}
}

func filled(t testing.TB) *replay {
	t.Helper()
	r := newReplay(t)
	fill(r)
	return r
}

// allTypes is every type the codec knows, derived from command.New so that a new type is
// picked up without editing this test.
func allTypes() []command.Type {
	var out []command.Type
	for i := range 256 {
		if _, err := command.New(command.Type(i)); err == nil {
			out = append(out, command.Type(i))
		}
	}
	return out
}

// TestEveryTypeApplied proves the dispatch switch is complete: each type the codec knows is
// applied and accepted at least once (a type missing from the switch panics in Apply).
func TestEveryTypeApplied(t *testing.T) {
	r := filled(t)
	for _, typ := range allTypes() {
		if r.applied[typ] == 0 {
			t.Errorf("command %s is never applied by fill(): extend it, and check the FSM's switch handles it", typ)
		}
	}
}

// TestFilledStateHasEveryTable guards fill() itself: the snapshot round trip only proves
// something for tables that hold data.
func TestFilledStateHasEveryTable(t *testing.T) {
	tables := filled(t).f.Tables()
	v := reflect.ValueOf(tables).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() || (v.Field(i).Kind() == reflect.Slice && v.Field(i).Len() == 0) {
			t.Errorf("state.Tables.%s is empty after fill(): make fill() put something in it", v.Type().Field(i).Name)
		}
	}
	if tables.NextEventSeq <= 1 {
		t.Errorf("NextEventSeq = %d: no event was recorded", tables.NextEventSeq)
	}
}

// TestRefusedWrites checks that every refusal is a *state.Error of the right kind and that
// it changes nothing: a refused write on the leader must be refused on every replica too,
// and leave no trace.
func TestRefusedWrites(t *testing.T) {
	// firstNode finds a host that is a node of cls_prod, known only after placement.
	firstNode := func(r *replay) string { return r.nodes("cls_prod")[0].HostID }
	tests := []struct {
		name    string
		typ     command.Type
		msg     func(r *replay) proto.Message
		kind    state.Kind
		field   string
		details map[string]any
	}{
		{name: "bootstrap twice", typ: command.TypeBootstrap, kind: state.KindConflict,
			msg: func(*replay) proto.Message { return bootstrapCmd() }},
		{name: "token id taken", typ: command.TypeCreateToken, kind: state.KindConflict,
			msg: func(*replay) proto.Message { return tokenCmd("tok_ci", "hash-other") }},
		{name: "token secret taken", typ: command.TypeCreateToken, kind: state.KindConflict,
			msg: func(*replay) proto.Message { return tokenCmd("tok_other", "hash-ci") }},
		{name: "delete missing token", typ: command.TypeDeleteToken, kind: state.KindNotFound,
			msg: func(*replay) proto.Message { return &raftcmdv1.DeleteToken{Id: "tok_nope"} }},
		{name: "infra id taken", typ: command.TypeCreateInfra, kind: state.KindConflict,
			msg: func(*replay) proto.Message { return infraCmd("infra_dc", "other", "onpremise", "") }},
		{name: "infra name taken", typ: command.TypeCreateInfra, kind: state.KindConflict, field: "name",
			msg: func(*replay) proto.Message { return infraCmd("infra_other", "dc1", "onpremise", "") }},
		{name: "delete missing infra", typ: command.TypeDeleteInfra, kind: state.KindNotFound,
			msg: func(*replay) proto.Message { return &raftcmdv1.DeleteInfra{Id: "infra_nope"} }},
		{name: "delete managed infra", typ: command.TypeDeleteInfra, kind: state.KindConflict,
			msg: func(*replay) proto.Message { return &raftcmdv1.DeleteInfra{Id: fsm.ManagedInfraID} }},
		{name: "delete infra in use", typ: command.TypeDeleteInfra, kind: state.KindConflict,
			details: map[string]any{"hosts": 7, "clusters": 1},
			msg:     func(*replay) proto.Message { return &raftcmdv1.DeleteInfra{Id: "infra_dc"} }},
		{name: "join token for missing infra", typ: command.TypeCreateJoinToken, kind: state.KindNotFound,
			msg: func(*replay) proto.Message { return joinTokenCmd("jt_x", "infra_nope", "hash-x") }},
		{name: "join token id taken", typ: command.TypeCreateJoinToken, kind: state.KindConflict,
			msg: func(*replay) proto.Message { return joinTokenCmd("jt_dc", "infra_dc", "hash-x") }},
		{name: "join token secret taken", typ: command.TypeCreateJoinToken, kind: state.KindConflict,
			msg: func(*replay) proto.Message { return joinTokenCmd("jt_x", "infra_dc", "hash-jt-dc") }},
		{name: "delete missing join token", typ: command.TypeDeleteJoinToken, kind: state.KindNotFound,
			msg: func(*replay) proto.Message { return &raftcmdv1.DeleteJoinToken{Id: "jt_nope"} }},
		{name: "host in missing infra", typ: command.TypeRegisterHost, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message { return r.hostCmd("host_x", "infra_nope", 4, 8) }},
		{name: "new host already assigned", typ: command.TypeRegisterHost, kind: state.KindInvalid, field: "state",
			msg: func(r *replay) proto.Message {
				m := r.hostCmd("host_x", "infra_dc", 4, 8)
				m.Host.State = state.HostAssigned
				return m
			}},
		{name: "decommissioned host comes back", typ: command.TypeRegisterHost, kind: state.KindConflict,
			msg: func(r *replay) proto.Message { return r.hostCmd("host_old", fsm.ManagedInfraID, 1, 1) }},
		{name: "host moves infra", typ: command.TypeRegisterHost, kind: state.KindConflict,
			msg: func(r *replay) proto.Message { return r.hostCmd("host_d0", fsm.ManagedInfraID, 4, 16) }},
		{name: "decommission missing host", typ: command.TypeDecommissionHost, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message { return &raftcmdv1.DecommissionHost{Id: "host_nope", At: r.at()} }},
		{name: "decommission a node's host", typ: command.TypeDecommissionHost, kind: state.KindConflict,
			msg: func(r *replay) proto.Message { return &raftcmdv1.DecommissionHost{Id: firstNode(r), At: r.at()} }},
		{name: "accept missing host", typ: command.TypeAcceptHost, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message { return &raftcmdv1.AcceptHost{Id: "host_nope", At: r.at()} }},
		{name: "accept a decommissioned host", typ: command.TypeAcceptHost, kind: state.KindConflict,
			msg: func(r *replay) proto.Message { return &raftcmdv1.AcceptHost{Id: "host_old", At: r.at()} }},
		{name: "cluster id taken", typ: command.TypeCreateCluster, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return r.clusterCmd("cls_prod", "other", "managed", fsm.ManagedInfraID, 1, 1, "small")
			}},
		{name: "cluster name taken", typ: command.TypeCreateCluster, kind: state.KindConflict, field: "name",
			msg: func(r *replay) proto.Message {
				return r.clusterCmd("cls_x", "prod", "managed", fsm.ManagedInfraID, 1, 1, "small")
			}},
		{name: "cluster in missing infra", typ: command.TypeCreateCluster, kind: state.KindInvalid, field: "infra_id",
			msg: func(r *replay) proto.Message {
				return r.clusterCmd("cls_x", "x", "onpremise", "infra_nope", 1, 1, "small")
			}},
		{name: "phase does not match infra kind", typ: command.TypeCreateCluster, kind: state.KindInvalid, field: "infra_id",
			msg: func(r *replay) proto.Message {
				return r.clusterCmd("cls_x", "x", "baremetal", "infra_dc", 1, 1, "small")
			}},
		{name: "cluster too big", typ: command.TypeCreateCluster, kind: state.KindCapacity,
			details: map[string]any{"needed": 6, "available": 3, "infra_id": fsm.ManagedInfraID, "node_size": "small"},
			msg: func(r *replay) proto.Message {
				return r.clusterCmd("cls_x", "x", "managed", fsm.ManagedInfraID, 3, 3, "small")
			}},
		{name: "patch missing cluster", typ: command.TypePatchCluster, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message { return r.patchCmd("cls_nope", 2, "small", "") }},
		{name: "patch while provisioning", typ: command.TypePatchCluster, kind: state.KindConflict,
			details: map[string]any{"operation": state.StatusProvisioning},
			msg:     func(r *replay) proto.Message { return r.patchCmd("cls_dc", 2, "medium", "") }},
		{name: "patch workers beyond capacity", typ: command.TypePatchCluster, kind: state.KindCapacity,
			details: map[string]any{"needed": 5, "available": 3, "infra_id": fsm.ManagedInfraID, "node_size": "small"},
			msg:     func(r *replay) proto.Message { return r.patchCmd("cls_prod", 8, "small", "") }},
		{name: "patch node size without a spare host", typ: command.TypePatchCluster, kind: state.KindCapacity,
			details: map[string]any{"needed": 4, "available": 0, "infra_id": fsm.ManagedInfraID, "node_size": "huge"},
			msg:     func(r *replay) proto.Message { return r.patchCmd("cls_prod", -1, "small", "huge") }},
		{name: "upgrade without the binaries", typ: command.TypeUpgradeCluster, kind: state.KindInvalid, field: "kubernetes_version",
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.UpgradeCluster{Id: "cls_prod", KubernetesVersion: "v1.38.0", Artifacts: testArtifacts()[:2], At: r.at()}
			}},
		{name: "upgrade with a malformed hash", typ: command.TypeUpgradeCluster, kind: state.KindInvalid, field: "kubernetes_version",
			msg: func(r *replay) proto.Message {
				a := testArtifacts()
				a[0].Sha256 = "../../etc/passwd"
				return &raftcmdv1.UpgradeCluster{Id: "cls_prod", KubernetesVersion: "v1.38.0", Artifacts: a, At: r.at()}
			}},
		{name: "upgrade missing cluster", typ: command.TypeUpgradeCluster, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.UpgradeCluster{Id: "cls_nope", KubernetesVersion: "v1.39.0", Artifacts: testArtifacts(), At: r.at()}
			}},
		{name: "upgrade while provisioning", typ: command.TypeUpgradeCluster, kind: state.KindConflict,
			details: map[string]any{"operation": state.StatusProvisioning},
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.UpgradeCluster{Id: "cls_dc", KubernetesVersion: "v1.38.0", Artifacts: testArtifacts(), At: r.at()}
			}},
		{name: "upgrade two minors", typ: command.TypeUpgradeCluster, kind: state.KindInvalid, field: "kubernetes_version",
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.UpgradeCluster{Id: "cls_prod", KubernetesVersion: "v1.40.0", Artifacts: testArtifacts(), At: r.at()}
			}},
		{name: "delete missing cluster", typ: command.TypeDeleteCluster, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message { return &raftcmdv1.DeleteCluster{Id: "cls_nope", At: r.at()} }},
		{name: "status of missing cluster", typ: command.TypeSetClusterStatus, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetClusterStatus{Id: "cls_nope", Status: "running", At: r.at()}
			}},
		{name: "state of a host in no cluster", typ: command.TypeSetNodeState, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetNodeState{HostId: "host_d3", State: "joined", At: r.at()}
			}},
		{name: "second PKI is ignored, a missing cluster's refused", typ: command.TypeSetClusterPKI, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetClusterPKI{ClusterId: "cls_nope", CaCert: []byte("x"), At: r.at()}
			}},
		{name: "step out of order", typ: command.TypeDispatchStep, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				h := r.nodes("cls_dc")[0].HostID
				return &raftcmdv1.DispatchStep{HostId: h, Step: state.StepInit, Attempt: 1, Executor: h, At: r.at()}
			}},
		{name: "attempt that does not follow", typ: command.TypeDispatchStep, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				h := r.nodes("cls_dc")[0].HostID
				return &raftcmdv1.DispatchStep{HostId: h, Step: state.StepPrepare, Attempt: 5, Executor: h, At: r.at()}
			}},
		{name: "report from a host that does not run the step", typ: command.TypeReportStep, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				h := r.nodes("cls_dc")[0].HostID
				return &raftcmdv1.ReportStep{Reporter: "host_d3", StepId: r.sid(h, state.StepPrepare, 1), State: state.StepSucceeded, At: r.at()}
			}},
		{name: "VIP epoch that does not follow", typ: command.TypeSetVIPHolder, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetVIPHolder{ClusterId: "cls_dc", HostId: cpOf(r, "cls_dc"), Epoch: 5, At: r.at()}
			}},
		{name: "VIP to a worker", typ: command.TypeSetVIPHolder, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetVIPHolder{ClusterId: "cls_dc", HostId: workerOf(r, "cls_dc"), Epoch: 1, At: r.at()}
			}},
		{name: "VIP status about a missing cluster", typ: command.TypeReportVIPStatus, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.ReportVIPStatus{ClusterId: "cls_nope", HostId: "host_d1", Epoch: 1, Ready: true, At: r.at()}
			}},
		{name: "VIP status from a worker", typ: command.TypeReportVIPStatus, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.ReportVIPStatus{ClusterId: "cls_dc", HostId: workerOf(r, "cls_dc"), Epoch: 1, Ready: true, At: r.at()}
			}},
		{name: "replace a worker that is online", typ: command.TypeReplaceWorker, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.ReplaceWorker{ClusterId: "cls_dc", HostId: workerOf(r, "cls_dc"), Size: sizes["small"], At: r.at()}
			}},
		{name: "roll a node that needs no replacement", typ: command.TypeRollNode, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.RollNode{ClusterId: "cls_dc", HostId: workerOf(r, "cls_dc"), Size: sizes["small"], At: r.at()}
			}},
		{name: "network of a missing host", typ: command.TypeSetHostNetwork, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetHostNetwork{HostId: "host_nope", ConfigJson: []byte(`{}`), At: r.at()}
			}},
		{name: "boot of a bad MAC", typ: command.TypeRecordBoot, kind: state.KindInvalid, field: "mac",
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.RecordBoot{Mac: "52:54:00", InfraId: "infra_dc", Kind: "boot.script", At: r.at()}
			}},
		{name: "next boot of an unknown machine", typ: command.TypeSetMachineBoot, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetMachineBoot{Mac: "52:54:00:00:00:01", NextBoot: "disk", At: r.at()}
			}},
		{name: "next boot chain without target", typ: command.TypeSetMachineBoot, kind: state.KindInvalid, field: "disk_chain",
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetMachineBoot{Mac: "52:54:00:aa:00:01", NextBoot: "disk", DiskExit: "chain", At: r.at()}
			}},
		{name: "lease from an exhausted range", typ: command.TypeAllocateLease, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.AllocateLease{Mac: "52:54:00:aa:00:02", InfraId: "infra_dc", RangeStart: "10.20.0.100", RangeEnd: "10.20.0.100",
					DurationNs: int64(time.Hour), At: r.at()}
			}},
		{name: "liveness of a missing host", typ: command.TypeSetHostLiveness, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetHostLiveness{HostId: "host_nope", At: r.at()}
			}},
		{name: "second agent CA", typ: command.TypeSetAgentCA, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.SetAgentCA{CertDer: []byte("other"), KeyDer: []byte("other"), At: r.at()}
			}},
		{name: "agent with a revoked join token", typ: command.TypeRegisterAgent, kind: state.KindNotFound,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.RegisterAgent{JoinTokenId: "jt_gone", At: r.at(), Host: &raftcmdv1.Host{Id: "host_x", InfraId: "infra_dc"}}
			}},
		{name: "agent claiming another infra", typ: command.TypeRegisterAgent, kind: state.KindInvalid, field: "infra_id",
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.RegisterAgent{JoinTokenId: "jt_dc", At: r.at(), Host: &raftcmdv1.Host{Id: "host_x", InfraId: fsm.ManagedInfraID}}
			}},
		{name: "agent with an expired join token", typ: command.TypeRegisterAgent, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.RegisterAgent{JoinTokenId: "jt_dc", At: t0.Add(48 * time.Hour).UnixNano(), Host: &raftcmdv1.Host{Id: "host_x", InfraId: "infra_dc"}}
			}},
		{name: "agent reusing a host id", typ: command.TypeRegisterAgent, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return &raftcmdv1.RegisterAgent{JoinTokenId: "jt_dc", At: r.at(), Host: &raftcmdv1.Host{Id: "host_agent1", InfraId: "infra_dc"}}
			}},
		{name: "member without a raft address", typ: command.TypeSetMember, kind: state.KindInvalid, field: "id",
			msg: func(*replay) proto.Message { return &raftcmdv1.SetMember{Id: "n3"} }},
		{name: "remove missing member", typ: command.TypeRemoveMember, kind: state.KindNotFound,
			msg: func(*replay) proto.Message { return &raftcmdv1.RemoveMember{Id: "n9"} }},
		{name: "idempotency key reused for another request", typ: command.TypeIdempotent, kind: state.KindConflict,
			msg: func(r *replay) proto.Message {
				return r.idempotentCmd("tok_admin/k1", "POST /v1/tokens other", command.TypeCreateToken, tokenCmd("tok_other", "hash-other"))
			}},
		{name: "idempotent inside idempotent", typ: command.TypeIdempotent, kind: state.KindInvalid,
			msg: func(r *replay) proto.Message {
				return r.idempotentCmd("tok_admin/k3", "x", command.TypeIdempotent, r.idempotentCmd("tok_admin/k4", "y", command.TypeDeleteToken, &raftcmdv1.DeleteToken{Id: "tok_ci"}))
			}},
	}
	covered := map[command.Type]bool{}
	for _, tc := range tests {
		covered[tc.typ] = true
		t.Run(tc.name, func(t *testing.T) {
			r := filled(t)
			before := r.f.Tables()
			res := r.apply(tc.typ, tc.msg(r))
			e, ok := res.(*state.Error)
			if !ok {
				t.Fatalf("%s was accepted (%T %+v), want a *state.Error", tc.typ, res, res)
			}
			if e.Kind != tc.kind || e.Field != tc.field || e.Message == "" {
				t.Errorf("error = {kind %d, field %q, %q}, want kind %d, field %q and a message", e.Kind, e.Field, e.Message, tc.kind, tc.field)
			}
			if tc.details != nil {
				if diff := cmp.Diff(tc.details, e.Details); diff != "" {
					t.Errorf("details (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(before, r.f.Tables()); diff != "" {
				t.Errorf("refused %s changed the tables (-before +after):\n%s", tc.typ, diff)
			}
		})
	}
	// Every type that can refuse is exercised here; bootstrap..set_node_state all can.
	for _, typ := range allTypes() {
		if !covered[typ] {
			t.Errorf("no refusal case for %s", typ)
		}
	}
}

// TestDeterministic replays one log into fresh FSMs many times: every replica must reach
// the same tables and give the proposer the same answers, whatever Go's map order is.
func TestDeterministic(t *testing.T) {
	src := filled(t)
	// Refusals are part of the log too: they must be refused identically everywhere.
	src.apply(command.TypeCreateCluster, src.clusterCmd("cls_x", "x", "managed", fsm.ManagedInfraID, 3, 30, "small"))
	src.apply(command.TypePatchCluster, src.patchCmd("cls_dc", 2, "medium", ""))
	want := src.f.Tables()
	for i := range 20 {
		f := fsm.New(nil)
		var results []any
		for _, e := range src.entries {
			results = append(results, f.Apply(e))
		}
		if diff := cmp.Diff(want, f.Tables()); diff != "" {
			t.Fatalf("replay %d reached other tables (-first +replay):\n%s", i, diff)
		}
		if diff := cmp.Diff(src.results, results); diff != "" {
			t.Fatalf("replay %d gave other results (-first +replay):\n%s", i, diff)
		}
		if got := f.AppliedIndex(); got != uint64(len(src.entries)) {
			t.Fatalf("AppliedIndex = %d, want %d", got, len(src.entries))
		}
	}
}

// TestUnknownEntries covers entries this code cannot apply. The documented behaviour: an
// unknown type without the IgnoreIfUnknown bit (or an unreadable payload) stops the
// replica with a panic, since skipping it would diverge from the replicas that applied it;
// an unknown type with the bit is skipped; non-command entries change nothing.
func TestUnknownEntries(t *testing.T) {
	deleteToken, _ := command.Encode(command.TypeDeleteToken, &raftcmdv1.DeleteToken{Id: "tok_ci"})
	// An Idempotency-Key request wraps a whole entry: an inner type this replica does not
	// know must stop it exactly like an outer one, or it would record a refusal where the
	// replicas that know the type applied a change.
	wrapped, _ := command.Encode(command.TypeIdempotent, &raftcmdv1.Idempotent{Key: "tok_admin/new", Fingerprint: "f", At: t0.UnixNano(), Inner: []byte{0x7f, command.Version}})
	tests := []struct {
		name      string
		log       raft.Log
		wantPanic bool
	}{
		{name: "unknown type inside idempotent", log: raft.Log{Type: raft.LogCommand, Data: wrapped}, wantPanic: true},
		{name: "unknown type", log: raft.Log{Type: raft.LogCommand, Data: []byte{0x7f, command.Version}}, wantPanic: true},
		{name: "future payload version", log: raft.Log{Type: raft.LogCommand, Data: append([]byte{deleteToken[0], command.Version + 1}, deleteToken[2:]...)}, wantPanic: true},
		{name: "corrupt payload", log: raft.Log{Type: raft.LogCommand, Data: []byte{byte(command.TypeDeleteToken), command.Version, 0x0a, 0x09}}, wantPanic: true},
		{name: "truncated entry", log: raft.Log{Type: raft.LogCommand, Data: []byte{byte(command.TypeDeleteToken)}}, wantPanic: true},
		{name: "unknown advisory type", log: raft.Log{Type: raft.LogCommand, Data: []byte{byte(command.IgnoreIfUnknown | 0x7f), command.Version, 0x0a, 0x01, 'x'}}},
		{name: "unknown advisory type, future version", log: raft.Log{Type: raft.LogCommand, Data: []byte{byte(command.IgnoreIfUnknown | 0x01), 9}}},
		{name: "noop", log: raft.Log{Type: raft.LogNoop}},
		{name: "barrier", log: raft.Log{Type: raft.LogBarrier}},
		{name: "configuration", log: raft.Log{Type: raft.LogConfiguration, Data: deleteToken}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := filled(t)
			before := r.f.Tables()
			entry := tc.log
			entry.Index = uint64(len(r.entries) + 1)
			changed := r.f.Changed()
			var res any
			recovered := func() (p any) {
				defer func() { p = recover() }()
				res = r.f.Apply(&entry)
				return nil
			}()
			if tc.wantPanic {
				if recovered == nil {
					t.Fatalf("Apply returned %v, want a panic", res)
				}
				if msg := fmt.Sprint(recovered); !strings.Contains(msg, fmt.Sprintf("log entry %d", entry.Index)) && !strings.Contains(tc.name, "inside") {
					t.Errorf("panic %q does not name the entry's index", msg)
				}
				return
			}
			if recovered != nil {
				t.Fatalf("Apply panicked: %v", recovered)
			}
			if res != nil {
				t.Errorf("Apply = %v, want nil", res)
			}
			if diff := cmp.Diff(before, r.f.Tables()); diff != "" {
				t.Errorf("skipped entry changed the tables (-before +after):\n%s", diff)
			}
			// Raft's applied index and the watchers must still move on past a skipped entry.
			if got := r.f.AppliedIndex(); got != entry.Index {
				t.Errorf("AppliedIndex = %d, want %d", got, entry.Index)
			}
			select {
			case <-changed:
			default:
				t.Error("Changed() was not closed by the skipped entry")
			}
		})
	}
}
