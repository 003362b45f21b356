package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/deployme/deployme/internal/netnstest"
)

// These tests put real DHCP on a real (virtual) Ethernet segment: our server in one network
// namespace, nclient4 in another, as a PXE ROM would see it. They need root.

// startServer opens the conns inside ns on iface (as the coordinator does with Listen) and
// runs Serve until the test ends.
func startServer(t *testing.T, ns *netnstest.NS, iface string, cfg Config) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var conn67, conn4011 *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		if conn67, err = Listen(iface, ServerPort); err != nil {
			return err
		}
		if cfg.Mode == ModeProxy {
			conn4011, err = Listen(iface, ProxyPort)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var c4011 net.PacketConn
		if conn4011 != nil {
			c4011 = conn4011
		}
		done <- s.Serve(ctx, conn67, c4011)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		conn67.Close()
		if conn4011 != nil {
			conn4011.Close()
		}
	})
}

// newClient opens an nclient4 client (raw socket, like a ROM without an address) in ns.
func newClient(t *testing.T, ns *netnstest.NS, iface string) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	if err := ns.Do(func() error {
		var err error
		c, err = nclient4.New(iface, nclient4.WithTimeout(time.Second), nclient4.WithRetry(5))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNetnsFull: we are the segment's DHCP server; a BIOS PXE ROM, then iPXE, each get the
// Backend's address and their boot file in one DISCOVER/OFFER/REQUEST/ACK exchange.
func TestNetnsFull(t *testing.T) {
	srvNS, cliNS := netnstest.New(t), netnstest.New(t)
	netnstest.Veth(t, srvNS, "pxe0", cliNS, "eth0")
	srvNS.MustIP(t, "addr", "add", "10.213.0.1/24", "dev", "pxe0")

	be := newFakeBackend()
	be.lease = Lease{IP: netip.MustParseAddr("10.213.0.50"), PrefixLen: 24,
		Router: netip.MustParseAddr("10.213.0.1"), Duration: time.Hour}
	cfg := testConfig(ModeFull, be)
	cfg.ServerIP = netip.MustParseAddr("10.213.0.1")
	cfg.HTTPBase = "http://10.213.0.1:8080"
	startServer(t, srvNS, "pxe0", cfg)

	client := newClient(t, cliNS, "eth0")
	mac := client.InterfaceAddr().String()
	script := "http://10.213.0.1:8080/boot/ipxe?mac=" + mac

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		name string
		mods []dhcpv4.Modifier
		file string
	}{
		{"BIOS ROM", pxeBIOS, "undionly.kpxe"},
		{"chained iPXE", ipxeBIOS, script},
	} {
		lease, err := client.Request(ctx, c.mods...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, r := range []*dhcpv4.DHCPv4{lease.Offer, lease.ACK} {
			if got := r.YourIPAddr.String(); got != "10.213.0.50" {
				t.Errorf("%s: %s yiaddr %s, want 10.213.0.50", c.name, r.MessageType(), got)
			}
			if r.BootFileName != c.file || r.BootFileNameOption() != c.file {
				t.Errorf("%s: %s file %q / option 67 %q, want %q", c.name, r.MessageType(), r.BootFileName, r.BootFileNameOption(), c.file)
			}
			if got := r.ServerIPAddr.String(); got != "10.213.0.1" {
				t.Errorf("%s: %s siaddr %s, want 10.213.0.1", c.name, r.MessageType(), got)
			}
		}
	}
	want := []event{
		{mac, EventOffer, "BIOS undionly.kpxe 10.213.0.50"}, {mac, EventAck, "BIOS undionly.kpxe 10.213.0.50"},
		{mac, EventOffer, "BIOS " + script + " 10.213.0.50"}, {mac, EventAck, "BIOS " + script + " 10.213.0.50"},
	}
	if diff := cmp.Diff(want, be.Events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// siteServer is the "site's DHCP server" of the proxy test: addresses only, no boot file.
type siteServer struct {
	ip, yiaddr net.IP
	mu         sync.Mutex
	answered   []dhcpv4.MessageType
}

func (s *siteServer) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	var mt dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if !m.ServerIdentifier().Equal(s.ip) {
			return
		}
		mt = dhcpv4.MessageTypeAck
	default:
		return
	}
	r, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt), dhcpv4.WithYourIP(s.yiaddr),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.ip)))
	if err != nil {
		return
	}
	s.mu.Lock()
	s.answered = append(s.answered, mt)
	s.mu.Unlock()
	_, _ = conn.WriteTo(r.ToBytes(), peer)
}

// TestNetnsProxy: the site's DHCP server and ours share a segment (a bridge). A BIOS PXE ROM
// broadcasts one DISCOVER and sees both OFFERs: the site's with an address, ours with only
// the boot file. It takes the address from the site (we stay silent on that REQUEST), then
// asks our boot server on port 4011 and gets the boot file.
func TestNetnsProxy(t *testing.T) {
	sw, srvNS, siteNS, cliNS := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Bridge(t, sw, "br0")
	netnstest.Plug(t, sw, "br0", srvNS, "pxe0", "10.213.0.1/24")
	netnstest.Plug(t, sw, "br0", siteNS, "eth0", "10.213.0.2/24")
	netnstest.Plug(t, sw, "br0", cliNS, "eth0", "")

	be := newFakeBackend()
	cfg := testConfig(ModeProxy, be)
	cfg.ServerIP = netip.MustParseAddr("10.213.0.1")
	cfg.HTTPBase = "http://10.213.0.1:8080"
	startServer(t, srvNS, "pxe0", cfg)

	site := &siteServer{ip: net.IPv4(10, 213, 0, 2).To4(), yiaddr: net.IPv4(10, 213, 0, 150).To4()}
	var siteConn *net.UDPConn
	if err := siteNS.Do(func() error {
		var err error
		siteConn, err = server4.NewIPv4UDPConn("eth0", &net.UDPAddr{Port: ServerPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	siteSrv, err := server4.NewServer("", nil, site.handle, server4.WithConn(siteConn))
	if err != nil {
		t.Fatal(err)
	}
	siteDone := make(chan struct{})
	go func() { defer close(siteDone); _ = siteSrv.Serve() }()
	t.Cleanup(func() { siteSrv.Close(); <-siteDone })

	client := newClient(t, cliNS, "eth0")
	mac := client.InterfaceAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// One DISCOVER, every OFFER to it collected until both servers have answered.
	discover, err := dhcpv4.NewDiscovery(mac, pxeBIOS...)
	if err != nil {
		t.Fatal(err)
	}
	var siteOffer, ourOffer *dhcpv4.DHCPv4
	_, err = client.SendAndRead(ctx, nclient4.DefaultServers, discover, func(p *dhcpv4.DHCPv4) bool {
		if p.MessageType() == dhcpv4.MessageTypeOffer {
			switch {
			case p.ServerIdentifier().Equal(site.ip):
				siteOffer = p
			case p.ServerIdentifier().Equal(net.IPv4(10, 213, 0, 1)):
				ourOffer = p
			}
		}
		return siteOffer != nil && ourOffer != nil
	})
	if err != nil {
		t.Fatalf("waiting for both offers (site: %v, ours: %v): %v", siteOffer != nil, ourOffer != nil, err)
	}
	if !siteOffer.YourIPAddr.Equal(site.yiaddr) || siteOffer.BootFileName != "" {
		t.Errorf("site offer: yiaddr %s file %q, want %s and no file", siteOffer.YourIPAddr, siteOffer.BootFileName, site.yiaddr)
	}
	if !ourOffer.YourIPAddr.IsUnspecified() || ourOffer.BootFileName != "undionly.kpxe" ||
		ourOffer.ClassIdentifier() != "PXEClient" || ourOffer.ServerIPAddr.String() != "10.213.0.1" {
		t.Errorf("our offer: yiaddr %s file %q option 60 %q siaddr %s, want 0.0.0.0, undionly.kpxe, PXEClient, 10.213.0.1",
			ourOffer.YourIPAddr, ourOffer.BootFileName, ourOffer.ClassIdentifier(), ourOffer.ServerIPAddr)
	}

	// The address comes from the site; its REQUEST names the site's server identifier.
	lease, err := client.RequestFromOffer(ctx, siteOffer, pxeBIOS...)
	if err != nil {
		t.Fatalf("request to the site server: %v", err)
	}
	if !lease.ACK.YourIPAddr.Equal(site.yiaddr) {
		t.Errorf("site ACK yiaddr %s, want %s", lease.ACK.YourIPAddr, site.yiaddr)
	}
	client.Close() // the raw socket is done; the ROM now has an address

	// What a standard PXE ROM does next: unicast a boot REQUEST to the proxy on port 4011.
	cliNS.MustIP(t, "addr", "add", "10.213.0.150/24", "dev", "eth0")
	var bootConn *net.UDPConn
	if err := cliNS.Do(func() error {
		var err error
		bootConn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: site.yiaddr, Port: ClientPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer bootConn.Close()
	bootReq, err := dhcpv4.New(with(pxeBIOS, dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(site.yiaddr))...)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := exchange(bootConn, bootReq, &net.UDPAddr{IP: net.IPv4(10, 213, 0, 1), Port: ProxyPort})
	if err != nil {
		t.Fatalf("boot server request: %v", err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "undionly.kpxe" || !ack.YourIPAddr.IsUnspecified() {
		t.Errorf("boot server reply %s file %q yiaddr %s, want ACK undionly.kpxe 0.0.0.0", ack.MessageType(), ack.BootFileName, ack.YourIPAddr)
	}

	// Ours answered the DISCOVER and the 4011 REQUEST, never the REQUEST meant for the site.
	want := []event{
		{mac.String(), EventOffer, "BIOS undionly.kpxe proxy"},
		{mac.String(), EventAck, "BIOS undionly.kpxe boot-server"},
	}
	if diff := cmp.Diff(want, be.Events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if be.Calls() != 0 {
		t.Errorf("proxy mode asked the Backend for %d leases", be.Calls())
	}
	site.mu.Lock()
	defer site.mu.Unlock()
	if diff := cmp.Diff([]dhcpv4.MessageType{dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck}, site.answered); diff != "" {
		t.Errorf("site server answers (-want +got):\n%s", diff)
	}
}

// exchange sends req to dst over conn and returns the first reply with req's transaction
// ID, resending every second as a ROM would.
func exchange(conn *net.UDPConn, req *dhcpv4.DHCPv4, dst *net.UDPAddr) (*dhcpv4.DHCPv4, error) {
	buf := make([]byte, 1500)
	for range 10 {
		if _, err := conn.WriteTo(req.ToBytes(), dst); err != nil {
			return nil, err
		}
		if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			return nil, err
		}
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break
				}
				return nil, err
			}
			if r, err := dhcpv4.FromBytes(buf[:n]); err == nil && r.TransactionID == req.TransactionID {
				return r, nil
			}
		}
	}
	return nil, errors.New("no reply")
}
