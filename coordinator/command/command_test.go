package command_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/coordinator/command"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// knownTypes is every type New accepts. It is derived from the codec rather than listed by
// hand, so a type added to New without a sample below makes TestRoundTrip fail.
func knownTypes() []command.Type {
	var out []command.Type
	for i := range 256 {
		if _, err := command.New(command.Type(i)); err == nil {
			out = append(out, command.Type(i))
		}
	}
	return out
}

// samples holds one populated payload per type: a round trip of empty messages would
// prove little, as every field would decode to its zero value whatever the codec did.
var samples = map[command.Type]proto.Message{
	command.TypeBootstrap: &raftcmdv1.Bootstrap{
		AdminToken:   &raftcmdv1.Token{Id: "tok_a", Name: "admin", Hash: "h", Permissions: []string{"admin", "read"}, Scope: "*", Plan: "enterprise", CreatedAt: 1},
		ManagedInfra: &raftcmdv1.Infra{Id: "infra_managed", Name: "managed", Kind: "managed", CreatedAt: 1},
	},
	command.TypeCreateToken: &raftcmdv1.CreateToken{Token: &raftcmdv1.Token{Id: "tok_b", Name: "ci", Hash: "h2", Permissions: []string{"read"}, Scope: "cluster:*", Plan: "pro", ExpiresAt: 99, CreatedAt: 2}},
	command.TypeDeleteToken: &raftcmdv1.DeleteToken{Id: "tok_b"},
	command.TypeCreateInfra: &raftcmdv1.CreateInfra{Infra: &raftcmdv1.Infra{
		Id: "infra_x", Name: "paris", Kind: "onpremise", VipPool: "10.0.0.0/28", CreatedAt: 3,
		Network: &raftcmdv1.Network{Cidr: "10.0.0.0/24", Gateway: "10.0.0.1", Dns: []string{"1.1.1.1"}, Mtu: 9000},
	}},
	command.TypeDeleteInfra:     &raftcmdv1.DeleteInfra{Id: "infra_x"},
	command.TypeCreateJoinToken: &raftcmdv1.CreateJoinToken{JoinToken: &raftcmdv1.JoinToken{Id: "jt_a", InfraId: "infra_x", Hash: "h3", ExpiresAt: 50, MaxUses: 3, CreatedAt: 4}},
	command.TypeDeleteJoinToken: &raftcmdv1.DeleteJoinToken{Id: "jt_a"},
	command.TypeRegisterHost: &raftcmdv1.RegisterHost{At: 5, Host: &raftcmdv1.Host{
		Id: "host_a", InfraId: "infra_x", Hostname: "n1", State: "available", Cpus: 8, MemoryBytes: 32 << 30,
		Disks:  []*raftcmdv1.Disk{{Name: "vda", SizeBytes: 1 << 40, Rotational: true, Serial: "s"}},
		Nics:   []*raftcmdv1.NIC{{Name: "eth0", Mac: "52:54:00:00:00:01", SpeedMbps: 1000, Addresses: []string{"10.0.0.5/24"}, Up: true}},
		Labels: map[string]string{"rack": "r1", "zone": "a", "gpu": "no"}, AgentVersion: "v0.1.0",
	}},
	command.TypeDecommissionHost: &raftcmdv1.DecommissionHost{Id: "host_a", At: 6},
	command.TypeCreateCluster: &raftcmdv1.CreateCluster{
		Cluster: &raftcmdv1.Cluster{Id: "cls_a", Name: "prod", Phase: "onpremise", ControlPlanes: 3, Workers: 5, KubernetesVersion: "v1.37.2", InfraId: "infra_x"},
		Size:    &raftcmdv1.Size{Name: "large", Cpus: 4, MemoryBytes: 16 << 30},
		At:      7,
	},
	command.TypePatchCluster: &raftcmdv1.PatchCluster{
		Id: "cls_a", Workers: proto.Int32(0), // an explicit 0 must survive: it is "optional" for a reason
		Size: &raftcmdv1.Size{Name: "xlarge", Cpus: 8, MemoryBytes: 32 << 30}, WorkerSize: &raftcmdv1.Size{Name: "large", Cpus: 4, MemoryBytes: 16 << 30}, At: 8,
	},
	command.TypeUpgradeCluster:   &raftcmdv1.UpgradeCluster{Id: "cls_a", KubernetesVersion: "v1.38.0", At: 9},
	command.TypeDeleteCluster:    &raftcmdv1.DeleteCluster{Id: "cls_a", At: 10},
	command.TypeSetClusterStatus: &raftcmdv1.SetClusterStatus{Id: "cls_a", Status: "error", Reason: "kubeadm init failed", At: 11},
	command.TypeSetNodeState:     &raftcmdv1.SetNodeState{HostId: "host_a", State: "joining", Step: "kubeadm-join", At: 12},
	command.TypeSetMember:        &raftcmdv1.SetMember{Id: "n2", RaftAddr: "10.0.0.2:7000", HttpAddr: "10.0.0.2:8080", GrpcAddr: "10.0.0.2:9090"},
	command.TypeRemoveMember:     &raftcmdv1.RemoveMember{Id: "n2"},
	command.TypeSetAgentCA:       &raftcmdv1.SetAgentCA{CertDer: []byte{1, 2}, KeyDer: []byte{3}, At: 14},
	command.TypeRegisterAgent: &raftcmdv1.RegisterAgent{JoinTokenId: "jt_1", At: 15,
		Host: &raftcmdv1.Host{Id: "host_1", InfraId: "infra_1", Hostname: "h1", Cpus: 2, MemoryBytes: 1 << 30}},
	command.TypeSetHostLiveness: &raftcmdv1.SetHostLiveness{HostId: "host_1", Online: true, LastSeen: 16, At: 17},
	command.TypeSetClusterPKI: &raftcmdv1.SetClusterPKI{ClusterId: "cls_a", CaCert: []byte("c"), CaKeySealed: []byte("k"),
		FrontProxyCaCert: []byte("f"), FrontProxyCaKeySealed: []byte("fk"), EtcdCaCert: []byte("e"), EtcdCaKeySealed: []byte("ek"),
		SaPub: []byte("p"), SaKeySealed: []byte("sk"), KeyringId: "0102030405060708", At: 18},
	command.TypeDispatchStep: &raftcmdv1.DispatchStep{HostId: "host_1", Step: "credentials", Attempt: 2, Executor: "host_0", At: 19,
		Cred: &raftcmdv1.JoinCred{TokenSealed: []byte("t"), ExpiresAt: 20, KeyringId: "0102030405060708"}},
	command.TypeReportStep: &raftcmdv1.ReportStep{Reporter: "host_0", StepId: "host_1.credentials.2", State: "failed",
		Message: "m", Reason: "kubeadm.exit_1", OutputTail: "error", At: 21},
	command.TypeAcceptHost:   &raftcmdv1.AcceptHost{Id: "host_1", At: 22},
	command.TypeSetVIPHolder: &raftcmdv1.SetVIPHolder{ClusterId: "cls_1", HostId: "host_1", Epoch: 3, Reason: "r", At: 23},
	command.TypeReportVIPStatus: &raftcmdv1.ReportVIPStatus{ClusterId: "cls_1", HostId: "host_1", Epoch: 3, Holding: true,
		Ready: true, Released: true, Reason: "apiserver_unready", At: 24},
	command.TypeSetHostNetwork: &raftcmdv1.SetHostNetwork{HostId: "host_1", ConfigJson: []byte(`{"bridges":[{"name":"br0"}]}`), At: 28},
	command.TypeReplaceWorker:  &raftcmdv1.ReplaceWorker{ClusterId: "cls_1", HostId: "host_1", Reason: "offline for 10m0s", At: 29},
	command.TypeRollNode:       &raftcmdv1.RollNode{ClusterId: "cls_1", HostId: "host_1", Reason: "node size small -> large", At: 30},
	command.TypeRecordBoot:     &raftcmdv1.RecordBoot{Mac: "52:54:00:12:34:56", InfraId: "infra_1", Kind: "boot.script", Detail: "agent", LoopLimit: 5, At: 25},
	command.TypeSetMachineBoot: &raftcmdv1.SetMachineBoot{Mac: "52:54:00:12:34:56", NextBoot: "disk", DiskExit: "sanboot", At: 26},
	command.TypeAllocateLease: &raftcmdv1.AllocateLease{Mac: "52:54:00:12:34:56", InfraId: "infra_1", RangeStart: "10.0.0.100",
		RangeEnd: "10.0.0.200", DurationNs: 3600e9, At: 27},
	command.TypeIdempotent: &raftcmdv1.Idempotent{Key: "tok_a/k1", Fingerprint: "POST /v1/tokens sha256:ab", At: 13,
		// A whole inner entry: type byte, version byte, payload (DeleteToken{Id: "tok_b"}).
		Inner: []byte{byte(command.TypeDeleteToken), command.Version, 0x0a, 0x05, 't', 'o', 'k', '_', 'b'}},
}

func TestRoundTrip(t *testing.T) {
	types := knownTypes()
	if len(types) == 0 {
		t.Fatal("New knows no type at all")
	}
	for _, typ := range types {
		t.Run(typ.String(), func(t *testing.T) {
			msg, ok := samples[typ]
			if !ok {
				t.Fatalf("no sample payload for %s: add one to samples", typ)
			}
			entry, err := command.Encode(typ, msg)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if entry[0] != byte(typ) || entry[1] != command.Version {
				t.Fatalf("envelope = % x, want type %d then version %d", entry[:2], typ, command.Version)
			}
			gotType, got, err := command.Decode(entry)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if gotType != typ {
				t.Errorf("Decode type = %s, want %s", gotType, typ)
			}
			if !proto.Equal(got, msg) {
				t.Errorf("round trip changed the payload:\n got  %v\n want %v", got, msg)
			}
			// Replicas compare nothing byte-wise today, but a deterministic encoding keeps
			// identical commands identical in the log (maps are the risk: Host.labels).
			again, _ := command.Encode(typ, msg)
			if !bytes.Equal(entry, again) {
				t.Errorf("two encodings of the same message differ")
			}
		})
	}
}

// TestTypesAreStable pins every type's number: the enum is append-only, and a renumbered
// type would make existing logs replay as the wrong command.
func TestTypesAreStable(t *testing.T) {
	want := map[string]uint8{
		"bootstrap": 1, "create_token": 2, "delete_token": 3, "create_infra": 4, "delete_infra": 5,
		"create_join_token": 6, "delete_join_token": 7, "register_host": 8, "decommission_host": 9,
		"create_cluster": 10, "patch_cluster": 11, "upgrade_cluster": 12, "delete_cluster": 13,
		"set_cluster_status": 14, "set_node_state": 15, "set_member": 16, "remove_member": 17, "idempotent": 18, "set_agent_ca": 19, "register_agent": 20, "set_host_liveness": 21,
		"set_cluster_pki": 22, "dispatch_step": 23, "report_step": 24, "accept_host": 25,
		"set_vip_holder": 26, "report_vip_status": 27, "record_boot": 28, "set_machine_boot": 29, "allocate_lease": 30,
		"set_host_network": 31, "replace_worker": 32, "roll_node": 33,
	}
	got := map[string]uint8{}
	for _, typ := range knownTypes() {
		got[typ.String()] = uint8(typ)
	}
	for name, n := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("type %s (%d) is gone: types are never removed", name, n)
		} else if g != n {
			t.Errorf("type %s is %d, was %d: types are never renumbered", name, g, n)
		}
	}
	for name, n := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("new type %s (%d): add it to this table (and to samples)", name, n)
		}
	}
}

// TestNamesMatchNew checks that New and the names table list the same types: a type with a
// name but no payload (or the other way round) would decode as unknown or log as type(N).
func TestNamesMatchNew(t *testing.T) {
	for i := range 256 {
		typ := command.Type(i)
		_, err := command.New(typ)
		named := !strings.HasPrefix(typ.String(), "type(")
		switch {
		case err == nil && !named:
			t.Errorf("New knows %d but it has no name", i)
		case err != nil && named:
			t.Errorf("%d is named %s but New does not know it", i, typ)
		case err != nil && !errors.Is(err, command.ErrUnknownType):
			t.Errorf("New(%d) error %v is not ErrUnknownType", i, err)
		}
		if err == nil && typ&command.IgnoreIfUnknown != 0 {
			// Every state change must stop an older replica that cannot apply it.
			t.Errorf("%s has the IgnoreIfUnknown bit, but it changes state", typ)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	valid, err := command.Encode(command.TypeDeleteToken, &raftcmdv1.DeleteToken{Id: "tok_a"})
	if err != nil {
		t.Fatal(err)
	}
	withHeader := func(typ command.Type, version byte) []byte {
		return append([]byte{byte(typ), version}, valid[2:]...)
	}
	tests := []struct {
		name        string
		entry       []byte
		wantType    command.Type
		wantUnknown bool   // errors.Is(err, ErrUnknownType)
		wantText    string // part of the message an operator reads
	}{
		{name: "nil", entry: nil, wantText: "too short"},
		{name: "empty", entry: []byte{}, wantText: "too short"},
		{name: "type only", entry: []byte{byte(command.TypeBootstrap)}, wantText: "too short"},
		{name: "future payload version", entry: withHeader(command.TypeDeleteToken, command.Version+1), wantType: command.TypeDeleteToken, wantText: "payload version 2"},
		{name: "version zero", entry: withHeader(command.TypeDeleteToken, 0), wantType: command.TypeDeleteToken, wantText: "payload version 0"},
		{name: "unknown type", entry: withHeader(0x7f, command.Version), wantType: 0x7f, wantUnknown: true},
		{name: "unknown type zero", entry: withHeader(0, command.Version), wantType: 0, wantUnknown: true},
		{name: "unknown advisory type", entry: withHeader(command.IgnoreIfUnknown|0x7f, command.Version), wantType: command.IgnoreIfUnknown | 0x7f, wantUnknown: true},
		// An older replica cannot know an advisory type's payload versions either: the type
		// must be reported unknown (skippable), not as an unreadable version (fatal).
		{name: "unknown advisory type, future version", entry: withHeader(command.IgnoreIfUnknown|0x01, command.Version+1), wantType: command.IgnoreIfUnknown | 0x01, wantUnknown: true},
		{name: "corrupt payload", entry: []byte{byte(command.TypeDeleteToken), command.Version, 0x0a, 0x05, 'a'}, wantType: command.TypeDeleteToken, wantText: "decode delete_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, msg, err := command.Decode(tc.entry)
			if err == nil {
				t.Fatalf("Decode succeeded with %v", msg)
			}
			if msg != nil {
				t.Errorf("Decode returned a message with its error: %v", msg)
			}
			if typ != tc.wantType {
				t.Errorf("type = %d, want %d", typ, tc.wantType)
			}
			if got := errors.Is(err, command.ErrUnknownType); got != tc.wantUnknown {
				t.Errorf("errors.Is(%v, ErrUnknownType) = %v, want %v", err, got, tc.wantUnknown)
			}
			if tc.wantUnknown && typ&command.IgnoreIfUnknown != (tc.wantType&command.IgnoreIfUnknown) {
				t.Errorf("the IgnoreIfUnknown bit of %d was lost", typ)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
		})
	}
}
