package fsm

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// canonicalMAC parses an Ethernet MAC and writes it lowercase with colons, or "".
func canonicalMAC(s string) string {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return ""
	}
	return hw.String()
}

// machineFor returns a copy of the machine booting from mac, a new one (next boot: the
// agent) if it was never seen.
func (f *FSM) machineFor(mac, infraID string, at time.Time) state.Machine {
	if old, ok := f.st.Machine(mac); ok {
		m := *old
		m.History = append([]state.BootEvent(nil), old.History...)
		return m
	}
	return state.Machine{MAC: mac, InfraID: infraID, NextBoot: state.BootAgent, State: state.MachineBooting, FirstSeen: at}
}

func addHistory(m *state.Machine, e state.BootEvent) {
	m.History = append(m.History, e)
	if n := len(m.History) - state.MaxBootHistory; n > 0 {
		m.History = append([]state.BootEvent(nil), m.History[n:]...)
	}
}

// applyRecordBoot adds a boot step to a machine's history. A boot starts when its iPXE
// script is served: Boots counts them since the last progress, and past the loop limit
// the machine is in error (a machine that network-boots again and again without its agent
// registering, or without leaving the network boot when told to boot its disk).
func (f *FSM) applyRecordBoot(m *raftcmdv1.RecordBoot) any {
	mac := canonicalMAC(m.GetMac())
	if mac == "" {
		return state.Invalid("mac", "%q is not an Ethernet MAC address", m.GetMac())
	}
	if m.GetKind() == "" {
		return state.Invalid("kind", "a boot event needs a kind")
	}
	infra, ok := f.st.Infra(m.GetInfraId())
	if !ok {
		return state.NotFound("infra %s not found", m.GetInfraId())
	}
	at := unixTime(m.GetAt())
	mc := f.machineFor(mac, infra.ID, at)
	mc.LastSeen = at
	addHistory(&mc, state.BootEvent{Time: at, Kind: m.GetKind(), Detail: m.GetDetail()})
	if m.GetKind() == "boot.script" {
		mc.Boots++
		if mc.State != state.MachineError {
			mc.State = state.MachineBooting
		}
		if limit := int(m.GetLoopLimit()); limit > 0 && mc.Boots > limit && mc.State != state.MachineError {
			mc.State = state.MachineError
			if mc.NextBoot == state.BootDisk {
				mc.Reason = fmt.Sprintf("boot_loop: %d network boots though its next boot is the disk: the disk does not boot", mc.Boots)
			} else {
				mc.Reason = fmt.Sprintf("boot_loop: %d network boots without its agent registering", mc.Boots)
			}
			addHistory(&mc, state.BootEvent{Time: at, Kind: "boot.loop", Detail: mc.Reason})
		}
	}
	f.st.PutMachine(&mc)
	return &mc
}

// applySetMachineBoot records an operator's choice of next boot; it clears a boot loop.
func (f *FSM) applySetMachineBoot(m *raftcmdv1.SetMachineBoot) any {
	mac := canonicalMAC(m.GetMac())
	old, ok := f.st.Machine(mac)
	if mac == "" || !ok {
		return state.NotFound("machine %s not found", m.GetMac())
	}
	switch m.GetNextBoot() {
	case state.BootAgent, state.BootDisk:
	default:
		return state.Invalid("next_boot", "next_boot must be agent or disk")
	}
	exit := m.GetDiskExit()
	switch exit {
	case "":
		exit = state.DiskExitExit
	case state.DiskExitExit, state.DiskExitSanboot:
	case state.DiskExitChain:
		if m.GetDiskChain() == "" {
			return state.Invalid("disk_chain", "disk_exit chain needs disk_chain (what to chain to)")
		}
	default:
		return state.Invalid("disk_exit", "disk_exit must be exit, sanboot or chain")
	}
	at := unixTime(m.GetAt())
	mc := f.machineFor(mac, old.InfraID, at)
	mc.NextBoot, mc.DiskExit, mc.DiskChain = m.GetNextBoot(), exit, m.GetDiskChain()
	if mc.DiskExit != state.DiskExitChain {
		mc.DiskChain = ""
	}
	mc.Boots = 0
	if mc.State == state.MachineError {
		mc.State, mc.Reason = state.MachineBooting, ""
		if mc.HostID != "" {
			mc.State = state.MachineRegistered
		}
	}
	addHistory(&mc, state.BootEvent{Time: at, Kind: "boot.next", Detail: "next boot: " + mc.NextBoot})
	f.st.PutMachine(&mc)
	return &mc
}

// applyAllocateLease picks a full-mode DHCP address: the machine's own while it lies in the
// range (renewals keep it), else the lowest one nobody holds a live lease on.
func (f *FSM) applyAllocateLease(m *raftcmdv1.AllocateLease) any {
	mac := canonicalMAC(m.GetMac())
	if mac == "" {
		return state.Invalid("mac", "%q is not an Ethernet MAC address", m.GetMac())
	}
	if _, ok := f.st.Infra(m.GetInfraId()); !ok {
		return state.NotFound("infra %s not found", m.GetInfraId())
	}
	lo, err1 := netip.ParseAddr(m.GetRangeStart())
	hi, err2 := netip.ParseAddr(m.GetRangeEnd())
	if err1 != nil || err2 != nil || !lo.Is4() || !hi.Is4() || hi.Less(lo) {
		return state.Invalid("range", "the lease range %s-%s is not an IPv4 range", m.GetRangeStart(), m.GetRangeEnd())
	}
	if m.GetDurationNs() <= 0 {
		return state.Invalid("duration", "a lease needs a duration")
	}
	at := unixTime(m.GetAt())
	mc := f.machineFor(mac, m.GetInfraId(), at)
	inRange := func(a netip.Addr) bool { return !a.Less(lo) && !hi.Less(a) }
	// One pass over the machines, then at most 65,536 map lookups: an allocation stays
	// cheap inside Apply whatever the fleet's size.
	held := f.st.LiveLeases(at)
	var pick netip.Addr
	if cur, err := netip.ParseAddr(mc.LeaseIP); err == nil && inRange(cur) {
		if h := held[cur]; h == "" || h == mac {
			pick = cur
		}
	}
	for a, n := lo, 0; !pick.IsValid() && inRange(a) && n < 1<<16; a, n = a.Next(), n+1 {
		if held[a] == "" {
			pick = a
		}
	}
	if !pick.IsValid() {
		return state.Conflict("no free address in %s-%s", lo, hi)
	}
	mc.LeaseIP, mc.LeaseExpires, mc.LastSeen = pick.String(), at.Add(time.Duration(m.GetDurationNs())), at
	f.st.PutMachine(&mc)
	return &mc
}

// linkMachine marks the machine a newly registered host booted from (one of its MACs) as
// registered: its boot made progress, the loop counter starts again.
func (f *FSM) linkMachine(h *state.Host, at time.Time) {
	for _, nic := range h.NICs {
		old, ok := f.st.Machine(canonicalMAC(nic.MAC))
		if !ok {
			continue
		}
		mc := f.machineFor(old.MAC, old.InfraID, at)
		mc.HostID, mc.Boots, mc.State, mc.Reason, mc.LastSeen = h.ID, 0, state.MachineRegistered, "", at
		addHistory(&mc, state.BootEvent{Time: at, Kind: "agent.registered", Detail: "host " + h.ID})
		f.st.PutMachine(&mc)
		return
	}
}

// bootedHost is the live host of the infra a registering machine was already registered as,
// found by the machine records of its MACs; nil if none.
func (f *FSM) bootedHost(p *raftcmdv1.Host, infraID string) *state.Host {
	for _, nic := range p.GetNics() {
		m, ok := f.st.Machine(canonicalMAC(nic.GetMac()))
		if !ok || m.HostID == "" || m.InfraID != infraID {
			continue
		}
		if h, ok := f.st.Host(m.HostID); ok && h.InfraID == infraID && h.State != state.HostDecommissioned {
			return h
		}
	}
	return nil
}
