package dhcp

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// AnnounceNoRouter multicasts an IPv6 router advertisement on iface every interval until ctx
// ends: router lifetime 0, no prefix, managed and other-config flags off. It says "there is
// no IPv6 router here", which is true on a boot segment we serve. Without it iPXE waits
// about 16 s for IPv6 autoconfiguration on every boot before it even asks DHCPv4
// (FACTS.md, section 3). It adds no route and no address on any host.
func AnnounceNoRouter(ctx context.Context, iface string, interval time.Duration) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("router advertisement: %w", err)
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("router advertisement: %w", err)
	}
	defer c.Close()
	pc := c.IPv6PacketConn()
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("router advertisement: %w", err)
	}
	// RFC 4861 section 6.1.2: receivers drop an RA whose hop limit is not 255.
	if err := pc.SetMulticastHopLimit(255); err != nil {
		return fmt.Errorf("router advertisement: %w", err)
	}
	// Cur hop limit 64, flags 0, router lifetime 0, reachable time 0, retrans timer 0.
	msg, err := (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: []byte{64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}}).Marshal(nil)
	if err != nil {
		return err
	}
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: iface}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// A failed send (the link not up yet) is retried at the next tick.
		_, _ = pc.WriteTo(msg, nil, dst)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
