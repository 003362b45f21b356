package inventory

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/deployme/deployme/internal/nlretry"
)

// Netlink lists links and their addresses from the kernel over rtnetlink. It only reads
// local kernel state; no packet leaves the host.
type Netlink struct{}

// Links implements LinkLister.
func (Netlink) Links(ctx context.Context) ([]Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	links, err := nlretry.Dump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("netlink: list links: %w", err)
	}
	out := make([]Link, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		addrs, err := nlretry.Dump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, fmt.Errorf("netlink: list addresses of %s: %w", a.Name, err)
		}
		link := Link{
			Name:     a.Name,
			Type:     l.Type(),
			Loopback: a.Flags&net.FlagLoopback != 0,
			Up:       operUp(a),
		}
		if len(a.HardwareAddr) > 0 {
			link.MAC = a.HardwareAddr.String()
		}
		for _, addr := range addrs {
			if addr.IPNet != nil {
				link.Addresses = append(link.Addresses, addr.IPNet.String())
			}
		}
		out = append(out, link)
	}
	return out, nil
}

// operUp tells whether a link carries traffic. Many virtual drivers (tun, dummy, some
// virtio setups) never set an operational state and report "unknown"; for those the
// administrative flag plus carrier (IFF_RUNNING) is the best answer there is.
func operUp(a *netlink.LinkAttrs) bool {
	switch a.OperState {
	case netlink.OperUp:
		return true
	case netlink.OperUnknown:
		return a.Flags&net.FlagUp != 0 && a.Flags&net.FlagRunning != 0
	default:
		return false
	}
}
