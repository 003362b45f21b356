package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/deployme/deployme/internal/netnstest"
	"github.com/deployme/deployme/internal/nlretry"
)

// newApplier returns an Applier acting in ns, with its state in stateFile.
func newApplier(t *testing.T, ns *netnstest.NS, stateFile string) *Applier {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Handle = ns.Handle()
	cfg.StateFile = stateFile
	cfg.ProbeInterval = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func stateFile(t *testing.T) string { return filepath.Join(t.TempDir(), "netconf.json") }

func mustApply(t *testing.T, a *Applier, c Config) Changes {
	t.Helper()
	changes, err := a.Apply(context.Background(), c)
	if err != nil {
		t.Fatalf("Apply: %v (changes so far: %q)", err, changes)
	}
	return changes
}

// requireKinds skips the test when the kernel cannot create links of these kinds (a kernel
// built without bonding or 802.1Q, as some CI sandboxes are).
func requireKinds(t *testing.T, ns *netnstest.NS, kinds ...string) {
	t.Helper()
	h := ns.Handle()
	for _, kind := range kinds {
		var l netlink.Link
		switch kind {
		case "bond":
			l = netlink.NewLinkBond(netlink.LinkAttrs{Name: "kindprobe"})
		case "vlan":
			// On a veth: a VLAN on lo is refused with the same error as a missing module.
			parent := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "kindprobe-p"}, PeerName: "kindprobe-q"}
			if err := h.LinkAdd(parent); err != nil {
				t.Fatal(err)
			}
			defer h.LinkDel(parent)
			p, err := h.LinkByName("kindprobe-p")
			if err != nil {
				t.Fatal(err)
			}
			l = &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "kindprobe", ParentIndex: p.Attrs().Index}, VlanId: 7}
		default:
			t.Fatalf("requireKinds: unknown kind %s", kind)
		}
		err := h.LinkAdd(l)
		if errors.Is(err, syscall.EOPNOTSUPP) {
			t.Skipf("the kernel cannot create %s links (no %s support built or loadable)", kind, kind)
		}
		if err != nil {
			t.Fatalf("create a %s to probe for support: %v", kind, err)
		}
		if err := h.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
}

// dump lists every link, address and route of ns (all tables), one sorted line each, every
// line naming its link as dev=, master= or parent=, so that a test can drop a link's lines.
// With stable set, IPv6 link-local addresses and link-local and multicast routes are left out:
// the kernel removes and re-creates those by itself when a link goes down and up.
func dump(t *testing.T, ns *netnstest.NS, stable bool) []string {
	t.Helper()
	h := ns.Handle()
	// A dump interrupted by a change still settling (IPv6 DAD, a bond port coming up) is
	// asked again, as the applier does.
	var links []netlink.Link
	err := retryDump(func() (err error) { links, err = h.LinkList(); return err })
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	linkLocal := netip.MustParsePrefix("fe80::/10")
	multicast := netip.MustParsePrefix("ff00::/8")
	var out []string
	for _, l := range links {
		at := l.Attrs()
		line := fmt.Sprintf("link dev=%s kind=%s mtu=%d up=%t master=%s mac=%s",
			at.Name, l.Type(), at.MTU, at.Flags&net.FlagUp != 0, names[at.MasterIndex], at.HardwareAddr)
		switch v := l.(type) {
		case *netlink.Bond:
			line += " mode=" + v.Mode.String()
		case *netlink.Vlan:
			line += fmt.Sprintf(" vlan=%d parent=%s", v.VlanId, names[v.ParentIndex])
		}
		out = append(out, line)
		var addrs []netlink.Addr
		err := retryDump(func() (err error) { addrs, err = h.AddrList(l, netlink.FAMILY_ALL); return err })
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			p := prefixOf(a.IPNet)
			if stable && linkLocal.Contains(p.Addr()) {
				continue
			}
			out = append(out, fmt.Sprintf("addr dev=%s %s", at.Name, p))
		}
	}
	var routes []netlink.Route
	err = retryDump(func() (err error) {
		routes, err = h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		dst := "default"
		if r.Dst != nil {
			p := prefixOf(r.Dst)
			if stable && (linkLocal.Overlaps(p) || multicast.Overlaps(p)) {
				continue
			}
			dst = p.String()
		}
		out = append(out, fmt.Sprintf("route table=%d type=%d dev=%s dst=%s gw=%s src=%s proto=%d scope=%d",
			r.Table, r.Type, names[r.LinkIndex], dst, r.Gw, r.Src, r.Protocol, r.Scope))
	}
	slices.Sort(out)
	return out
}

// without drops the lines naming any of the links.
func without(lines []string, links ...string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(line string) bool {
		for _, f := range strings.Fields(line) {
			for _, l := range links {
				if f == "dev="+l || f == "master="+l || f == "parent="+l {
					return true
				}
			}
		}
		return false
	})
}

// linkLine returns the "link dev=name" line of a dump.
func linkLine(lines []string, name string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, "link dev="+name+" ") {
			return l
		}
	}
	return ""
}

func mustLink(t *testing.T, ns *netnstest.NS, name string) netlink.Link {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// hasAddress reports whether link has cidr.
func hasAddress(t *testing.T, ns *netnstest.NS, link, cidr string) bool {
	t.Helper()
	l := mustLink(t, ns, link)
	addrs, err := nlretry.Dump(func() ([]netlink.Addr, error) { return ns.Handle().AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParsePrefix(cidr)
	for _, a := range addrs {
		if prefixOf(a.IPNet) == want {
			return true
		}
	}
	return false
}

// route returns the main-table route to dst, or nil.
func route(t *testing.T, ns *netnstest.NS, dst string) *netlink.Route {
	t.Helper()
	p := netip.MustParsePrefix(dst)
	routes, err := nlretry.Dump(func() ([]netlink.Route, error) {
		return ns.Handle().RouteListFiltered(family(p.Addr()), &netlink.Route{Table: mainTable}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range routes {
		got := netip.PrefixFrom(zeroAddr(p.Addr()), 0)
		if r.Dst != nil {
			got = prefixOf(r.Dst)
		}
		if got == p {
			return &routes[i]
		}
	}
	return nil
}

// owned reads the state file.
func owned(t *testing.T, path string) *state {
	t.Helper()
	st, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nothingOwned fails unless the state file records nothing as ours.
func nothingOwned(t *testing.T, path string) {
	t.Helper()
	st := owned(t, path)
	if len(st.Links)+len(st.Enslaved)+len(st.MTUs)+len(st.Up)+len(st.Addresses)+len(st.Routes) != 0 {
		t.Errorf("state still owns things: %+v", st)
	}
}
