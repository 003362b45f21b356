package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nic is a physical Ethernet interface as init sees it.
type nic struct {
	Name    string
	Index   int
	MAC     net.HardwareAddr
	Carrier bool
}

// carrierReady tells whether init can stop waiting for links: the boot NIC has carrier,
// or, when the firmware did not say which NIC it booted from (or that NIC is not in this
// image), any NIC has.
func carrierReady(nics []nic, bootif net.HardwareAddr) bool {
	any, bootSeen := false, false
	for _, n := range nics {
		isBoot := bootif != nil && bytes.Equal(n.MAC, bootif)
		bootSeen = bootSeen || isBoot
		if n.Carrier {
			if isBoot {
				return true
			}
			any = true
		}
	}
	return any && !bootSeen
}

// dhcpOrder is the NICs to try DHCP on: those with carrier, the boot NIC first (it is the
// one known to reach the boot server), then by interface index, which follows probe order.
func dhcpOrder(nics []nic, bootif net.HardwareAddr) []nic {
	var out []nic
	for _, n := range nics {
		if n.Carrier {
			out = append(out, n)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		bi, bj := bootif != nil && bytes.Equal(out[i].MAC, bootif), bootif != nil && bytes.Equal(out[j].MAC, bootif)
		if bi != bj {
			return bi
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// listNICs returns the physical Ethernet links: backed by a device (not a bridge, veth or
// tunnel) and not the loopback.
func listNICs(h *netlink.Handle) ([]nic, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	var out []nic
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", a.Name, "device")); err != nil {
			continue
		}
		out = append(out, nic{Name: a.Name, Index: a.Index, MAC: a.HardwareAddr, Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0})
	}
	return out, nil
}

// undrivenNICs lists PCI network controllers no loaded driver took, for the console: the
// usual reason a machine finds no NIC is a driver missing from the image.
func undrivenNICs(sysDir string) []string {
	devs, _ := filepath.Glob(filepath.Join(sysDir, "bus", "pci", "devices", "*"))
	var out []string
	for _, d := range devs {
		class := readTrimmed(filepath.Join(d, "class"))
		if !strings.HasPrefix(class, "0x02") { // PCI base class 02h: network controller
			continue
		}
		if _, err := os.Lstat(filepath.Join(d, "driver")); err == nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s (vendor %s device %s)", filepath.Base(d),
			readTrimmed(filepath.Join(d, "vendor")), readTrimmed(filepath.Join(d, "device"))))
	}
	return out
}

func readTrimmed(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// route is one route a lease asks for; an invalid Gateway means on-link.
type route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
}

// addressing is what a DHCP ACK asks init to configure.
type addressing struct {
	Addr     netip.Prefix
	Routes   []route
	DNS      []netip.Addr
	Search   []string
	MTU      int // 0: leave the link's
	Hostname string
	// Renew is when to renew (T1), Expire when the lease ends, both from the ACK; Expire
	// 0 means the server gave no lease time and nothing is renewed.
	Renew, Expire time.Duration
}

// fromACK reads an ACK into what to configure. Classless static routes (option 121)
// replace the router option, as RFC 3442 requires of clients.
func fromACK(ack *dhcpv4.DHCPv4) (addressing, error) {
	var a addressing
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsGlobalUnicast() {
		return a, fmt.Errorf("dhcp: the server offered %v, not a unicast address", ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = net.IP(ip.AsSlice()).DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 {
		return a, fmt.Errorf("dhcp: bad subnet mask %v", mask)
	}
	a.Addr = netip.PrefixFrom(ip, ones)
	if static := ack.ClasslessStaticRoute(); len(static) > 0 {
		for _, r := range static {
			dst, ok := netip.AddrFromSlice(r.Dest.IP.To4())
			n, _ := r.Dest.Mask.Size()
			if !ok {
				continue
			}
			rt := route{Dst: netip.PrefixFrom(dst, n).Masked()}
			if gw, ok := netip.AddrFromSlice(r.Router.To4()); ok && !gw.IsUnspecified() {
				rt.Gateway = gw
			}
			a.Routes = append(a.Routes, rt)
		}
	} else if routers := ack.Router(); len(routers) > 0 {
		if gw, ok := netip.AddrFromSlice(routers[0].To4()); ok && !gw.IsUnspecified() {
			a.Routes = []route{{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: gw}}
		}
	}
	for _, d := range ack.DNS() {
		if addr, ok := netip.AddrFromSlice(d.To4()); ok && !addr.IsUnspecified() {
			a.DNS = append(a.DNS, addr)
		}
	}
	if s := ack.DomainSearch(); s != nil && len(s.Labels) > 0 {
		a.Search = append(a.Search, s.Labels...)
	} else if d := ack.DomainName(); d != "" {
		a.Search = []string{d}
	}
	if b := ack.Options.Get(dhcpv4.OptionInterfaceMTU); len(b) == 2 {
		// Below IPv4's minimum or above jumbo frames is a misconfigured server.
		if mtu := int(binary.BigEndian.Uint16(b)); mtu >= 576 && mtu <= 9216 {
			a.MTU = mtu
		}
	}
	if h := ack.HostName(); validHostname(h) {
		a.Hostname = h
	}
	a.Expire = ack.IPAddressLeaseTime(0)
	if a.Expire > 0 {
		a.Renew = ack.IPAddressRenewalTime(a.Expire / 2)
		if a.Renew <= 0 || a.Renew >= a.Expire {
			a.Renew = a.Expire / 2
		}
	}
	return a, nil
}

// resolvConf renders /etc/resolv.conf for the lease.
func resolvConf(a addressing) string {
	var b strings.Builder
	b.WriteString("# written by deployme-init from the DHCP lease\n")
	for _, d := range a.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if len(a.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(a.Search, " "))
	}
	return b.String()
}

// apply configures link for next, removing what prev had that next no longer has (prev
// is the zero value the first time). Every call is idempotent, so a renewal that changes
// nothing changes nothing.
func apply(h *netlink.Handle, link netlink.Link, prev, next addressing) error {
	if next.MTU != 0 && next.MTU != link.Attrs().MTU {
		if err := h.LinkSetMTU(link, next.MTU); err != nil {
			return fmt.Errorf("set mtu %d: %w", next.MTU, err)
		}
	}
	for _, old := range prev.Routes {
		if !containsRoute(next.Routes, old) || prev.Addr != next.Addr {
			_ = h.RouteDel(nlRoute(link, old)) // gone already when its address went
		}
	}
	if prev.Addr.IsValid() && prev.Addr != next.Addr {
		_ = h.AddrDel(link, nlAddr(prev.Addr))
	}
	if err := h.AddrReplace(link, nlAddr(next.Addr)); err != nil {
		return fmt.Errorf("address %s: %w", next.Addr, err)
	}
	// On-link routes first: a gateway route needs its gateway reachable.
	rs := append([]route(nil), next.Routes...)
	sort.SliceStable(rs, func(i, j int) bool { return !rs[i].Gateway.IsValid() && rs[j].Gateway.IsValid() })
	for _, r := range rs {
		if err := h.RouteReplace(nlRoute(link, r)); err != nil {
			return fmt.Errorf("route %s via %s: %w", r.Dst, r.Gateway, err)
		}
	}
	return os.WriteFile("/etc/resolv.conf", []byte(resolvConf(next)), 0o644)
}

func containsRoute(rs []route, r route) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
}

func nlRoute(link netlink.Link, r route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
		Scope:     netlink.SCOPE_LINK,
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
		nr.Scope = netlink.SCOPE_UNIVERSE
	}
	return nr
}

// macHostname is the host name of last resort: stable across boots and unique in a fleet.
func macHostname(mac net.HardwareAddr) string {
	return "deployme-" + strings.ReplaceAll(mac.String(), ":", "")
}
