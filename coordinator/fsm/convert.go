package fsm

import (
	"time"

	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// unixTime turns a command's Unix-nanosecond time into UTC; 0 is the zero time.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func optTime(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := unixTime(ns)
	return &t
}

func tokenFrom(p *raftcmdv1.Token) *state.Token {
	return &state.Token{
		ID:          p.GetId(),
		Name:        p.GetName(),
		Hash:        p.GetHash(),
		Permissions: append([]string(nil), p.GetPermissions()...),
		Scope:       p.GetScope(),
		Plan:        p.GetPlan(),
		ExpiresAt:   optTime(p.GetExpiresAt()),
		CreatedAt:   unixTime(p.GetCreatedAt()),
	}
}

func infraFrom(p *raftcmdv1.Infra) *state.Infra {
	i := &state.Infra{
		ID:        p.GetId(),
		Name:      p.GetName(),
		Kind:      p.GetKind(),
		VIPPool:   p.GetVipPool(),
		CreatedAt: unixTime(p.GetCreatedAt()),
	}
	if a := p.GetAutoAccept(); a != nil {
		i.AutoAccept = &state.AutoAccept{MACPrefixes: append([]string(nil), a.GetMacPrefixes()...), Serials: append([]string(nil), a.GetSerials()...)}
		if len(a.GetLabels()) > 0 {
			i.AutoAccept.Labels = map[string]string{}
			for k, v := range a.GetLabels() {
				i.AutoAccept.Labels[k] = v
			}
		}
	}
	if n := p.GetNetwork(); n != nil {
		i.Network = &state.Network{CIDR: n.GetCidr(), Gateway: n.GetGateway(), DNS: append([]string(nil), n.GetDns()...), MTU: int(n.GetMtu()),
			Interface: n.GetInterface()}
		for _, b := range n.GetBonds() {
			i.Network.Bonds = append(i.Network.Bonds, state.NetworkBond{Name: b.GetName(), Mode: b.GetMode(), Interfaces: append([]string(nil), b.GetInterfaces()...)})
		}
		for _, v := range n.GetVlans() {
			i.Network.VLANs = append(i.Network.VLANs, state.NetworkVLAN{Name: v.GetName(), Link: v.GetLink(), ID: int(v.GetId())})
		}
		for _, b := range n.GetBridges() {
			i.Network.Bridges = append(i.Network.Bridges, state.NetworkBridge{Name: b.GetName(), Interfaces: append([]string(nil), b.GetInterfaces()...)})
		}
	}
	return i
}

func joinTokenFrom(p *raftcmdv1.JoinToken) *state.JoinToken {
	return &state.JoinToken{
		ID:        p.GetId(),
		InfraID:   p.GetInfraId(),
		Hash:      p.GetHash(),
		ExpiresAt: unixTime(p.GetExpiresAt()),
		MaxUses:   int(p.GetMaxUses()),
		CreatedAt: unixTime(p.GetCreatedAt()),
	}
}

func sizeFrom(p *raftcmdv1.Size) state.Size {
	return state.Size{CPUs: int(p.GetCpus()), MemoryBytes: p.GetMemoryBytes()}
}

// inventoryInto copies a registration's inventory onto a host.
func inventoryInto(h *state.Host, p *raftcmdv1.Host) {
	h.Hostname = p.GetHostname()
	h.CPUs = int(p.GetCpus())
	h.MemoryBytes = p.GetMemoryBytes()
	h.AgentVersion = p.GetAgentVersion()
	h.Serial = p.GetSerial()
	h.Disks = nil
	for _, d := range p.GetDisks() {
		h.Disks = append(h.Disks, state.Disk{Name: d.GetName(), SizeBytes: d.GetSizeBytes(), Rotational: d.GetRotational(), Serial: d.GetSerial()})
	}
	h.NICs = nil
	for _, n := range p.GetNics() {
		h.NICs = append(h.NICs, state.NIC{Name: n.GetName(), MAC: n.GetMac(), SpeedMbps: int(n.GetSpeedMbps()), Addresses: append([]string(nil), n.GetAddresses()...), Up: n.GetUp()})
	}
	h.Labels = nil
	if len(p.GetLabels()) > 0 {
		h.Labels = make(map[string]string, len(p.GetLabels()))
		for k, v := range p.GetLabels() {
			h.Labels[k] = v
		}
	}
}
