package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/deployme/deployme/internal/nlretry"
)

// ---- ensure: what is wanted and missing ----

// ensure creates links before enslaving (a bridge port may be a VLAN on a bond), sets each
// bond's MTU before the VLANs on it are created (a VLAN takes its parent's MTU when created),
// and adds addresses after links are up (the kernel drops IPv6 addresses of a link that goes
// down) and routes last (a gateway must be reachable through an address).
func (r *reconciler) ensure() error {
	var steps []func() error
	for _, b := range r.want.cfg.Bonds {
		steps = append(steps, func() error { return r.ensureLink(b.Name) }, func() error { return r.ensureMTU(b.Name) })
	}
	for _, br := range r.want.cfg.Bridges {
		steps = append(steps, func() error { return r.ensureLink(br.Name) })
	}
	for _, v := range r.want.vlans {
		steps = append(steps, func() error { return r.ensureLink(v.Name) }, func() error { return r.ensureMTU(v.Name) })
	}
	for _, b := range r.want.cfg.Bonds {
		for _, m := range b.Interfaces {
			steps = append(steps, func() error { return r.ensureMaster(m, b.Name, true) })
		}
	}
	for _, br := range r.want.cfg.Bridges {
		for _, port := range br.Interfaces {
			steps = append(steps, func() error { return r.ensureMaster(port, br.Name, false) })
		}
		// After the ports: a bridge whose MTU was never set follows its smallest port.
		steps = append(steps, func() error { return r.ensureMTU(br.Name) })
	}
	for _, l := range r.want.cfg.Links {
		steps = append(steps, func() error { return r.ensureMTU(l.Name) })
	}
	for _, name := range r.want.up {
		steps = append(steps, func() error { return r.ensureUp(name) })
	}
	for _, a := range r.want.addrs {
		steps = append(steps, func() error { return r.ensureAddr(a) })
	}
	for _, rs := range r.want.routes {
		steps = append(steps, func() error { return r.ensureRoute(rs) })
	}
	for _, step := range steps {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reconciler) ensureLink(name string) error {
	spec := r.want.created[name]
	l, err := r.link(name)
	if err != nil {
		return err
	}
	if l != nil {
		ok, err := r.matches(l, spec)
		if err != nil || ok {
			return err
		}
		// An owned link that did not match was deleted by undo; this one is not ours.
		return fmt.Errorf("%w: link %s exists as a %s, not the %s the config asks for", ErrConflict, name, describe(l), describeSpec(spec))
	}
	attrs := netlink.LinkAttrs{Name: name}
	var nl netlink.Link
	switch spec.kind {
	case "bond":
		b := netlink.NewLinkBond(attrs)
		b.Mode = spec.mode
		b.Miimon = miimonMs
		nl = b
	case "bridge":
		nl = &netlink.Bridge{LinkAttrs: attrs}
	case "vlan":
		parent, err := r.mustLink(spec.parent)
		if err != nil {
			return fmt.Errorf("netconf: create vlan %s: %w", name, err)
		}
		attrs.ParentIndex = parent.Attrs().Index
		nl = &netlink.Vlan{LinkAttrs: attrs, VlanId: spec.vlanID, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
	default:
		return fmt.Errorf("netconf: link %s has unknown kind %q", name, spec.kind)
	}
	// Already recorded when it went away with its parent (a VLAN whose bond was recreated).
	if _, owned := r.st.ownsLink(name); !owned {
		r.st.Links = append(r.st.Links, ownedLink{Name: name, Kind: spec.kind})
		if err := r.record(); err != nil {
			return err
		}
	}
	if err := r.h.LinkAdd(nl); err != nil {
		r.st.dropLink(name)
		r.dirty = true
		if errors.Is(err, syscall.EEXIST) {
			err = fmt.Errorf("%w: %w", ErrConflict, err)
		}
		return fmt.Errorf("netconf: create %s %s: %w", describeSpec(spec), name, err)
	}
	r.changed("create %s %s", spec.kind, name)
	return nil
}

func describe(l netlink.Link) string {
	switch v := l.(type) {
	case *netlink.Bond:
		return "bond in mode " + v.Mode.String()
	case *netlink.Vlan:
		return fmt.Sprintf("vlan %d on link index %d", v.VlanId, v.ParentIndex)
	}
	return l.Type()
}

func describeSpec(s linkSpec) string {
	switch s.kind {
	case "bond":
		return "bond in mode " + s.mode.String()
	case "vlan":
		return fmt.Sprintf("vlan %d on %s", s.vlanID, s.parent)
	}
	return s.kind
}

// ensureMaster enslaves member to master (a bond when bond is set, else a bridge).
func (r *reconciler) ensureMaster(member, master string, bond bool) error {
	m, err := r.mustLink(member)
	if err != nil {
		return fmt.Errorf("netconf: enslave %s to %s: %w", member, master, err)
	}
	ms, err := r.mustLink(master)
	if err != nil {
		return fmt.Errorf("netconf: enslave %s to %s: %w", member, master, err)
	}
	cur := m.Attrs().MasterIndex
	if cur == ms.Attrs().Index {
		return nil
	}
	if cur != 0 {
		// Our own enslavements elsewhere were released by undo; this one belongs to someone
		// else, and taking the link away from them is not ours to do.
		other := fmt.Sprintf("link index %d", cur)
		if o, err := r.h.LinkByIndex(cur); err == nil {
			other = o.Attrs().Name
		}
		return fmt.Errorf("%w: %s is enslaved to %s, not %s", ErrConflict, member, other, master)
	}
	if e, ok := r.st.enslavementOf(member); !ok || e.Master != master {
		// A record for this very enslavement is kept as it is: it holds the member's state
		// from before our first enslavement, which a re-enslave must not overwrite.
		r.st.dropEnslavement(member)
		r.st.Enslaved = append(r.st.Enslaved, enslavement{Link: member, Master: master, WasUp: isUp(m), MTU: m.Attrs().MTU})
		if err := r.record(); err != nil {
			return err
		}
	}
	wasUp := isUp(m)
	if bond && wasUp {
		// Bonding refuses members that are up; it brings them up itself once enslaved.
		if err := r.h.LinkSetDown(m); err != nil {
			return fmt.Errorf("netconf: set %s down to enslave it: %w", member, err)
		}
	}
	if err := r.h.LinkSetMasterByIndex(m, ms.Attrs().Index); err != nil {
		if bond && wasUp {
			_ = r.h.LinkSetUp(m) // leave it as we found it; the error below is what matters
		}
		return fmt.Errorf("netconf: enslave %s to %s: %w", member, master, err)
	}
	r.changed("enslave %s to %s", member, master)
	return nil
}

func (r *reconciler) ensureMTU(name string) error {
	want, ok := r.want.mtu[name]
	if !ok {
		return nil
	}
	l, err := r.mustLink(name)
	if err != nil {
		return fmt.Errorf("netconf: set mtu: %w", err)
	}
	old := l.Attrs().MTU
	if old == want {
		return nil
	}
	_, owned := r.st.ownsLink(name)
	if _, recorded := r.st.mtuOf(name); !owned && !recorded {
		r.st.MTUs = append(r.st.MTUs, mtuChange{Link: name, Old: old})
		if err := r.record(); err != nil {
			return err
		}
	}
	if err := r.h.LinkSetMTU(l, want); err != nil {
		return fmt.Errorf("netconf: set mtu %d on %s: %w", want, name, err)
	}
	r.changed("set mtu %d on %s (was %d)", want, name, old)
	return nil
}

func (r *reconciler) ensureUp(name string) error {
	l, err := r.mustLink(name)
	if err != nil {
		return fmt.Errorf("netconf: set up: %w", err)
	}
	if isUp(l) {
		return nil
	}
	if _, owned := r.st.ownsLink(name); !owned && !slices.Contains(r.st.Up, name) {
		r.st.Up = append(r.st.Up, name)
		if err := r.record(); err != nil {
			return err
		}
	}
	if err := r.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("netconf: set %s up: %w", name, err)
	}
	r.changed("set %s up", name)
	return nil
}

func (r *reconciler) ensureAddr(a addrKey) error {
	l, err := r.mustLink(a.Link)
	if err != nil {
		return fmt.Errorf("netconf: add address %s: %w", a.Prefix, err)
	}
	has, err := r.hasAddr(l, a.Prefix)
	if err != nil || has {
		// Present already: ours from an earlier Apply, or the host's, which stays the host's.
		return err
	}
	rec := Address{Link: a.Link, CIDR: a.Prefix.String()}
	if !slices.Contains(r.st.Addresses, rec) {
		r.st.Addresses = append(r.st.Addresses, rec)
		if err := r.record(); err != nil {
			return err
		}
	}
	if err := r.h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(a.Prefix)}); err != nil {
		// IPv6 knows an address by its IP alone: the same IP with another prefix length
		// exists, and it is not ours to replace.
		if errors.Is(err, syscall.EEXIST) {
			r.st.dropAddress(rec)
			r.dirty = true
			err = fmt.Errorf("%w: %w", ErrConflict, err)
		}
		return fmt.Errorf("netconf: add address %s on %s: %w", a.Prefix, a.Link, err)
	}
	r.changed("add address %s on %s", a.Prefix, a.Link)
	return nil
}

func (r *reconciler) hasAddr(l netlink.Link, p netip.Prefix) (bool, error) {
	var addrs []netlink.Addr
	err := retryDump(func() (err error) {
		addrs, err = r.h.AddrList(l, family(p.Addr()))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("netconf: list addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IPNet != nil && prefixOf(a.IPNet) == p {
			return true, nil
		}
	}
	return false, nil
}

func (r *reconciler) ensureRoute(rs routeSpec) error {
	found, err := r.findRoute(rs)
	if err != nil || found != nil {
		// Present already: ours, or the host's (which stays the host's).
		return err
	}
	nr := &netlink.Route{Dst: ipNet(rs.Dst), Table: mainTable, Protocol: protoStatic}
	if rs.Gw.IsValid() {
		nr.Gw = rs.Gw.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if rs.Link != "" {
		l, err := r.mustLink(rs.Link)
		if err != nil {
			return fmt.Errorf("netconf: add route %s: %w", rs, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	rec := rs.record()
	if !slices.Contains(r.st.Routes, rec) {
		r.st.Routes = append(r.st.Routes, rec)
		if err := r.record(); err != nil {
			return err
		}
	}
	if err := r.h.RouteAdd(nr); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			// Another route to the same destination, with another gateway or link: the host's.
			r.st.dropRoute(rec)
			r.dirty = true
			err = fmt.Errorf("%w: another route to %s exists: %w", ErrConflict, rs.Dst, err)
		}
		return fmt.Errorf("netconf: add route %s: %w", rs, err)
	}
	r.changed("add route %s", rs)
	return nil
}

// findRoute returns the main-table route rs describes, or nil. A gateway or link that rs
// leaves open matches any.
func (r *reconciler) findRoute(rs routeSpec) (*netlink.Route, error) {
	idx := 0
	if rs.Link != "" {
		l, err := r.link(rs.Link)
		if err != nil || l == nil {
			return nil, err
		}
		idx = l.Attrs().Index
	}
	var routes []netlink.Route
	err := retryDump(func() (err error) {
		routes, err = r.h.RouteListFiltered(family(rs.Dst.Addr()), &netlink.Route{Table: mainTable}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netconf: list routes: %w", err)
	}
	for i, rt := range routes {
		dst := netip.PrefixFrom(zeroAddr(rs.Dst.Addr()), 0)
		if rt.Dst != nil {
			dst = prefixOf(rt.Dst)
		}
		if dst != rs.Dst || (idx != 0 && rt.LinkIndex != idx) {
			continue
		}
		gw, _ := netip.AddrFromSlice(rt.Gw)
		if rs.Gw.IsValid() != gw.IsValid() || (rs.Gw.IsValid() && gw.Unmap() != rs.Gw) {
			continue
		}
		return &routes[i], nil
	}
	return nil, nil
}

// record is the form routes take in the state file.
func (rs routeSpec) record() Route {
	r := Route{Dst: rs.Dst.String(), Link: rs.Link}
	if rs.Gw.IsValid() {
		r.Gateway = rs.Gw.String()
	}
	return r
}

func retryDump(list func() error) error {
	_, err := nlretry.Dump(func() (struct{}, error) { return struct{}{}, list() })
	return err
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func zeroAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// ipNet converts a prefix, keeping the host bits (an interface address is an IP and a length).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	a = a.Unmap()
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a, bits)
}
