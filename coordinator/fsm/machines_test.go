package fsm_test

import (
	"strings"
	"testing"
	"time"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

func machine(r *replay, mac string) *state.Machine {
	var m *state.Machine
	r.f.Read(func(st *state.State) { m, _ = st.Machine(mac) })
	return m
}

// TestBootLoop: a machine that network-boots past the limit without its agent registering
// is in error with the reason; an operator's next-boot choice clears it; a machine told to
// boot its disk that keeps network-booting is caught the same way.
func TestBootLoop(t *testing.T) {
	r := filled(t)
	const mac = "52:54:00:bb:00:01"
	boot := func() {
		r.ok(command.TypeRecordBoot, &raftcmdv1.RecordBoot{Mac: mac, InfraId: "infra_dc", Kind: "dhcp.offer", Detail: "BIOS", LoopLimit: 3, At: r.at()})
		r.ok(command.TypeRecordBoot, &raftcmdv1.RecordBoot{Mac: mac, InfraId: "infra_dc", Kind: "boot.script", Detail: "agent", LoopLimit: 3, At: r.at()})
	}
	for range 3 {
		boot()
	}
	if m := machine(r, mac); m.State != state.MachineBooting || m.Boots != 3 || m.NextBoot != state.BootAgent {
		t.Fatalf("after 3 boots: %+v", m)
	}
	boot()
	m := machine(r, mac)
	if m.State != state.MachineError || !strings.Contains(m.Reason, "boot_loop: 4 network boots without its agent registering") {
		t.Fatalf("after 4 boots: state %s reason %q", m.State, m.Reason)
	}
	if last := m.History[len(m.History)-1]; last.Kind != "boot.loop" {
		t.Errorf("last history entry %+v, want boot.loop", last)
	}
	r.ok(command.TypeSetMachineBoot, &raftcmdv1.SetMachineBoot{Mac: mac, NextBoot: "disk", DiskExit: "sanboot", At: r.at()})
	if m := machine(r, mac); m.State != state.MachineBooting || m.Boots != 0 || m.NextBoot != state.BootDisk || m.DiskExit != "sanboot" {
		t.Fatalf("after the operator's choice: %+v", m)
	}
	for range 4 {
		boot()
	}
	if m := machine(r, mac); m.State != state.MachineError || !strings.Contains(m.Reason, "the disk does not boot") {
		t.Fatalf("disk machine network-booting: state %s reason %q", m.State, m.Reason)
	}
	// The history is bounded.
	for range state.MaxBootHistory {
		boot()
	}
	if n := len(machine(r, mac).History); n != state.MaxBootHistory {
		t.Errorf("history holds %d entries, want %d", n, state.MaxBootHistory)
	}
}

// TestLeases: a machine keeps its address across renewals; the next machine gets the next
// free one; an expired lease is given to someone else; the range can run out.
func TestLeases(t *testing.T) {
	r := filled(t)
	lease := func(mac string) any {
		return r.apply(command.TypeAllocateLease, &raftcmdv1.AllocateLease{Mac: mac, InfraId: "infra_dc", RangeStart: "10.30.0.10",
			RangeEnd: "10.30.0.11", DurationNs: int64(time.Minute), At: r.at()})
	}
	ip := func(res any) string {
		m, ok := res.(*state.Machine)
		if !ok {
			return ""
		}
		return m.LeaseIP
	}
	if got := ip(lease("52:54:00:cc:00:01")); got != "10.30.0.10" {
		t.Fatalf("first lease %q", got)
	}
	if got := ip(lease("52:54:00:cc:00:01")); got != "10.30.0.10" {
		t.Fatalf("renewal moved the address to %q", got)
	}
	if got := ip(lease("52:54:00:cc:00:02")); got != "10.30.0.11" {
		t.Fatalf("second machine got %q", got)
	}
	if _, ok := lease("52:54:00:cc:00:03").(*state.Error); !ok {
		t.Fatal("a third machine got an address from a 2-address range")
	}
	r.clock += 120 // every lease expired (the replay clock counts seconds)
	if got := ip(lease("52:54:00:cc:00:03")); got != "10.30.0.10" {
		t.Fatalf("after expiry the third machine got %q, want the lowest address", got)
	}
}

// TestRegistrationLinksTheMachine: the agent of a network-booted machine registers: the
// machine is registered, linked to its host, and its loop counter starts again.
func TestRegistrationLinksTheMachine(t *testing.T) {
	r := filled(t)
	m := machine(r, "52:54:00:aa:00:01") // booted and registered in fill()
	if m == nil || m.HostID != "host_agent1" || m.State != state.MachineRegistered || m.Boots != 0 || m.LeaseIP != "10.20.0.100" {
		t.Fatalf("machine after its agent registered: %+v", m)
	}
	var kinds []string
	for _, e := range m.History {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "boot.script,agent.registered,boot.next" {
		t.Errorf("history %s", got)
	}
}

// TestAutoAccept: on a bare-metal infra, a registering host that matches a rule (MAC
// prefix, serial, every label) is available at once; any other is discovered.
func TestAutoAccept(t *testing.T) {
	r := filled(t)
	in := infraCmd("infra_rack", "rack", "baremetal", "")
	in.Infra.AutoAccept = &raftcmdv1.AutoAccept{MacPrefixes: []string{"52:54:00:AB"}, Serials: []string{"SN-1"}, Labels: map[string]string{"rack": "r1", "row": "a"}}
	r.ok(command.TypeCreateInfra, in)
	r.ok(command.TypeCreateJoinToken, joinTokenCmd("jt_rack", "infra_rack", "hash-jt-rack"))
	cases := []struct {
		id, mac, serial string
		labels          map[string]string
		want            string
	}{
		{"host_b1", "52:54:00:ab:01:02", "", nil, state.HostAvailable},
		{"host_b2", "52:54:00:cd:01:02", "SN-1", nil, state.HostAvailable},
		{"host_b3", "52:54:00:cd:01:03", "SN-2", map[string]string{"rack": "r1", "row": "a", "x": "y"}, state.HostAvailable},
		{"host_b4", "52:54:00:cd:01:04", "SN-3", map[string]string{"rack": "r1"}, state.HostDiscovered},
		{"host_b5", "aa:bb:cc:dd:ee:ff", "", nil, state.HostDiscovered},
	}
	for _, tc := range cases {
		res := r.ok(command.TypeRegisterAgent, &raftcmdv1.RegisterAgent{JoinTokenId: "jt_rack", At: r.at(), Host: &raftcmdv1.Host{
			Id: tc.id, InfraId: "infra_rack", Hostname: tc.id, Cpus: 4, MemoryBytes: 8 << 30, Serial: tc.serial, Labels: tc.labels,
			Nics: []*raftcmdv1.NIC{{Name: "eth0", Mac: tc.mac}}}})
		if h := res.(*state.Host); h.State != tc.want {
			t.Errorf("%s (mac %s, serial %q, labels %v): %s, want %s", tc.id, tc.mac, tc.serial, tc.labels, h.State, tc.want)
		}
	}
}

// TestRebootedMachineKeepsItsHost: the live image keeps no identity, so a network-booted
// machine registers again at every boot with a new key; it gets its host back (same ID,
// state kept, new key) instead of a second host, and the join token counts the use.
func TestRebootedMachineKeepsItsHost(t *testing.T) {
	r := filled(t)
	r.ok(command.TypeCreateInfra, infraCmd("infra_bm", "bm", "baremetal", ""))
	r.ok(command.TypeCreateJoinToken, joinTokenCmd("jt_bm", "infra_bm", "hash-jt-bm"))
	const mac = "52:54:00:dd:00:01"
	boot := func(hostID, key string) *state.Host {
		r.ok(command.TypeRecordBoot, &raftcmdv1.RecordBoot{Mac: mac, InfraId: "infra_bm", Kind: "boot.script", Detail: "agent", LoopLimit: 5, At: r.at()})
		return r.ok(command.TypeRegisterAgent, &raftcmdv1.RegisterAgent{JoinTokenId: "jt_bm", KeyId: key, At: r.at(), Host: &raftcmdv1.Host{
			Id: hostID, InfraId: "infra_bm", Hostname: "node", Cpus: 4, MemoryBytes: 8 << 30,
			Nics: []*raftcmdv1.NIC{{Name: "eth0", Mac: mac}}}}).(*state.Host)
	}
	first := boot("host_first", "key-1")
	r.ok(command.TypeAcceptHost, &raftcmdv1.AcceptHost{Id: first.ID, At: r.at()})
	again := boot("host_second", "key-2")
	if again.ID != first.ID || again.KeyID != "key-2" || again.State != state.HostAvailable {
		t.Fatalf("second boot registered as %+v, want host %s back (available, new key)", again, first.ID)
	}
	if h := r.host("host_second"); h != nil {
		t.Errorf("a second host was created: %+v", h)
	}
	if m := machine(r, mac); m.HostID != first.ID || m.Boots != 0 || m.State != state.MachineRegistered {
		t.Errorf("machine after the second registration: %+v", m)
	}
	var uses int
	r.f.Read(func(st *state.State) { jt, _ := st.JoinToken("jt_bm"); uses = jt.Uses })
	if uses != 2 {
		t.Errorf("join token uses %d, want 2", uses)
	}
}
