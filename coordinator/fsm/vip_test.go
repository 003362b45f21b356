package fsm_test

import (
	"testing"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func cpOf(r *replay, clusterID string) string {
	for _, n := range r.nodes(clusterID) {
		if n.IsControlPlane() {
			return n.HostID
		}
	}
	r.t.Fatalf("no control plane in %s", clusterID)
	return ""
}

func workerOf(r *replay, clusterID string) string {
	for _, n := range r.nodes(clusterID) {
		if n.Role == state.RoleWorker {
			return n.HostID
		}
	}
	r.t.Fatalf("no worker in %s", clusterID)
	return ""
}

// TestVIPEpochs: a cluster whose endpoint came from the infra's pool has a VIP nobody holds;
// each holder comes with the next epoch, a decision made on a stale epoch is refused,
// the holder's reports mark it held or given up, and reports about another epoch only
// update readiness.
func TestVIPEpochs(t *testing.T) {
	r := filled(t)
	// fill() gave cls_dc's VIP to its first control plane at epoch 1, and it reported it up.
	cp := cpOf(r, "cls_dc")
	c := r.cluster("cls_dc")
	if c.VIP == nil || c.VIP.Address != "10.20.0.1" || c.VIP.Bits != 29 || c.VIP.Holder != cp || c.VIP.Epoch != 1 || !c.VIP.Held {
		t.Fatalf("VIP = %+v (endpoint %s), want 10.20.0.1/29 held by %s at epoch 1", c.VIP, c.Endpoint, cp)
	}
	if p := r.cluster("cls_prod"); p.VIP != nil {
		t.Errorf("a cluster of an infra without a pool has VIP %+v", p.VIP)
	}
	// A second decision taken on the same state (epoch 1 again) loses.
	if _, ok := r.apply(command.TypeSetVIPHolder, &raftcmdv1.SetVIPHolder{ClusterId: "cls_dc", HostId: cp, Epoch: 1, At: r.at()}).(*state.Error); !ok {
		t.Fatal("a second epoch 1 was accepted")
	}
	r.ok(command.TypeReportVIPStatus, &raftcmdv1.ReportVIPStatus{ClusterId: "cls_dc", HostId: cp, Epoch: 1, Holding: true, Ready: true, At: r.at()})
	if !apiReady(r, cp) {
		t.Error("readiness not recorded")
	}
	// A report about an older epoch changes nothing but readiness.
	r.ok(command.TypeSetVIPHolder, &raftcmdv1.SetVIPHolder{ClusterId: "cls_dc", HostId: cp, Epoch: 2, Reason: "test", At: r.at()})
	r.ok(command.TypeReportVIPStatus, &raftcmdv1.ReportVIPStatus{ClusterId: "cls_dc", HostId: cp, Epoch: 1, Released: true, Ready: true, At: r.at()})
	if v := r.cluster("cls_dc").VIP; v.Holder != cp || v.Epoch != 2 || v.Held {
		t.Fatalf("a stale release changed the VIP: %+v", v)
	}
	r.ok(command.TypeReportVIPStatus, &raftcmdv1.ReportVIPStatus{ClusterId: "cls_dc", HostId: cp, Epoch: 2, Released: true, Reason: "apiserver_unready", At: r.at()})
	if v := r.cluster("cls_dc").VIP; v.Holder != "" || v.Epoch != 2 {
		t.Fatalf("after the release: %+v", v)
	}
	if apiReady(r, cp) {
		t.Error("a report with ready=false left the host ready")
	}
}

func apiReady(r *replay, hostID string) bool {
	var ready bool
	r.f.Read(func(st *state.State) {
		n, _ := st.Node(hostID)
		ready = n != nil && n.APIReady
	})
	return ready
}
