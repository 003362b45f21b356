package fsm

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"

	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// vipFor records the control-plane VIP when the endpoint is an address of the infra's VIP
// pool (endpointFor picked it); nobody holds it yet (epoch 0).
func (f *FSM) vipFor(infra *state.Infra, endpoint string) *state.ClusterVIP {
	if infra.VIPPool == "" {
		return nil
	}
	pool, err := netip.ParsePrefix(infra.VIPPool)
	if err != nil {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !pool.Contains(addr) {
		return nil
	}
	return &state.ClusterVIP{Address: addr.String(), Bits: pool.Bits()}
}

// applySetVIPHolder hands the VIP to a control-plane host at the next epoch. The epoch must
// follow the recorded one exactly, so of two decisions made on the same state only the
// first lands.
func (f *FSM) applySetVIPHolder(m *raftcmdv1.SetVIPHolder) any {
	old, ok := f.st.Cluster(m.GetClusterId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetClusterId())
	}
	if old.VIP == nil {
		return state.Conflict("cluster %s has no VIP", old.ID)
	}
	if m.GetEpoch() != old.VIP.Epoch+1 {
		return state.Conflict("VIP epoch %d is not the next one after %d", m.GetEpoch(), old.VIP.Epoch)
	}
	n, ok := f.st.Node(m.GetHostId())
	if !ok || n.ClusterID != old.ID || !n.IsControlPlane() || n.State == state.NodeRemoving {
		return state.Conflict("host %s is not a control plane of cluster %s", m.GetHostId(), old.ID)
	}
	at := unixTime(m.GetAt())
	c := *old
	vip := *old.VIP
	vip.Holder, vip.Epoch, vip.Held = m.GetHostId(), m.GetEpoch(), false
	c.VIP = &vip
	f.st.PutCluster(&c)
	f.event(c.ID, vip.Holder, "vip.assigned", fmt.Sprintf("VIP %s assigned to host %s at epoch %d (%s)", vip.Address, vip.Holder, vip.Epoch, m.GetReason()), at)
	return &c
}

// applyReportVIPStatus records what a control-plane agent says: its API server readiness,
// and for the current holder at the current epoch whether the address is up or was given up.
// Reports about an older epoch only update readiness.
func (f *FSM) applyReportVIPStatus(m *raftcmdv1.ReportVIPStatus) any {
	old, ok := f.st.Cluster(m.GetClusterId())
	if !ok {
		return state.NotFound("cluster %s not found", m.GetClusterId())
	}
	oldNode, ok := f.st.Node(m.GetHostId())
	if !ok || oldNode.ClusterID != old.ID || !oldNode.IsControlPlane() {
		return state.Conflict("host %s is not a control plane of cluster %s", m.GetHostId(), old.ID)
	}
	at := unixTime(m.GetAt())
	if oldNode.APIReady != m.GetReady() {
		n := *oldNode
		n.APIReady = m.GetReady()
		f.st.PutNode(&n)
	}
	if old.VIP == nil || old.VIP.Holder != m.GetHostId() || old.VIP.Epoch != m.GetEpoch() {
		return old
	}
	c := *old
	vip := *old.VIP
	switch {
	case m.GetReleased():
		vip.Holder, vip.Held = "", false
		f.event(c.ID, m.GetHostId(), "vip.released", fmt.Sprintf("host %s gave VIP %s up at epoch %d: %s", m.GetHostId(), vip.Address, vip.Epoch, m.GetReason()), at)
	case m.GetHolding() && !vip.Held:
		vip.Held = true
		f.event(c.ID, m.GetHostId(), "vip.held", fmt.Sprintf("VIP %s is up on host %s at epoch %d", vip.Address, m.GetHostId(), vip.Epoch), at)
	default:
		return old
	}
	c.VIP = &vip
	f.st.PutCluster(&c)
	return &c
}
