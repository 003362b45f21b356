package agentsvc

import (
	"maps"
	"slices"
	"sync"
	"unicode/utf8"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/service"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Inventory bounds: generous for real machines, small enough that one host cannot bloat
// the replicated state.
const (
	maxString = 256
	maxDisks  = 256
	maxNICs   = 256
	maxAddrs  = 64
	maxLabels = 64
)

// registration validates an agent's inventory and converts it.
func registration(inv *agentv1.Inventory) (service.HostRegistration, error) {
	var reg service.HostRegistration
	if inv == nil {
		return reg, v1.InvalidField("inventory", "an inventory is required")
	}
	if err := checkStrings("inventory", inv.GetHostname(), inv.GetAgentVersion()); err != nil {
		return reg, err
	}
	if inv.GetHostname() == "" {
		return reg, v1.InvalidField("inventory.hostname", "the hostname is empty")
	}
	if inv.GetCpus() < 0 || inv.GetMemoryBytes() < 0 {
		return reg, v1.InvalidField("inventory", "cpus and memory_bytes must not be negative")
	}
	if len(inv.GetDisks()) > maxDisks || len(inv.GetNics()) > maxNICs || len(inv.GetLabels()) > maxLabels {
		return reg, v1.InvalidField("inventory", "at most %d disks, %d nics and %d labels", maxDisks, maxNICs, maxLabels)
	}
	if err := checkStrings("inventory.serial", inv.GetSerial()); err != nil {
		return reg, err
	}
	reg.Hostname, reg.CPUs, reg.MemoryBytes, reg.AgentVersion = inv.GetHostname(), int(inv.GetCpus()), inv.GetMemoryBytes(), inv.GetAgentVersion()
	reg.Serial = inv.GetSerial()
	for _, d := range inv.GetDisks() {
		if err := checkStrings("inventory.disks", d.GetName(), d.GetSerial()); err != nil {
			return reg, err
		}
		if d.GetSizeBytes() < 0 {
			return reg, v1.InvalidField("inventory.disks", "size_bytes must not be negative")
		}
		reg.Disks = append(reg.Disks, v1.Disk{Name: d.GetName(), SizeBytes: d.GetSizeBytes(), Rotational: d.GetRotational(), Serial: d.GetSerial()})
	}
	for _, n := range inv.GetNics() {
		if err := checkStrings("inventory.nics", append([]string{n.GetName(), n.GetMac()}, n.GetAddresses()...)...); err != nil {
			return reg, err
		}
		if len(n.GetAddresses()) > maxAddrs || n.GetSpeedMbps() < 0 {
			return reg, v1.InvalidField("inventory.nics", "at most %d addresses and a non-negative speed", maxAddrs)
		}
		reg.NICs = append(reg.NICs, v1.NIC{Name: n.GetName(), MAC: n.GetMac(), SpeedMbps: int(n.GetSpeedMbps()), Addresses: slices.Clone(n.GetAddresses()), Up: n.GetUp()})
	}
	if len(inv.GetLabels()) > 0 {
		reg.Labels = make(map[string]string, len(inv.GetLabels()))
		for k, v := range inv.GetLabels() {
			if k == "" {
				return reg, v1.InvalidField("inventory.labels", "a label key is empty")
			}
			if err := checkStrings("inventory.labels", k, v); err != nil {
				return reg, err
			}
			reg.Labels[k] = v
		}
	}
	return reg, nil
}

func checkStrings(field string, ss ...string) error {
	for _, s := range ss {
		if len(s) > maxString || !utf8.ValidString(s) {
			return v1.InvalidField(field, "strings must be valid UTF-8 of at most %d bytes", maxString)
		}
	}
	return nil
}

// sameInventory tells whether a registration would change nothing of the host's inventory.
func sameInventory(h *v1.Host, reg service.HostRegistration) bool {
	return h.Hostname == reg.Hostname && h.CPUs == reg.CPUs && h.MemoryBytes == reg.MemoryBytes &&
		h.AgentVersion == reg.AgentVersion && h.Serial == reg.Serial &&
		slices.Equal(h.Disks, reg.Disks) &&
		slices.EqualFunc(h.NICs, reg.NICs, func(a, b v1.NIC) bool {
			return a.Name == b.Name && a.MAC == b.MAC && a.SpeedMbps == b.SpeedMbps && a.Up == b.Up && slices.Equal(a.Addresses, b.Addresses)
		}) &&
		maps.Equal(h.Labels, reg.Labels)
}

// seenIDs remembers the last few message ids per host, so a message resent after a
// reconnect (to this replica) is applied once.
type seenIDs struct {
	n  int
	mu sync.Mutex
	m  map[string][]string
}

func newSeenIDs(n int) *seenIDs { return &seenIDs{n: n, m: make(map[string][]string)} }

func (s *seenIDs) has(host, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.m[host], id)
}

func (s *seenIDs) add(host, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := s.m[host]
	if slices.Contains(ids, id) {
		return
	}
	if len(ids) >= s.n {
		ids = slices.Delete(ids, 0, 1)
	}
	s.m[host] = append(ids, id)
}
