package dhcp

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds arbitrary bytes that parse as DHCP to Handle in both modes, on both ports,
// with good and bad Backend answers: it must never panic, and whatever it answers must be
// encodable, addressed, and (in proxy mode) carry no address.
func FuzzHandle(f *testing.F) {
	relay := dhcpv4.WithRelay(net.ParseIP("10.9.0.1"))
	ci := dhcpv4.WithClientIP(net.ParseIP("10.0.0.50"))
	seeds := []*dhcpv4.DHCPv4{
		packet(dhcpv4.MessageTypeDiscover, pxeBIOS...),
		packet(dhcpv4.MessageTypeDiscover, pxeUEFI...),
		packet(dhcpv4.MessageTypeDiscover, pxeEFIBC...),
		packet(dhcpv4.MessageTypeDiscover, ipxeBIOS...),
		packet(dhcpv4.MessageTypeDiscover, ipxeUEFI...),
		packet(dhcpv4.MessageTypeDiscover, pxeARM64...),
		packet(dhcpv4.MessageTypeDiscover, plain...),
		packet(dhcpv4.MessageTypeDiscover, archInVendorOnly...),
		packet(dhcpv4.MessageTypeDiscover, badArch...),
		packet(dhcpv4.MessageTypeDiscover, with(pxeBIOS, relay)...),
		packet(dhcpv4.MessageTypeRequest, with(pxeBIOS, requestedIP("10.0.0.50"), serverID("10.0.0.1"))...),
		packet(dhcpv4.MessageTypeRequest, with(ipxeBIOS, requestedIP("10.0.0.99"))...),
		packet(dhcpv4.MessageTypeRequest, with(pxeUEFI, ci)...),
		packet(dhcpv4.MessageTypeRequest, with(plain, relay, requestedIP("10.0.0.99"))...),
		packet(dhcpv4.MessageTypeRelease, ci, serverID("10.0.0.1")),
		packet(dhcpv4.MessageTypeDecline, requestedIP("10.0.0.50")),
		packet(dhcpv4.MessageTypeInform, with(pxeBIOS, ci)...),
	}
	for _, p := range seeds {
		f.Add(p.ToBytes())
	}
	if d, err := dhcpv4.NewDiscovery(testMAC, pxeBIOS...); err == nil {
		f.Add(d.ToBytes()) // nclient4's flavour: broadcast flag off, parameter request list
	}

	// Three backends: a good lease, an error, and a lease no wire can carry.
	var servers []*Server
	bad := newFakeBackend()
	bad.lease = Lease{IP: netip.MustParseAddr("fd00::1"), PrefixLen: 99, Duration: -time.Second}
	failing := newFakeBackend()
	failing.err = errPoolExhausted
	for _, mode := range []Mode{ModeProxy, ModeFull} {
		for _, be := range []*fakeBackend{newFakeBackend(), failing, bad} {
			be.quiet = true
			cfg := testConfig(mode, be)
			cfg.Logger = nil // silence, even under -v
			s, err := New(cfg)
			if err != nil {
				f.Fatal(err)
			}
			servers = append(servers, s)
		}
	}
	peer := &net.UDPAddr{IP: net.ParseIP("10.0.0.77"), Port: ClientPort}

	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		for _, s := range servers {
			for _, proxyPort := range []bool{false, true} {
				r := s.Handle(context.Background(), req, proxyPort)
				if r == nil {
					continue
				}
				if r.TransactionID != req.TransactionID {
					t.Fatalf("reply xid %s, request %s", r.TransactionID, req.TransactionID)
				}
				if s.cfg.Mode == ModeProxy && !r.YourIPAddr.IsUnspecified() {
					t.Fatalf("proxy mode offered address %s", r.YourIPAddr)
				}
				if _, err := dhcpv4.FromBytes(r.ToBytes()); err != nil {
					t.Fatalf("reply does not parse back: %v", err)
				}
				if a := replyAddr(req, r, peer, proxyPort); a == nil || a.IP.To4() == nil {
					t.Fatalf("reply address %v", a)
				}
			}
		}
	})
}
