package netconf

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/deployme/deployme/internal/netnstest"
)

// hostWithUplinks builds the acceptance topology: a namespace "host" whose eth0, eth1 and eth2
// are plugged into a bridge of a namespace "sw"; eth0 has a pre-existing address and route.
func hostWithUplinks(t *testing.T) (host, sw *netnstest.NS) {
	t.Helper()
	host, sw = netnstest.New(t), netnstest.New(t)
	netnstest.Bridge(t, sw, "br0")
	netnstest.Plug(t, sw, "br0", host, "eth0", "192.168.77.2/24")
	netnstest.Plug(t, sw, "br0", host, "eth1", "")
	netnstest.Plug(t, sw, "br0", host, "eth2", "")
	host.MustIP(t, "route", "add", "10.77.0.0/16", "via", "192.168.77.1", "dev", "eth0")
	return host, sw
}

func TestApplyVLANBondAddresses(t *testing.T) {
	bonded := func(mode string) Config {
		c := validConfig()
		c.Bonds[0].Mode = mode
		return c
	}
	bondChanges := Changes{
		"create bond bond0",
		"set mtu 9000 on bond0 (was 1500)",
		"create bridge br-k8s",
		"create vlan bond0.100",
		"enslave eth1 to bond0",
		"enslave eth2 to bond0",
		"enslave bond0.100 to br-k8s",
		"set mtu 1400 on eth0 (was 1500)",
		"set bond0 up", // and bond0.100 with it: a VLAN follows its parent up
		"set br-k8s up",
		"add address 10.20.0.5/24 on br-k8s",
		"add address fd00:20::5/64 on br-k8s",
		"add route 10.99.0.0/16 via 10.20.0.1",
		"add route ::/0 via fd00:20::1 dev br-k8s",
	}
	tests := []struct {
		name  string
		kinds []string // link kinds the kernel must support
		cfg   Config
		want  Changes
		// check reads the links back after the first Apply.
		check func(t *testing.T, host *netnstest.NS)
		// partial is cfg without the bridge (and the VLAN); removed are the links that
		// disappear with it, released the links that get back to how they were at the start.
		partial  Config
		removed  []string
		released []string
	}{
		{
			name: "active-backup", kinds: []string{"bond", "vlan"}, cfg: bonded(ModeActiveBackup), want: bondChanges,
			check:   func(t *testing.T, host *netnstest.NS) { checkBond(t, host, netlink.BOND_MODE_ACTIVE_BACKUP) },
			partial: Config{Bonds: bonded(ModeActiveBackup).Bonds, Links: validConfig().Links},
			removed: []string{"bond0.100", "br-k8s"},
		},
		{
			name: "802.3ad", kinds: []string{"bond", "vlan"}, cfg: bonded(Mode8023AD), want: bondChanges,
			check:   func(t *testing.T, host *netnstest.NS) { checkBond(t, host, netlink.BOND_MODE_802_3AD) },
			partial: Config{Bonds: bonded(Mode8023AD).Bonds, Links: validConfig().Links},
			removed: []string{"bond0.100", "br-k8s"},
		},
		{
			// The same without bonding and 802.1Q, which some kernels lack: eth1 is the port.
			name: "bridge only",
			cfg: Config{
				Bridges:   []Bridge{{Name: "br-k8s", Interfaces: []string{"eth1"}}},
				Links:     validConfig().Links,
				Addresses: validConfig().Addresses,
				Routes:    validConfig().Routes,
			},
			want: Changes{
				"create bridge br-k8s",
				"enslave eth1 to br-k8s",
				"set mtu 1400 on eth0 (was 1500)",
				"set br-k8s up",
				"add address 10.20.0.5/24 on br-k8s",
				"add address fd00:20::5/64 on br-k8s",
				"add route 10.99.0.0/16 via 10.20.0.1",
				"add route ::/0 via fd00:20::1 dev br-k8s",
			},
			check: func(t *testing.T, host *netnstest.NS) {
				if m := mustLink(t, host, "eth1").Attrs().MasterIndex; m != mustLink(t, host, "br-k8s").Attrs().Index {
					t.Errorf("eth1 has master index %d, want br-k8s", m)
				}
			},
			partial:  Config{Links: validConfig().Links},
			removed:  []string{"br-k8s"},
			released: []string{"eth1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, _ := hostWithUplinks(t)
			requireKinds(t, host, tt.kinds...)
			path := stateFile(t)
			a := newApplier(t, host, path)
			initial := dump(t, host, true)

			changes := mustApply(t, a, tt.cfg)
			if diff := cmp.Diff(tt.want, changes); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			tt.check(t, host)
			checkBridgeAndAddresses(t, host)

			// Applying again changes nothing, in the kernel as in what Apply reports. The
			// comparison leaves out what the kernel adds by itself, late under load (IPv6
			// link-local addresses and their routes once duplicate address detection ends).
			before := dump(t, host, true)
			if changes := mustApply(t, a, tt.cfg); len(changes) != 0 {
				t.Errorf("second Apply made changes: %q", changes)
			}
			if diff := cmp.Diff(before, dump(t, host, true)); diff != "" {
				t.Errorf("second Apply changed the host (-before +after):\n%s", diff)
			}

			// Without the bridge: it and what hangs on it go, nothing else moves.
			before = dump(t, host, true)
			t.Logf("partial: %q", mustApply(t, a, tt.partial))
			want := without(before, tt.removed...)
			for _, l := range tt.released {
				want = append(without(want, l), linkLine(initial, l))
			}
			if diff := cmp.Diff(sorted(want), dump(t, host, true)); diff != "" {
				t.Errorf("after removing the bridge (-want +got):\n%s", diff)
			}

			// Nothing desired: the host is back as it was, eth0's address and route included.
			t.Logf("empty: %q", mustApply(t, a, Config{}))
			if diff := cmp.Diff(initial, dump(t, host, true)); diff != "" {
				t.Errorf("after the empty config (-initial +now):\n%s", diff)
			}
			if !hasAddress(t, host, "eth0", "192.168.77.2/24") || route(t, host, "10.77.0.0/16") == nil {
				t.Error("eth0 lost its pre-existing address or route")
			}
			nothingOwned(t, path)
		})
	}
}

// TestApplyChangesBondMode: a bond of ours whose mode changes is recreated (bonding cannot
// change the mode of a bond with members), and the VLAN that went with it comes back.
func TestApplyChangesBondMode(t *testing.T) {
	host, _ := hostWithUplinks(t)
	requireKinds(t, host, "bond", "vlan")
	path := stateFile(t)
	a := newApplier(t, host, path)
	initial := dump(t, host, true)
	mustApply(t, a, validConfig())

	lacp := validConfig()
	lacp.Bonds[0].Mode = Mode8023AD
	changes := mustApply(t, a, lacp)
	for _, c := range []string{"delete bond bond0", "delete vlan bond0.100 (with bond0)", "create bond bond0", "create vlan bond0.100", "enslave eth1 to bond0", "enslave bond0.100 to br-k8s"} {
		if !slices.Contains(changes, c) {
			t.Errorf("changes %q lack %q", changes, c)
		}
	}
	checkBond(t, host, netlink.BOND_MODE_802_3AD)
	checkBridgeAndAddresses(t, host)
	if changes := mustApply(t, a, lacp); len(changes) != 0 {
		t.Errorf("second Apply made changes: %q", changes)
	}
	st := owned(t, path)
	var names []string
	for _, l := range st.Links {
		names = append(names, l.Name)
	}
	if diff := cmp.Diff([]string{"br-k8s", "bond0.100", "bond0"}, names); diff != "" {
		t.Errorf("owned links (-want +got):\n%s", diff)
	}
	// The members' state from before the first enslavement is what a release restores.
	for _, e := range st.Enslaved {
		if e.Link == "eth1" && (e.MTU != 1500 || !e.WasUp) {
			t.Errorf("eth1's record %+v lost its state from before the first bond", e)
		}
	}

	mustApply(t, a, Config{})
	if diff := cmp.Diff(initial, dump(t, host, true)); diff != "" {
		t.Errorf("after the empty config (-initial +now):\n%s", diff)
	}
	nothingOwned(t, path)
}

func checkBond(t *testing.T, host *netnstest.NS, mode netlink.BondMode) {
	t.Helper()
	bond, ok := mustLink(t, host, "bond0").(*netlink.Bond)
	if !ok {
		t.Fatalf("bond0 is a %s", mustLink(t, host, "bond0").Type())
	}
	if bond.Mode != mode {
		t.Errorf("bond0 mode %s, want %s", bond.Mode, mode)
	}
	if bond.MTU != 9000 {
		t.Errorf("bond0 mtu %d, want 9000", bond.MTU)
	}
	for _, m := range []string{"eth1", "eth2"} {
		at := mustLink(t, host, m).Attrs()
		if at.MasterIndex != bond.Index {
			t.Errorf("%s has master index %d, want bond0 (%d)", m, at.MasterIndex, bond.Index)
		}
		if at.MTU != 9000 {
			t.Errorf("%s mtu %d, want the bond's 9000", m, at.MTU)
		}
	}
	vlan, ok := mustLink(t, host, "bond0.100").(*netlink.Vlan)
	if !ok {
		t.Fatalf("bond0.100 is a %s", mustLink(t, host, "bond0.100").Type())
	}
	if vlan.VlanId != 100 || vlan.ParentIndex != bond.Index {
		t.Errorf("bond0.100: vlan %d on index %d, want 100 on bond0 (%d)", vlan.VlanId, vlan.ParentIndex, bond.Index)
	}
	if vlan.MTU != 9000 {
		t.Errorf("bond0.100 mtu %d, want its parent's 9000", vlan.MTU)
	}
	if vlan.MasterIndex != mustLink(t, host, "br-k8s").Attrs().Index {
		t.Errorf("bond0.100 is not a port of br-k8s")
	}
}

// checkBridgeAndAddresses checks what every case of the acceptance test shares.
func checkBridgeAndAddresses(t *testing.T, host *netnstest.NS) {
	t.Helper()
	br := mustLink(t, host, "br-k8s")
	if br.Type() != "bridge" || br.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("br-k8s: %s, up %v; want an up bridge", br.Type(), br.Attrs().Flags&net.FlagUp != 0)
	}
	for _, cidr := range []string{"10.20.0.5/24", "fd00:20::5/64"} {
		if !hasAddress(t, host, "br-k8s", cidr) {
			t.Errorf("br-k8s lacks %s", cidr)
		}
	}
	if r := route(t, host, "10.99.0.0/16"); r == nil || !r.Gw.Equal(net.ParseIP("10.20.0.1")) || r.LinkIndex != br.Attrs().Index {
		t.Errorf("route to 10.99.0.0/16: %v, want via 10.20.0.1 dev br-k8s", r)
	}
	if r := route(t, host, "::/0"); r == nil || !r.Gw.Equal(net.ParseIP("fd00:20::1")) {
		t.Errorf("default IPv6 route: %v, want via fd00:20::1", r)
	}
	if mtu := mustLink(t, host, "eth0").Attrs().MTU; mtu != 1400 {
		t.Errorf("eth0 mtu %d, want 1400", mtu)
	}
	if !hasAddress(t, host, "eth0", "192.168.77.2/24") || route(t, host, "10.77.0.0/16") == nil {
		t.Error("eth0 lost its pre-existing address or route")
	}
}

func sorted(lines []string) []string {
	out := slices.Clone(lines)
	slices.Sort(out)
	return out
}

// TestApplyAcrossRestarts: what one Applier created, a new one on the same state file
// recognises as ours: re-applying changes nothing, and an empty config removes it all.
func TestApplyAcrossRestarts(t *testing.T) {
	host, _ := hostWithUplinks(t)
	path := stateFile(t)
	cfg := Config{
		Bridges:   []Bridge{{Name: "br-k8s", Interfaces: []string{"eth1"}, MTU: 1400}},
		Links:     []Link{{Name: "eth2", MTU: 1280}},
		Addresses: []Address{{Link: "br-k8s", CIDR: "10.20.0.5/24"}},
		Routes:    []Route{{Dst: "10.99.0.0/16", Gateway: "10.20.0.1"}},
	}
	initial := dump(t, host, true)
	mustApply(t, newApplier(t, host, path), cfg)
	after := dump(t, host, true)

	again := newApplier(t, host, path)
	if changes := mustApply(t, again, cfg); len(changes) != 0 {
		t.Errorf("a new Applier re-applying made changes: %q", changes)
	}
	if diff := cmp.Diff(after, dump(t, host, true)); diff != "" {
		t.Errorf("the host changed (-before +after):\n%s", diff)
	}
	mustApply(t, again, Config{})
	if diff := cmp.Diff(initial, dump(t, host, true)); diff != "" {
		t.Errorf("after the empty config (-initial +now):\n%s", diff)
	}
	nothingOwned(t, path)
}

// TestApplyLeavesPreexistingAlone: what the host had before is never ours, even when the
// config asks for exactly that, and a down link we brought up goes down again.
func TestApplyLeavesPreexistingAlone(t *testing.T) {
	host, _ := hostWithUplinks(t)
	host.MustIP(t, "addr", "add", "10.66.0.2/24", "dev", "eth1")
	host.MustIP(t, "route", "add", "10.67.0.0/16", "via", "10.66.0.1")
	host.MustIP(t, "link", "set", "eth2", "down")
	path := stateFile(t)
	a := newApplier(t, host, path)
	initial := dump(t, host, true)

	cfg := Config{
		Links: []Link{{Name: "eth2"}},
		Addresses: []Address{
			{Link: "eth1", CIDR: "10.66.0.2/24"}, // the host's
			{Link: "eth1", CIDR: "10.66.0.3/24"}, // ours
		},
		Routes: []Route{
			{Dst: "10.67.0.0/16", Gateway: "10.66.0.1"}, // the host's
			{Dst: "10.68.0.0/16", Gateway: "10.66.0.1"}, // ours
		},
	}
	want := Changes{"set eth2 up", "add address 10.66.0.3/24 on eth1", "add route 10.68.0.0/16 via 10.66.0.1"}
	if diff := cmp.Diff(want, mustApply(t, a, cfg)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	st := owned(t, path)
	if diff := cmp.Diff([]Address{{Link: "eth1", CIDR: "10.66.0.3/24"}}, st.Addresses); diff != "" {
		t.Errorf("owned addresses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Route{{Dst: "10.68.0.0/16", Gateway: "10.66.0.1"}}, st.Routes); diff != "" {
		t.Errorf("owned routes (-want +got):\n%s", diff)
	}

	want = Changes{"delete route 10.68.0.0/16 via 10.66.0.1", "delete address 10.66.0.3/24 on eth1", "set eth2 down"}
	if diff := cmp.Diff(want, mustApply(t, a, Config{})); diff != "" {
		t.Errorf("changes of the empty config (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(initial, dump(t, host, true)); diff != "" {
		t.Errorf("after the empty config (-initial +now):\n%s", diff)
	}
}

// TestApplyConflicts: when doing what the config asks needs changing what is not ours, Apply
// refuses with ErrConflict and leaves the other party's state as it was.
func TestApplyConflicts(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, host *netnstest.NS)
		cfg   Config
	}{
		{
			name: "a link of another kind has the name",
			setup: func(t *testing.T, host *netnstest.NS) {
				host.MustIP(t, "link", "set", "eth2", "down") // the kernel renames only down links
				host.MustIP(t, "link", "set", "eth2", "name", "br-k8s")
			},
			cfg: Config{Bridges: []Bridge{{Name: "br-k8s"}}},
		},
		{
			name: "the port belongs to a foreign bridge",
			setup: func(t *testing.T, host *netnstest.NS) {
				netnstest.Bridge(t, host, "br-foreign")
				host.MustIP(t, "link", "set", "eth1", "master", "br-foreign")
			},
			cfg: Config{Bridges: []Bridge{{Name: "br-k8s", Interfaces: []string{"eth1"}}}},
		},
		{
			name: "another default route",
			setup: func(t *testing.T, host *netnstest.NS) {
				host.MustIP(t, "route", "add", "default", "via", "192.168.77.1")
			},
			cfg: Config{Routes: []Route{{Dst: "default", Gateway: "192.168.77.254"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, _ := hostWithUplinks(t)
			tt.setup(t, host)
			path := stateFile(t)
			a := newApplier(t, host, path)
			initial := dump(t, host, true)
			_, err := a.Apply(context.Background(), tt.cfg)
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("Apply = %v, want ErrConflict", err)
			}
			t.Log(err)
			// What we did create before the conflict stays recorded, so the empty config
			// removes it and leaves the host as it was.
			mustApply(t, a, Config{})
			if diff := cmp.Diff(initial, dump(t, host, true)); diff != "" {
				t.Errorf("(-initial +now):\n%s", diff)
			}
			nothingOwned(t, path)
		})
	}
}

// TestApplyMissingLink: a config naming a link the host lacks fails before changing anything,
// also when the missing link comes last, and names the field.
func TestApplyMissingLink(t *testing.T) {
	host, _ := hostWithUplinks(t)
	path := stateFile(t)
	a := newApplier(t, host, path)
	mustApply(t, a, Config{Bridges: []Bridge{{Name: "br-old"}}})
	before := dump(t, host, true)
	cfg := Config{
		Bridges:   []Bridge{{Name: "br-k8s", Interfaces: []string{"eth1"}}},
		Addresses: []Address{{Link: "br-k8s", CIDR: "10.1.0.1/24"}, {Link: "eth9", CIDR: "10.2.0.1/24"}},
	}
	for _, c := range []Config{cfg, {Addresses: []Address{{Link: "br-old", CIDR: "10.2.0.1/24"}}}} {
		changes, err := a.Apply(context.Background(), c)
		if !errors.Is(err, ErrNotFound) || len(changes) != 0 {
			t.Errorf("Apply = %q, %v; want no change and ErrNotFound", changes, err)
		}
		t.Log(err)
	}
	if diff := cmp.Diff(before, dump(t, host, true)); diff != "" {
		t.Errorf("the host changed (-before +after):\n%s", diff)
	}
}

func TestApplyRefusesInvalidConfig(t *testing.T) {
	host, _ := hostWithUplinks(t)
	a := newApplier(t, host, stateFile(t))
	before := dump(t, host, true)
	_, err := a.Apply(context.Background(), Config{VLANs: []VLAN{{Name: "v", Link: "eth1", ID: 5000}}})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "vlans[0].id" {
		t.Fatalf("Apply = %v, want a FieldError on vlans[0].id", err)
	}
	if diff := cmp.Diff(before, dump(t, host, true)); diff != "" {
		t.Errorf("the host changed:\n%s", diff)
	}
}
