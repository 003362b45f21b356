package netconf

import "github.com/vishvananda/netlink"

// plan is a valid Config in the form the reconciler works with.
type plan struct {
	cfg     Config
	created map[string]linkSpec // links the config creates
	vlans   []VLAN              // parents before the VLANs stacked on them
	master  map[string]string   // member → master it must be enslaved to
	mtu     map[string]int      // link → MTU, only where one is asked
	up      []string            // links to bring up, in order
	addrs   []addrKey
	routes  []routeSpec
}

type linkSpec struct {
	kind   string // netlink's Link.Type()
	mode   netlink.BondMode
	vlanID int
	parent string
}

// newPlan converts a Config that passed Validate; it never fails on one.
func newPlan(c Config) plan {
	p := plan{cfg: c, created: map[string]linkSpec{}, master: map[string]string{}, mtu: map[string]int{}}
	upSeen := map[string]bool{}
	up := func(name string) {
		if !upSeen[name] {
			upSeen[name] = true
			p.up = append(p.up, name)
		}
	}
	setMTU := func(name string, mtu int) {
		if mtu != 0 {
			p.mtu[name] = mtu
		}
	}
	for _, b := range c.Bonds {
		p.created[b.Name] = linkSpec{kind: "bond", mode: netlink.StringToBondMode(b.Mode)}
		for _, m := range b.Interfaces {
			p.master[m] = b.Name // bonding brings its members up itself
		}
		setMTU(b.Name, b.MTU)
		up(b.Name)
	}
	order, _ := vlanOrder(c.VLANs)
	for _, i := range order {
		v := c.VLANs[i]
		p.vlans = append(p.vlans, v)
		p.created[v.Name] = linkSpec{kind: "vlan", vlanID: v.ID, parent: v.Link}
		setMTU(v.Name, v.MTU)
		// A VLAN on a down parent carries nothing; the parent is wanted up as well.
		up(v.Link)
		up(v.Name)
	}
	for _, br := range c.Bridges {
		p.created[br.Name] = linkSpec{kind: "bridge"}
		for _, port := range br.Interfaces {
			p.master[port] = br.Name
			up(port) // a bridge forwards nothing through a down port
		}
		setMTU(br.Name, br.MTU)
		up(br.Name)
	}
	for _, l := range c.Links {
		setMTU(l.Name, l.MTU)
		up(l.Name)
	}
	for _, a := range c.Addresses {
		pfx, _ := parseCIDR(a.CIDR)
		p.addrs = append(p.addrs, addrKey{Link: a.Link, Prefix: pfx})
	}
	for _, r := range c.Routes {
		rs, _, _ := parseRoute(r)
		p.routes = append(p.routes, rs)
	}
	return p
}
