package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
)

// labelSuffix marks the addresses this package added (see the package comment).
const labelSuffix = ":dmvip"

// maxLabel is IFNAMSIZ without its terminating zero: the kernel cuts longer labels.
const maxLabel = 15

// ifaNoPrefixRoute is IFA_F_NOPREFIXROUTE from linux/if_addr.h, which package syscall
// predates.
const ifaNoPrefixRoute = 0x200

// errNoLink: no link has an address whose subnet contains the VIP.
var errNoLink = errors.New("no link has an address in the VIP's subnet")

// kernel reads and changes the addresses of one network namespace.
type kernel struct {
	h  *netlink.Handle
	do func(func() error) error
}

// vipLabel is the label of the VIP on the link named name: the name is cut rather than the
// suffix, since the suffix is what tells our addresses apart.
func vipLabel(name string) string {
	return name[:min(len(name), maxLabel-len(labelSuffix))] + labelSuffix
}

func ours(a netlink.Addr) bool { return strings.HasSuffix(a.Label, labelSuffix) }

// find returns the addresses equal to vip, on any link and with any prefix length.
func (k kernel) find(vip netip.Addr) ([]netlink.Addr, error) {
	addrs, err := k.addrsV4()
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, a := range addrs {
		if ip, ok := addrOf(a); ok && ip == vip {
			out = append(out, a)
		}
	}
	return out, nil
}

func addrOf(a netlink.Addr) (netip.Addr, bool) {
	if a.IPNet == nil {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	return ip.Unmap(), ok
}

// linkFor picks the link to put vip on: one with an address whose subnet contains it,
// preferring an address with the VIP's own prefix length (the VIP then lands as a secondary
// of that subnet), then the lowest link index, so that every attempt picks the same link.
func (k kernel) linkFor(vip netip.Prefix) (netlink.Link, error) {
	addrs, err := k.addrsV4()
	if err != nil {
		return nil, err
	}
	best, bestExact := -1, false
	for _, a := range addrs {
		ip, ok := addrOf(a)
		if !ok || a.Peer != nil || ip == vip.Addr() {
			continue
		}
		ones, _ := a.Mask.Size()
		if ones == 0 || !netip.PrefixFrom(ip, ones).Masked().Contains(vip.Addr()) {
			continue
		}
		exact := ones == vip.Bits()
		if best < 0 || (exact && !bestExact) || (exact == bestExact && a.LinkIndex < best) {
			best, bestExact = a.LinkIndex, exact
		}
	}
	if best < 0 {
		return nil, errNoLink
	}
	l, err := k.h.LinkByIndex(best)
	if err != nil {
		return nil, fmt.Errorf("link %d: %w", best, err)
	}
	return l, nil
}

// add puts vip on link, labelled as ours.
func (k kernel) add(link netlink.Link, vip netip.Prefix) error {
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: vip.Addr().AsSlice(), Mask: net.CIDRMask(vip.Bits(), 32)},
		Label: vipLabel(link.Attrs().Name),
		Flags: ifaNoPrefixRoute,
		// IPv4zero tells netlink not to derive one; see the package comment.
		Broadcast: net.IPv4zero,
		LinkIndex: link.Attrs().Index,
	}
	if err := k.h.AddrAdd(nil, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", vip, link.Attrs().Name, err)
	}
	return nil
}

// remove deletes a, an address find returned with our label. The label goes into the
// request, so the kernel itself refuses to delete an address that is not ours; an address
// already gone (its link deleted, say) is not an error.
func (k kernel) remove(a netlink.Addr) error {
	del := &netlink.Addr{IPNet: a.IPNet, Label: a.Label, LinkIndex: a.LinkIndex, Broadcast: net.IPv4zero}
	err := k.h.AddrDel(nil, del)
	if err != nil && !gone(err) {
		return fmt.Errorf("remove %s (%s): %w", a.IPNet, a.Label, err)
	}
	return nil
}

// removeOurs deletes every address equal to vip that carries our label, on any link. It
// tells whether an address equal to vip is left that is not ours.
func (k kernel) removeOurs(vip netip.Addr) (foreign bool, err error) {
	found, err := k.find(vip)
	if err != nil {
		return false, err
	}
	var errs []error
	for _, a := range found {
		if !ours(a) {
			foreign = true
			continue
		}
		errs = append(errs, k.remove(a))
	}
	return foreign, errors.Join(errs...)
}

// announcement is one run of gratuitous ARPs; stop ends it and waits, so that no ARP for
// the VIP leaves the host after the address is removed.
type announcement struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (an *announcement) stop() {
	if an == nil {
		return
	}
	an.cancel()
	<-an.done
}

// garp sends count ARP announcements (RFC 5227: requests with sender and target IP both
// vip, target MAC zero, to broadcast) from the link with index ifindex. A request rather
// than a reply because every stack updates its cache from one (Linux takes a gratuitous
// reply only if its target MAC repeats the sender's), and it overrides the neighbour's
// lock time, so the move takes effect at once.
func (k kernel) garp(ctx context.Context, ifindex int, vip netip.Addr, count int, interval time.Duration) error {
	var c *arp.Client
	var ifi *net.Interface
	err := k.do(func() error {
		var err error
		if ifi, err = net.InterfaceByIndex(ifindex); err != nil {
			return err
		}
		// Dial needs the link's own IPv4 address, which linkFor made sure exists.
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		return fmt.Errorf("open ARP socket on link %d: %w", ifindex, err)
	}
	defer c.Close()
	if len(ifi.HardwareAddr) != 6 {
		return nil // no Ethernet address, no ARP on this link
	}
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, vip, make(net.HardwareAddr, 6), vip)
	if err != nil {
		return err
	}
	for i := range count {
		if i > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("send gratuitous ARP on %s: %w", ifi.Name, err)
		}
	}
	return nil
}

// supported tells whether p can be a VIP: an IPv4 unicast address with a subnet, and not
// the subnet's own network or broadcast address (which a /31 or /32 does not have).
func supported(p netip.Prefix) bool {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() == 0 || !p.Addr().IsGlobalUnicast() {
		return false
	}
	if p.Bits() >= 31 {
		return true
	}
	return p.Addr() != p.Masked().Addr() && p.Addr() != broadcast(p)
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}
