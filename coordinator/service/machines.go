package service

import (
	"context"
	"net"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func machineOut(m *state.Machine) v1.Machine {
	out := v1.Machine{MAC: m.MAC, InfraID: m.InfraID, HostID: m.HostID, NextBoot: m.NextBoot, DiskExit: m.DiskExit, DiskChain: m.DiskChain,
		Boots: m.Boots, State: m.State, Reason: m.Reason, LeaseIP: m.LeaseIP, FirstSeen: apiTime(m.FirstSeen), LastSeen: apiTime(m.LastSeen),
		History: []v1.BootEvent{}}
	for _, e := range m.History {
		out.History = append(out.History, v1.BootEvent{Time: apiTime(e.Time), Kind: e.Kind, Detail: e.Detail})
	}
	return out
}

// ListMachines lists network-booted machines, of one infra when infraID is set.
func (s *Service) ListMachines(ctx context.Context, infraID string) (*v1.MachineList, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	out := &v1.MachineList{Items: []v1.Machine{}}
	s.store.Read(func(st *state.State) {
		for _, m := range st.Machines() {
			if infraID == "" || m.InfraID == infraID {
				out.Items = append(out.Items, machineOut(m))
			}
		}
	})
	return out, nil
}

// GetMachine returns one machine by MAC.
func (s *Service) GetMachine(ctx context.Context, mac string) (*v1.Machine, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	return s.LocalMachine(mac)
}

// LocalMachine reads a machine from this replica's state (the boot services' read: a
// machine asking for its script must get an answer even from a replica behind by a write).
func (s *Service) LocalMachine(mac string) (*v1.Machine, error) {
	var out *v1.Machine
	s.store.Read(func(st *state.State) {
		if m, ok := st.Machine(mac); ok {
			o := machineOut(m)
			out = &o
		}
	})
	if out == nil {
		return nil, v1.Errorf(v1.CodeNotFound, "machine %s not found", mac)
	}
	return out, nil
}

// SetMachineBoot sets a machine's next boot.
func (s *Service) SetMachineBoot(ctx context.Context, mac string, req *v1.SetMachineBootRequest) (*v1.Machine, error) {
	m := &raftcmdv1.SetMachineBoot{Mac: mac, NextBoot: *req.NextBoot, At: unixNano(s.now())}
	if req.DiskExit != nil {
		m.DiskExit = *req.DiskExit
	}
	if req.DiskChain != nil {
		m.DiskChain = *req.DiskChain
	}
	a, err := s.apply(ctx, command.TypeSetMachineBoot, m, mac)
	if err != nil {
		return nil, err
	}
	if mc, ok := a.Value.(*state.Machine); ok {
		out := machineOut(mc)
		return &out, nil
	}
	return s.LocalMachine(mac)
}

// RecordBoot adds a step to a machine's boot history (the boot services' write); at is when
// it happened (the write may come a little later).
func (s *Service) RecordBoot(ctx context.Context, mac net.HardwareAddr, infraID, kind, detail string, loopLimit int, at time.Time) error {
	_, err := s.apply(ctx, command.TypeRecordBoot, &raftcmdv1.RecordBoot{Mac: mac.String(), InfraId: infraID, Kind: kind, Detail: detail,
		LoopLimit: int32(loopLimit), At: unixNano(at)}, mac.String())
	return err
}

// AllocateLease gives a machine a full-mode DHCP address from [lo, hi].
func (s *Service) AllocateLease(ctx context.Context, mac net.HardwareAddr, infraID, lo, hi string, d time.Duration) (*v1.Machine, error) {
	a, err := s.apply(ctx, command.TypeAllocateLease, &raftcmdv1.AllocateLease{Mac: mac.String(), InfraId: infraID, RangeStart: lo, RangeEnd: hi,
		DurationNs: int64(d), At: unixNano(s.now())}, mac.String())
	if err != nil {
		return nil, err
	}
	if mc, ok := a.Value.(*state.Machine); ok {
		out := machineOut(mc)
		return &out, nil
	}
	return s.LocalMachine(mac.String())
}
