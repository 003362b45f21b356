// Package netconf makes a host's network (bonds, VLANs, bridges, MTUs, addresses, routes)
// match a desired Config sent by the coordinator, with netlink and idempotently. It only ever
// undoes what it recorded as its own in a state file, so links, addresses and routes the host
// had before (the PXE-booted NIC, the administrator's management address) are left alone.
// ApplyChecked adds a probe and a rollback, because a wrong network config is the one change
// after which the coordinator can no longer send the fix. DESIGN.md states the invariants.
package netconf

import (
	"errors"
	"fmt"
	"net/netip"
)

// Config is the desired network state of a host. The JSON travels from the coordinator to
// the agent; keep the field names.
type Config struct {
	Bonds   []Bond   `json:"bonds,omitempty"`
	VLANs   []VLAN   `json:"vlans,omitempty"`
	Bridges []Bridge `json:"bridges,omitempty"`
	// Links holds settings for any link, created here or pre-existing: listing one brings it
	// up, and sets its MTU when MTU is not zero.
	Links     []Link    `json:"links,omitempty"`
	Addresses []Address `json:"addresses,omitempty"`
	Routes    []Route   `json:"routes,omitempty"`
}

// Bond is a bonding link enslaving Interfaces.
type Bond struct {
	Name       string   `json:"name"`
	Mode       string   `json:"mode"` // "802.3ad" or "active-backup"
	Interfaces []string `json:"interfaces"`
	MTU        int      `json:"mtu,omitempty"`
}

// VLAN is an 802.1Q link on top of Link.
type VLAN struct {
	Name string `json:"name"`
	Link string `json:"link"`
	ID   int    `json:"id"` // 1..4094
	MTU  int    `json:"mtu,omitempty"`
}

// Bridge is a bridge with Interfaces as ports.
type Bridge struct {
	Name       string   `json:"name"`
	Interfaces []string `json:"interfaces,omitempty"`
	MTU        int      `json:"mtu,omitempty"`
}

// Link names a link (created by the config or pre-existing) to bring up, with an MTU.
type Link struct {
	Name string `json:"name"`
	MTU  int    `json:"mtu,omitempty"`
}

// Address is a static address on a link, such as "10.0.0.5/24" or "2001:db8::5/64".
type Address struct {
	Link string `json:"link"`
	CIDR string `json:"cidr"`
}

// Route is a route in the main table. Dst is a CIDR or "default" (0.0.0.0/0, or ::/0 when
// Gateway is IPv6). It needs a Gateway, a Link or both.
type Route struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway,omitempty"`
	Link    string `json:"link,omitempty"`
}

// Changes lists what an Apply did, one line each ("create bond bond0"), in order. Applying
// a config the host already matches returns an empty list.
type Changes []string

// Bond modes we support: the two that work with ordinary switches (active-backup) or with
// switches configured for LACP (802.3ad); the others need switch set-ups nobody asked for.
const (
	ModeActiveBackup = "active-backup"
	Mode8023AD       = "802.3ad"
)

var (
	// ErrInvalid is matched (errors.Is) by every error Validate returns.
	ErrInvalid = errors.New("netconf: invalid config")
	// ErrNotFound: the config names a link that neither exists nor is created by it.
	ErrNotFound = errors.New("netconf: link not found")
	// ErrConflict: doing what the config asks would change something that is not ours, such
	// as a pre-existing link of another kind with the same name, or a port of a foreign bridge.
	ErrConflict = errors.New("netconf: conflicts with state that is not ours")
	// ErrRolledBack: ApplyChecked's probe did not succeed in time (or the apply failed half-way)
	// and the previous config was applied again.
	ErrRolledBack = errors.New("netconf: rolled back to the previous config")
	// ErrRollbackFailed: as ErrRolledBack, but re-applying the previous config failed too;
	// the host is in between, and the state file still says what is ours.
	ErrRollbackFailed = errors.New("netconf: rollback failed")
)

// FieldError is one problem in a Config, with the JSON path of the field ("vlans[1].id").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

const (
	maxNameLen = 15 // IFNAMSIZ less the terminating NUL
	minMTU     = 68 // the IPv4 minimum; the kernel refuses less on any link
	maxMTU     = 65535
	// maxItems bounds each list: configs come from the network, and a host has nowhere near
	// this many links, addresses or routes to configure.
	maxItems = 1024
)

// Validate reports every problem of c, each a *FieldError, joined with errors.Join so that
// the coordinator can show them all at once; errors.As finds the first. It checks what can
// be checked without looking at the host: names, modes, IDs, MTUs, CIDRs, that no link is
// defined twice or enslaved twice, and that VLANs do not stack in a loop.
func (c Config) Validate() error {
	v := validator{defined: map[string]string{}, kinds: map[string]string{}, enslaved: map[string]string{}, bondMember: map[string]string{}}
	v.checkCounts(c)
	if len(v.errs) > 0 {
		return errors.Join(v.errs...)
	}
	// Names first, so that member checks below know every link the config creates.
	for i, b := range c.Bonds {
		v.define(fmt.Sprintf("bonds[%d]", i), b.Name, "bond")
	}
	for i, vl := range c.VLANs {
		v.define(fmt.Sprintf("vlans[%d]", i), vl.Name, "vlan")
	}
	for i, br := range c.Bridges {
		v.define(fmt.Sprintf("bridges[%d]", i), br.Name, "bridge")
	}
	for i, b := range c.Bonds {
		f := fmt.Sprintf("bonds[%d]", i)
		if b.Mode != ModeActiveBackup && b.Mode != Mode8023AD {
			v.add(f+".mode", `must be "802.3ad" or "active-backup"`)
		}
		if len(b.Interfaces) == 0 {
			v.add(f+".interfaces", "a bond needs at least one interface")
		}
		for j, m := range b.Interfaces {
			v.bondMember[m] = f
			// Bonding takes Ethernet-like links only: never a bridge, another bond, or a
			// VLAN (which would not exist yet when the bond is filled).
			v.enslave(fmt.Sprintf("%s.interfaces[%d]", f, j), m, b.Name, "bond", "vlan", "bridge")
		}
		v.mtu(f+".mtu", b.MTU)
	}
	for i, vl := range c.VLANs {
		f := fmt.Sprintf("vlans[%d]", i)
		if vl.ID < 1 || vl.ID > 4094 {
			v.add(f+".id", "must be 1-4094")
		}
		if v.name(f+".link", vl.Link) && vl.Link == vl.Name {
			v.add(f+".link", "a VLAN cannot be its own parent")
		}
		v.mtu(f+".mtu", vl.MTU)
	}
	if _, err := vlanOrder(c.VLANs); err != nil {
		v.errs = append(v.errs, err)
	}
	for i, br := range c.Bridges {
		f := fmt.Sprintf("bridges[%d]", i)
		for j, p := range br.Interfaces {
			v.enslave(fmt.Sprintf("%s.interfaces[%d]", f, j), p, br.Name, "bridge")
		}
		v.mtu(f+".mtu", br.MTU)
	}
	v.checkLinks(c)
	v.checkAddresses(c.Addresses)
	v.checkRoutes(c.Routes)
	return errors.Join(v.errs...)
}

type validator struct {
	errs     []error
	defined  map[string]string // link name → field that creates it
	kinds    map[string]string // link name → "bond", "vlan", "bridge"
	enslaved map[string]string // link name → field that enslaves it
	// bondMember maps a bond member to its bond's field: bonding owns a member's MTU.
	bondMember map[string]string
}

func (v *validator) add(field, msg string) {
	v.errs = append(v.errs, &FieldError{Field: field, Msg: msg})
}

func (v *validator) checkCounts(c Config) {
	for _, l := range []struct {
		field string
		n     int
	}{
		{"bonds", len(c.Bonds)}, {"vlans", len(c.VLANs)}, {"bridges", len(c.Bridges)},
		{"links", len(c.Links)}, {"addresses", len(c.Addresses)}, {"routes", len(c.Routes)},
	} {
		if l.n > maxItems {
			v.add(l.field, fmt.Sprintf("at most %d entries", maxItems))
		}
	}
	for i, b := range c.Bonds {
		if len(b.Interfaces) > maxItems {
			v.add(fmt.Sprintf("bonds[%d].interfaces", i), fmt.Sprintf("at most %d entries", maxItems))
		}
	}
	for i, b := range c.Bridges {
		if len(b.Interfaces) > maxItems {
			v.add(fmt.Sprintf("bridges[%d].interfaces", i), fmt.Sprintf("at most %d entries", maxItems))
		}
	}
}

// name checks a link name as the kernel would (dev_valid_name), restricted to the characters
// interface names use in practice, and reports whether it is valid.
func (v *validator) name(field, n string) bool {
	if msg := nameProblem(n); msg != "" {
		v.add(field, msg)
		return false
	}
	return true
}

func nameProblem(n string) string {
	if n == "" || len(n) > maxNameLen {
		return "link names are 1-15 characters"
	}
	if n == "." || n == ".." {
		return "not a link name"
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return "link names use only A-Z, a-z, 0-9, '_', '.' and '-'"
		}
	}
	return ""
}

func (v *validator) define(field, name, kind string) {
	if !v.name(field+".name", name) {
		return
	}
	if prev, ok := v.defined[name]; ok {
		v.add(field+".name", fmt.Sprintf("%s is already defined by %s", name, prev))
		return
	}
	v.defined[name] = field
	v.kinds[name] = kind
}

// enslave checks that member may be enslaved to master: a valid name, not master itself, not
// a link of a refused kind, and not enslaved elsewhere too.
func (v *validator) enslave(field, member, master string, refused ...string) {
	if !v.name(field, member) {
		return
	}
	if member == master {
		v.add(field, "a link cannot be enslaved to itself")
		return
	}
	for _, k := range refused {
		if v.kinds[member] == k {
			v.add(field, fmt.Sprintf("%s is a %s (%s) and cannot be enslaved here", member, k, v.defined[member]))
			return
		}
	}
	if prev, ok := v.enslaved[member]; ok {
		v.add(field, fmt.Sprintf("%s is already enslaved by %s", member, prev))
		return
	}
	v.enslaved[member] = field
}

func (v *validator) mtu(field string, mtu int) {
	if mtu != 0 && (mtu < minMTU || mtu > maxMTU) {
		v.add(field, fmt.Sprintf("must be 0 (unchanged) or %d-%d", minMTU, maxMTU))
	}
}

func (v *validator) checkLinks(c Config) {
	mtus := map[string]int{}
	for _, b := range c.Bonds {
		mtus[b.Name] = b.MTU
	}
	for _, vl := range c.VLANs {
		mtus[vl.Name] = vl.MTU
	}
	for _, br := range c.Bridges {
		mtus[br.Name] = br.MTU
	}
	seen := map[string]int{}
	for i, l := range c.Links {
		f := fmt.Sprintf("links[%d]", i)
		v.mtu(f+".mtu", l.MTU)
		if !v.name(f+".name", l.Name) {
			continue
		}
		if j, ok := seen[l.Name]; ok {
			v.add(f+".name", fmt.Sprintf("duplicate of links[%d]", j))
			continue
		}
		seen[l.Name] = i
		if b, ok := v.bondMember[l.Name]; ok && l.MTU != 0 {
			v.add(f+".mtu", fmt.Sprintf("%s is a member of %s, which sets its MTU; set %s.mtu", l.Name, b, b))
		}
		if m := mtus[l.Name]; l.MTU != 0 && m != 0 && m != l.MTU {
			v.add(f+".mtu", fmt.Sprintf("%d differs from the mtu %d of %s", l.MTU, m, v.defined[l.Name]))
		}
	}
}

func (v *validator) checkAddresses(addrs []Address) {
	seen := map[addrKey]int{}
	for i, a := range addrs {
		f := fmt.Sprintf("addresses[%d]", i)
		v.name(f+".link", a.Link)
		p, err := parseCIDR(a.CIDR)
		if err != nil {
			v.add(f+".cidr", err.Error())
			continue
		}
		k := addrKey{Link: a.Link, Prefix: p}
		if j, ok := seen[k]; ok {
			v.add(f+".cidr", fmt.Sprintf("duplicate of addresses[%d]", j))
			continue
		}
		seen[k] = i
	}
}

func (v *validator) checkRoutes(routes []Route) {
	seen := map[netip.Prefix]int{}
	for i, r := range routes {
		f := fmt.Sprintf("routes[%d]", i)
		if r.Link != "" {
			v.name(f+".link", r.Link)
		}
		if r.Gateway == "" && r.Link == "" {
			v.add(f, "a route needs a gateway or a link")
		}
		rs, field, err := parseRoute(r)
		if err != nil {
			v.add(f+"."+field, err.Error())
			continue
		}
		if j, ok := seen[rs.Dst]; ok {
			v.add(f+".dst", fmt.Sprintf("duplicate of routes[%d]", j))
			continue
		}
		seen[rs.Dst] = i
	}
}

// vlanOrder returns the indexes of vlans so that a VLAN stacked on another comes after it,
// or a FieldError when they stack in a loop.
func vlanOrder(vlans []VLAN) ([]int, error) {
	byName := map[string]int{}
	for i, vl := range vlans {
		if _, dup := byName[vl.Name]; !dup {
			byName[vl.Name] = i
		}
	}
	const (
		unvisited = iota
		visiting
		done
	)
	mark := make([]int, len(vlans))
	order := make([]int, 0, len(vlans))
	for start := range vlans {
		// Iterative walk up the parent chain: a chain cannot branch, so no recursion needed.
		var chain []int
		i := start
		for mark[i] == unvisited {
			mark[i] = visiting
			chain = append(chain, i)
			p, ok := byName[vlans[i].Link]
			if !ok || p == i { // a VLAN on itself has its own error
				break
			}
			if mark[p] == visiting {
				return nil, &FieldError{Field: fmt.Sprintf("vlans[%d].link", i), Msg: "VLANs stack in a loop"}
			}
			i = p
		}
		for j := len(chain) - 1; j >= 0; j-- {
			mark[chain[j]] = done
			order = append(order, chain[j])
		}
	}
	return order, nil
}

// addrKey identifies an address on a link.
type addrKey struct {
	Link   string
	Prefix netip.Prefix
}

// parseCIDR parses an interface address: an IP (not masked) and a prefix length, as ip addr
// takes it. Zones and IPv4-mapped IPv6 addresses are refused: the kernel would store them as
// something else than what was asked, and the next Apply would never find them.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not a CIDR")
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, errors.New("an IPv4-mapped IPv6 address; write the IPv4 address")
	}
	if !p.Addr().IsValid() || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
		return netip.Prefix{}, errors.New("not a unicast address")
	}
	return p, nil
}

// routeSpec is a Route parsed.
type routeSpec struct {
	Dst  netip.Prefix
	Gw   netip.Addr // invalid when none
	Link string
}

// parseRoute parses r, returning the name of the field at fault with the error.
func parseRoute(r Route) (routeSpec, string, error) {
	var rs routeSpec
	rs.Link = r.Link
	if r.Gateway != "" {
		gw, err := netip.ParseAddr(r.Gateway)
		if err != nil || gw.Zone() != "" || gw.Is4In6() || gw.IsUnspecified() || gw.IsMulticast() {
			return rs, "gateway", errors.New("not a unicast IP address")
		}
		if gw.IsLinkLocalUnicast() && gw.Is6() && r.Link == "" {
			return rs, "link", errors.New("required with a link-local gateway")
		}
		rs.Gw = gw
	}
	switch {
	case r.Dst == "default" && rs.Gw.Is6():
		rs.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	case r.Dst == "default":
		rs.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	default:
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil || p.Addr().Is4In6() {
			return rs, "dst", errors.New(`not a CIDR or "default"`)
		}
		if p.Masked() != p {
			return rs, "dst", errors.New("has host bits set; a route destination is a network (" + p.Masked().String() + ")")
		}
		rs.Dst = p
	}
	if rs.Gw.IsValid() && rs.Gw.Is4() != rs.Dst.Addr().Is4() {
		return rs, "gateway", errors.New("not of the destination's IP family")
	}
	return rs, "", nil
}

// String is how Changes and errors name the route.
func (rs routeSpec) String() string {
	s := rs.Dst.String()
	if rs.Gw.IsValid() {
		s += " via " + rs.Gw.String()
	}
	if rs.Link != "" {
		s += " dev " + rs.Link
	}
	return s
}
