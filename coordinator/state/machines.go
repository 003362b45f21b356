package state

import (
	"net/netip"
	"time"
)

// Machine next boots.
const (
	BootAgent = "agent" // the live agent image over the network
	BootDisk  = "disk"  // leave the network boot: the machine is installed
)

// Disk exits: how the iPXE script leaves the network boot.
const (
	DiskExitExit    = "exit"
	DiskExitSanboot = "sanboot"
	DiskExitChain   = "chain"
)

// Machine states.
const (
	MachineBooting    = "booting"    // network-booting, no agent registered since its last boot
	MachineRegistered = "registered" // its agent registered (a host exists)
	MachineError      = "error"      // boot loop: Reason says why
)

// MaxBootHistory bounds a machine's recorded boot history (oldest dropped first).
const MaxBootHistory = 64

// Machine is a network-booted machine as the boot services see it, by the MAC it boots
// from. Its host (once its agent registered) is HostID.
type Machine struct {
	MAC       string `json:"mac"`
	InfraID   string `json:"infra_id"`
	HostID    string `json:"host_id,omitempty"`
	NextBoot  string `json:"next_boot"`
	DiskExit  string `json:"disk_exit,omitempty"`
	DiskChain string `json:"disk_chain,omitempty"`
	// Boots counts network boots since the last progress (a registration, or an operator's
	// change of the next boot); too many make the state error (a boot loop).
	Boots  int    `json:"boots"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// LeaseIP and LeaseExpires are the full-mode DHCP lease.
	LeaseIP      string      `json:"lease_ip,omitempty"`
	LeaseExpires time.Time   `json:"lease_expires,omitzero"`
	FirstSeen    time.Time   `json:"first_seen"`
	LastSeen     time.Time   `json:"last_seen"`
	History      []BootEvent `json:"history,omitempty"`
}

// BootEvent is one step of a machine's boot history.
type BootEvent struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// Machine returns the machine booting from mac.
func (s *State) Machine(mac string) (*Machine, bool) { m, ok := s.machines[mac]; return m, ok }

// Machines lists machines by MAC.
func (s *State) Machines() []*Machine { return values(s.machines) }

// PutMachine stores a machine.
func (s *State) PutMachine(m *Machine) { s.machines[m.MAC] = m }

// LiveLeases maps every address leased at time at to the MAC holding it.
func (s *State) LiveLeases(at time.Time) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, m := range s.machines {
		if ip, err := netip.ParseAddr(m.LeaseIP); err == nil && at.Before(m.LeaseExpires) {
			out[ip] = m.MAC
		}
	}
	return out
}
