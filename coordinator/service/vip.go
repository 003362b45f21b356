package service

import (
	"context"
	"errors"
	"net/netip"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// SetVIPHolder gives a cluster's VIP to a control-plane host (the reconciler's write).
func (s *Service) SetVIPHolder(ctx context.Context, m *raftcmdv1.SetVIPHolder) error {
	_, err := s.apply(ctx, command.TypeSetVIPHolder, m, m.GetClusterId())
	return err
}

// ReportVIP records a control-plane agent's VIP status. A report the state machine refuses
// (the host left the cluster, the cluster is gone) is ErrStaleReport.
func (s *Service) ReportVIP(ctx context.Context, hostID string, u *agentv1.VIPStatus) error {
	_, err := s.apply(ctx, command.TypeReportVIPStatus, &raftcmdv1.ReportVIPStatus{
		ClusterId: u.GetClusterId(), HostId: hostID, Epoch: u.GetEpoch(), Holding: u.GetHolding(),
		Ready: u.GetReady(), Released: u.GetReleased(), Reason: u.GetReason(), At: unixNano(s.now()),
	}, u.GetClusterId())
	if refused(err) {
		return errors.Join(ErrStaleReport, err)
	}
	return err
}

// VIPAssignment is what host hostID must know about its cluster's VIP now, or nil when the
// host is no control plane of a cluster with a VIP. Every control plane hears of the
// current epoch, holder or not, so a former holder drops the address.
func (s *Service) VIPAssignment(hostID string) *agentv1.VIPAssignment {
	var out *agentv1.VIPAssignment
	s.store.Read(func(st *state.State) {
		n, ok := st.Node(hostID)
		if !ok || !n.IsControlPlane() {
			return
		}
		c, ok := st.Cluster(n.ClusterID)
		if !ok || c.VIP == nil || c.VIP.Epoch == 0 {
			return
		}
		out = &agentv1.VIPAssignment{ClusterId: c.ID, Address: vipPrefix(st, c.VIP, hostID), Epoch: c.VIP.Epoch,
			Holder: c.VIP.Holder == hostID && c.Status != state.StatusDeleting}
	})
	return out
}

// vipPrefix writes the VIP with the prefix length of the host's own subnet that contains
// it (the kernel then answers ARP for it on that link), else the pool's.
func vipPrefix(st *state.State, v *state.ClusterVIP, hostID string) string {
	addr, err := netip.ParseAddr(v.Address)
	if err != nil {
		return v.Address
	}
	if h, ok := st.Host(hostID); ok {
		for _, nic := range h.NICs {
			for _, a := range nic.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil && p.Masked().Contains(addr) {
					return netip.PrefixFrom(addr, p.Bits()).String()
				}
			}
		}
	}
	return netip.PrefixFrom(addr, v.Bits).String()
}
