package state

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Placement is the hosts picked for a set of new nodes.
type Placement struct {
	ControlPlanes []string
	Workers       []string
}

// CapacityError says how many matching hosts were needed and how many were free.
type CapacityError struct {
	Needed    int
	Available int
	InfraID   string
	Size      string
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("infra %s has %d free host(s) of size %s or larger, %d needed", e.InfraID, e.Available, e.Size, e.Needed)
}

// FreeHosts lists the hosts of an infra that can take a node of that size: available (which
// implies online and in no cluster), big enough; best fit first (smallest CPU, then memory,
// then ID), so large hosts stay free for large nodes.
func (s *State) FreeHosts(infraID string, size Size) []*Host {
	var out []*Host
	for _, h := range s.hosts {
		if h.InfraID == infraID && h.State == HostAvailable && size.Fits(h) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b *Host) int {
		return cmp.Or(cmp.Compare(a.CPUs, b.CPUs), cmp.Compare(a.MemoryBytes, b.MemoryBytes), strings.Compare(a.ID, b.ID))
	})
	return out
}

// Place picks hosts for cps control planes and workers workers in an infra. It is pure and
// deterministic (same state, same answer) because the FSM runs it inside Apply.
//
// Control planes go first and are spread across failure domains: each pick prefers a host
// whose rack label is not used yet, then one whose zone is not used yet, then best fit.
// Workers then take the best-fitting remaining hosts.
func (s *State) Place(infraID, sizeName string, size Size, cps, workers int) (Placement, error) {
	free := s.FreeHosts(infraID, size)
	if need := cps + workers; len(free) < need {
		return Placement{}, &CapacityError{Needed: need, Available: len(free), InfraID: infraID, Size: sizeName}
	}
	var p Placement
	used := map[string]bool{}
	racks, zones := map[string]bool{}, map[string]bool{}
	for range cps {
		best := -1
		bestScore := -1
		for i, h := range free {
			if used[h.ID] {
				continue
			}
			score := 0
			if r := h.Labels["rack"]; r == "" || !racks[r] {
				score += 2
			}
			if z := h.Labels["zone"]; z == "" || !zones[z] {
				score++
			}
			if score > bestScore {
				best, bestScore = i, score
			}
		}
		h := free[best]
		used[h.ID] = true
		if r := h.Labels["rack"]; r != "" {
			racks[r] = true
		}
		if z := h.Labels["zone"]; z != "" {
			zones[z] = true
		}
		p.ControlPlanes = append(p.ControlPlanes, h.ID)
	}
	for _, h := range free {
		if len(p.Workers) == workers {
			break
		}
		if !used[h.ID] {
			used[h.ID] = true
			p.Workers = append(p.Workers, h.ID)
		}
	}
	return p, nil
}
