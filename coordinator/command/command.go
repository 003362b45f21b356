// Package command is the Raft log entry envelope: one type byte, one version byte, then a
// protobuf payload from proto/raftcmd/v1.
//
// The type enum is append-only: a value, once written to a log, keeps its meaning forever.
// Types with the IgnoreIfUnknown bit set may be skipped by an older replica that does not
// know them (used for advisory entries); any other unknown type stops the FSM, because
// skipping a state change would make replicas diverge.
package command

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// Type identifies a command. Never renumber, never reuse.
type Type uint8

// IgnoreIfUnknown marks a type an older replica may skip.
const IgnoreIfUnknown Type = 0x80

// Command types. Append only.
const (
	TypeBootstrap        Type = 1
	TypeCreateToken      Type = 2
	TypeDeleteToken      Type = 3
	TypeCreateInfra      Type = 4
	TypeDeleteInfra      Type = 5
	TypeCreateJoinToken  Type = 6
	TypeDeleteJoinToken  Type = 7
	TypeRegisterHost     Type = 8
	TypeDecommissionHost Type = 9
	TypeCreateCluster    Type = 10
	TypePatchCluster     Type = 11
	TypeUpgradeCluster   Type = 12
	TypeDeleteCluster    Type = 13
	TypeSetClusterStatus Type = 14
	TypeSetNodeState     Type = 15
	TypeSetMember        Type = 16
	TypeRemoveMember     Type = 17
	TypeIdempotent       Type = 18
	TypeSetAgentCA       Type = 19
	TypeRegisterAgent    Type = 20
	TypeSetHostLiveness  Type = 21
	TypeSetClusterPKI    Type = 22
	TypeDispatchStep     Type = 23
	TypeReportStep       Type = 24
	TypeAcceptHost       Type = 25
	TypeSetVIPHolder     Type = 26
	TypeReportVIPStatus  Type = 27
	TypeRecordBoot       Type = 28
	TypeSetMachineBoot   Type = 29
	TypeAllocateLease    Type = 30
	TypeSetHostNetwork   Type = 31
	TypeReplaceWorker    Type = 32
	TypeRollNode         Type = 33
)

// Version is the payload encoding version written by this code.
const Version = 1

var names = map[Type]string{
	TypeBootstrap:        "bootstrap",
	TypeCreateToken:      "create_token",
	TypeDeleteToken:      "delete_token",
	TypeCreateInfra:      "create_infra",
	TypeDeleteInfra:      "delete_infra",
	TypeCreateJoinToken:  "create_join_token",
	TypeDeleteJoinToken:  "delete_join_token",
	TypeRegisterHost:     "register_host",
	TypeDecommissionHost: "decommission_host",
	TypeCreateCluster:    "create_cluster",
	TypePatchCluster:     "patch_cluster",
	TypeUpgradeCluster:   "upgrade_cluster",
	TypeDeleteCluster:    "delete_cluster",
	TypeSetClusterStatus: "set_cluster_status",
	TypeSetNodeState:     "set_node_state",
	TypeSetMember:        "set_member",
	TypeRemoveMember:     "remove_member",
	TypeIdempotent:       "idempotent",
	TypeSetAgentCA:       "set_agent_ca",
	TypeRegisterAgent:    "register_agent",
	TypeSetHostLiveness:  "set_host_liveness",
	TypeSetClusterPKI:    "set_cluster_pki",
	TypeDispatchStep:     "dispatch_step",
	TypeReportStep:       "report_step",
	TypeAcceptHost:       "accept_host",
	TypeSetVIPHolder:     "set_vip_holder",
	TypeReportVIPStatus:  "report_vip_status",
	TypeRecordBoot:       "record_boot",
	TypeSetMachineBoot:   "set_machine_boot",
	TypeAllocateLease:    "allocate_lease",
	TypeSetHostNetwork:   "set_host_network",
	TypeReplaceWorker:    "replace_worker",
	TypeRollNode:         "roll_node",
}

func (t Type) String() string {
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ErrUnknownType is returned by Decode for a type this code does not know.
var ErrUnknownType = errors.New("unknown command type")

// New returns an empty payload message for a type.
func New(t Type) (proto.Message, error) {
	switch t {
	case TypeBootstrap:
		return &raftcmdv1.Bootstrap{}, nil
	case TypeCreateToken:
		return &raftcmdv1.CreateToken{}, nil
	case TypeDeleteToken:
		return &raftcmdv1.DeleteToken{}, nil
	case TypeCreateInfra:
		return &raftcmdv1.CreateInfra{}, nil
	case TypeDeleteInfra:
		return &raftcmdv1.DeleteInfra{}, nil
	case TypeCreateJoinToken:
		return &raftcmdv1.CreateJoinToken{}, nil
	case TypeDeleteJoinToken:
		return &raftcmdv1.DeleteJoinToken{}, nil
	case TypeRegisterHost:
		return &raftcmdv1.RegisterHost{}, nil
	case TypeDecommissionHost:
		return &raftcmdv1.DecommissionHost{}, nil
	case TypeCreateCluster:
		return &raftcmdv1.CreateCluster{}, nil
	case TypePatchCluster:
		return &raftcmdv1.PatchCluster{}, nil
	case TypeUpgradeCluster:
		return &raftcmdv1.UpgradeCluster{}, nil
	case TypeDeleteCluster:
		return &raftcmdv1.DeleteCluster{}, nil
	case TypeSetClusterStatus:
		return &raftcmdv1.SetClusterStatus{}, nil
	case TypeSetNodeState:
		return &raftcmdv1.SetNodeState{}, nil
	case TypeSetMember:
		return &raftcmdv1.SetMember{}, nil
	case TypeRemoveMember:
		return &raftcmdv1.RemoveMember{}, nil
	case TypeIdempotent:
		return &raftcmdv1.Idempotent{}, nil
	case TypeSetAgentCA:
		return &raftcmdv1.SetAgentCA{}, nil
	case TypeRegisterAgent:
		return &raftcmdv1.RegisterAgent{}, nil
	case TypeSetHostLiveness:
		return &raftcmdv1.SetHostLiveness{}, nil
	case TypeSetClusterPKI:
		return &raftcmdv1.SetClusterPKI{}, nil
	case TypeDispatchStep:
		return &raftcmdv1.DispatchStep{}, nil
	case TypeReportStep:
		return &raftcmdv1.ReportStep{}, nil
	case TypeAcceptHost:
		return &raftcmdv1.AcceptHost{}, nil
	case TypeSetVIPHolder:
		return &raftcmdv1.SetVIPHolder{}, nil
	case TypeReportVIPStatus:
		return &raftcmdv1.ReportVIPStatus{}, nil
	case TypeRecordBoot:
		return &raftcmdv1.RecordBoot{}, nil
	case TypeSetMachineBoot:
		return &raftcmdv1.SetMachineBoot{}, nil
	case TypeAllocateLease:
		return &raftcmdv1.AllocateLease{}, nil
	case TypeSetHostNetwork:
		return &raftcmdv1.SetHostNetwork{}, nil
	case TypeReplaceWorker:
		return &raftcmdv1.ReplaceWorker{}, nil
	case TypeRollNode:
		return &raftcmdv1.RollNode{}, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownType, t)
}

// Encode builds a log entry.
func Encode(t Type, msg proto.Message) ([]byte, error) {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	out := make([]byte, 0, 2+len(payload))
	out = append(out, byte(t), Version)
	return append(out, payload...), nil
}

// Decode parses a log entry. For an unknown type it returns ErrUnknownType and the type, so
// the caller can honour IgnoreIfUnknown.
func Decode(entry []byte) (Type, proto.Message, error) {
	if len(entry) < 2 {
		return 0, nil, fmt.Errorf("command entry of %d bytes is too short", len(entry))
	}
	t, v := Type(entry[0]), entry[1]
	// The type is checked before the version: a replica that does not know a type cannot
	// know its payload versions either, and an unknown advisory type must stay skippable.
	msg, err := New(t)
	if err != nil {
		return t, nil, err
	}
	if v == 0 || v > Version {
		return t, nil, fmt.Errorf("command %s has payload version %d, this code reads up to %d", t, v, Version)
	}
	if err := proto.Unmarshal(entry[2:], msg); err != nil {
		return t, nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return t, msg, nil
}
