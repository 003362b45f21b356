package state

import (
	"cmp"
	"fmt"
	"slices"
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
	return s.freeHosts(infraID, size, -1)
}

// freeHosts is FreeHosts stopping after limit hosts (limit < 0: all).
func (s *State) freeHosts(infraID string, size Size, limit int) []*Host {
	list := s.free[infraID]
	// The list is sorted by CPUs first: skip straight to the first host with enough CPUs.
	i, _ := slices.BinarySearchFunc(list, size.CPUs, func(h *Host, cpus int) int { return cmp.Compare(h.CPUs, cpus) })
	var out []*Host
	for _, h := range list[i:] {
		if limit >= 0 && len(out) == limit {
			break
		}
		if size.Fits(h) {
			out = append(out, h)
		}
	}
	return out
}

// CountFree counts the hosts FreeHosts would return.
func (s *State) CountFree(infraID string, size Size) int { return len(s.freeHosts(infraID, size, -1)) }

// Place picks hosts for cps control planes and workers workers in an infra. It is pure and
// deterministic (same state, same answer) because the FSM runs it inside Apply.
//
// Control planes go first and are spread across failure domains: each pick prefers a host
// whose rack label is not used yet, then one whose zone is not used yet, then best fit.
// Workers then take the best-fitting remaining hosts.
func (s *State) Place(infraID, sizeName string, size Size, cps, workers int) (Placement, error) {
	need := cps + workers
	// Control planes are spread over racks, so they may look past the best-fitting hosts;
	// workers only need the best fits. Bound the candidates accordingly.
	limit := need
	if cps > 0 {
		limit = -1
	}
	free := s.freeHosts(infraID, size, limit)
	if len(free) < need {
		return Placement{}, &CapacityError{Needed: need, Available: s.CountFree(infraID, size), InfraID: infraID, Size: sizeName}
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
