package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

const testScriptURL = "http://10.0.0.1:8080/boot/ipxe?mac=52:54:00:12:34:56"

var testXID = dhcpv4.TransactionID{1, 2, 3, 4}.String()

// proxyReply is the answer a proxyDHCP OFFER or boot server ACK carries: no address, the
// "PXEClient" marker, discovery control, and the boot file.
func proxyReply(mt, file string, tftp bool) *summary {
	s := &summary{
		Type: mt, NextServer: "10.0.0.1", File: file, BootFile: file, ServerID: "10.0.0.1",
		VendorClass: "PXEClient", Opt43: "060108ff", XID: testXID, HWAddr: testMAC.String(),
	}
	if tftp {
		s.TFTPServer = "10.0.0.1"
	}
	return s
}

// fullReply is a full-mode OFFER or ACK with testLease; file "" for a client that is not PXE.
func fullReply(mt, file string, tftp bool) *summary {
	s := &summary{
		Type: mt, YourIP: "10.0.0.50", ServerID: "10.0.0.1", Mask: "255.255.255.0",
		Router: "10.0.0.254", DNS: "10.0.0.53", LeaseTime: "1h0m0s", XID: testXID, HWAddr: testMAC.String(),
	}
	if file != "" {
		s.NextServer, s.File, s.BootFile, s.Opt175 = "10.0.0.1", file, file, "b00101"
	}
	if tftp {
		s.TFTPServer = "10.0.0.1"
	}
	return s
}

func ev(kind, detail string) []event { return []event{{testMAC.String(), kind, detail}} }

func TestHandle(t *testing.T) {
	type tc struct {
		name      string
		mode      Mode
		proxyPort bool
		req       *dhcpv4.DHCPv4
		config    func(*Config)      // changes to the test config
		backend   func(*fakeBackend) // changes to the fake
		want      *summary           // nil: silence
		events    []event
	}
	var (
		discover = func(mods []dhcpv4.Modifier, more ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
			return packet(dhcpv4.MessageTypeDiscover, with(mods, more...)...)
		}
		request = func(mods []dhcpv4.Modifier, more ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
			return packet(dhcpv4.MessageTypeRequest, with(mods, more...)...)
		}
		// What a PXE ROM unicasts to port 4011 once the site's server gave it an address.
		bootRequest = func(mods []dhcpv4.Modifier) *dhcpv4.DHCPv4 {
			return request(mods, dhcpv4.WithClientIP(net.ParseIP("10.0.0.77")))
		}
		selecting = []dhcpv4.Modifier{requestedIP("10.0.0.50"), serverID("10.0.0.1")}
		withCI    = func(s *summary) *summary { s.ClientIP = "10.0.0.77"; return s }
	)
	cases := []tc{
		// Proxy mode, port 67: PXE DISCOVERs only, no address ever.
		{name: "proxy/BIOS/discover", mode: ModeProxy, req: discover(pxeBIOS),
			want:   proxyReply("OFFER", "undionly.kpxe", true),
			events: ev(EventOffer, "BIOS undionly.kpxe proxy")},
		{name: "proxy/UEFI x86-64/discover", mode: ModeProxy, req: discover(pxeUEFI),
			want:   proxyReply("OFFER", "ipxe.efi", true),
			events: ev(EventOffer, "UEFI ipxe.efi proxy")},
		{name: "proxy/EFI BC/discover", mode: ModeProxy, req: discover(pxeEFIBC),
			want:   proxyReply("OFFER", "ipxe.efi", true),
			events: ev(EventOffer, "UEFI ipxe.efi proxy")},
		{name: "proxy/UEFI snponly configured", mode: ModeProxy, req: discover(pxeUEFI),
			config: func(c *Config) { c.UEFIFile = "snponly.efi" },
			want:   proxyReply("OFFER", "snponly.efi", true),
			events: ev(EventOffer, "UEFI snponly.efi proxy")},
		{name: "proxy/iPXE BIOS/discover gets the script", mode: ModeProxy, req: discover(ipxeBIOS),
			want:   proxyReply("OFFER", testScriptURL, false),
			events: ev(EventOffer, "BIOS "+testScriptURL+" proxy")},
		{name: "proxy/iPXE UEFI RFC 3004 user class/discover", mode: ModeProxy, req: discover(ipxeUEFI),
			want:   proxyReply("OFFER", testScriptURL, false),
			events: ev(EventOffer, "UEFI "+testScriptURL+" proxy")},
		{name: "proxy/iPXE/trailing slash in HTTPBase", mode: ModeProxy, req: discover(ipxeBIOS),
			config: func(c *Config) { c.HTTPBase = "http://10.0.0.1:8080/" },
			want:   proxyReply("OFFER", testScriptURL, false),
			events: ev(EventOffer, "BIOS "+testScriptURL+" proxy")},
		{name: "proxy/not PXE/discover", mode: ModeProxy, req: discover(plain)},
		{name: "proxy/no vendor class/discover", mode: ModeProxy, req: discover(nil)},
		{name: "proxy/ARM64/discover", mode: ModeProxy, req: discover(pxeARM64)},
		{name: "proxy/iPXE ARM64/discover", mode: ModeProxy, req: discover(ipxeARM64)},
		{name: "proxy/arch from vendor class", mode: ModeProxy, req: discover(archInVendorOnly),
			want:   proxyReply("OFFER", "ipxe.efi", true),
			events: ev(EventOffer, "UEFI ipxe.efi proxy")},
		{name: "proxy/no arch at all is BIOS", mode: ModeProxy, req: discover(noArch),
			want:   proxyReply("OFFER", "undionly.kpxe", true),
			events: ev(EventOffer, "BIOS undionly.kpxe proxy")},
		{name: "proxy/malformed option 93", mode: ModeProxy, req: discover(badArch)},
		{name: "proxy/first served arch of several", mode: ModeProxy, req: discover(multiArch),
			want:   proxyReply("OFFER", "ipxe.efi", true),
			events: ev(EventOffer, "UEFI ipxe.efi proxy")},
		{name: "proxy/UUID echoed", mode: ModeProxy,
			req: discover(pxeBIOS, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2})),
			want: func() *summary {
				s := proxyReply("OFFER", "undionly.kpxe", true)
				s.Opt97 = "000102"
				return s
			}(),
			events: ev(EventOffer, "BIOS undionly.kpxe proxy")},
		{name: "proxy/BIOS/request on 67 belongs to the site", mode: ModeProxy, req: request(pxeBIOS, selecting...)},
		{name: "proxy/BIOS/release", mode: ModeProxy, req: packet(dhcpv4.MessageTypeRelease, pxeBIOS...)},
		{name: "proxy/BIOS/decline", mode: ModeProxy, req: packet(dhcpv4.MessageTypeDecline, pxeBIOS...)},

		// Port 4011, the PXE boot server: same answer in both modes.
		{name: "proxy/4011/BIOS/request", mode: ModeProxy, proxyPort: true, req: bootRequest(pxeBIOS),
			want:   withCI(proxyReply("ACK", "undionly.kpxe", true)),
			events: ev(EventAck, "BIOS undionly.kpxe boot-server")},
		{name: "proxy/4011/UEFI/request", mode: ModeProxy, proxyPort: true, req: bootRequest(pxeUEFI),
			want:   withCI(proxyReply("ACK", "ipxe.efi", true)),
			events: ev(EventAck, "UEFI ipxe.efi boot-server")},
		{name: "proxy/4011/iPXE/request", mode: ModeProxy, proxyPort: true, req: bootRequest(ipxeBIOS),
			want:   withCI(proxyReply("ACK", testScriptURL, false)),
			events: ev(EventAck, "BIOS "+testScriptURL+" boot-server")},
		{name: "proxy/4011/not PXE/request", mode: ModeProxy, proxyPort: true, req: bootRequest(plain)},
		{name: "proxy/4011/ARM64/request", mode: ModeProxy, proxyPort: true, req: bootRequest(pxeARM64)},
		{name: "proxy/4011/BIOS/discover", mode: ModeProxy, proxyPort: true, req: discover(pxeBIOS)},
		{name: "full/4011/BIOS/request", mode: ModeFull, proxyPort: true, req: bootRequest(pxeBIOS),
			want:   withCI(proxyReply("ACK", "undionly.kpxe", true)),
			events: ev(EventAck, "BIOS undionly.kpxe boot-server")},

		// Full mode DISCOVER: the lease, plus the boot file for PXE clients.
		{name: "full/BIOS/discover", mode: ModeFull, req: discover(pxeBIOS),
			want:   fullReply("OFFER", "undionly.kpxe", true),
			events: ev(EventOffer, "BIOS undionly.kpxe 10.0.0.50")},
		{name: "full/UEFI/discover", mode: ModeFull, req: discover(pxeUEFI),
			want:   fullReply("OFFER", "ipxe.efi", true),
			events: ev(EventOffer, "UEFI ipxe.efi 10.0.0.50")},
		{name: "full/EFI BC/discover", mode: ModeFull, req: discover(pxeEFIBC),
			want:   fullReply("OFFER", "ipxe.efi", true),
			events: ev(EventOffer, "UEFI ipxe.efi 10.0.0.50")},
		{name: "full/iPXE/discover", mode: ModeFull, req: discover(ipxeBIOS),
			want:   fullReply("OFFER", testScriptURL, false),
			events: ev(EventOffer, "BIOS "+testScriptURL+" 10.0.0.50")},
		{name: "full/not PXE/discover gets a plain lease", mode: ModeFull, req: discover(plain),
			want:   fullReply("OFFER", "", false),
			events: ev(EventOffer, "no-boot 10.0.0.50")},
		{name: "full/ARM64/discover", mode: ModeFull, req: discover(pxeARM64)},
		{name: "full/iPXE ARM64/discover", mode: ModeFull, req: discover(ipxeARM64)},
		{name: "full/backend error/discover", mode: ModeFull, req: discover(pxeBIOS),
			backend: func(b *fakeBackend) { b.err = errPoolExhausted }},
		{name: "full/IPv6 lease/discover", mode: ModeFull, req: discover(pxeBIOS),
			backend: func(b *fakeBackend) { b.lease.IP = netip.MustParseAddr("fd00::50") }},
		{name: "full/zero prefix lease/discover", mode: ModeFull, req: discover(pxeBIOS),
			backend: func(b *fakeBackend) { b.lease.PrefixLen = 0 }},
		{name: "full/zero duration lease/discover", mode: ModeFull, req: discover(pxeBIOS),
			backend: func(b *fakeBackend) { b.lease.Duration = 0 }},
		{name: "full/lease without router, DNS, huge duration", mode: ModeFull, req: discover(plain),
			backend: func(b *fakeBackend) {
				b.lease.Router, b.lease.DNS, b.lease.Duration = netip.Addr{}, nil, 2000000*time.Hour
			},
			want: func() *summary {
				s := fullReply("OFFER", "", false)
				s.Router, s.DNS, s.LeaseTime = "", "", (4294967294 * time.Second).String()
				return s
			}(),
			events: ev(EventOffer, "no-boot 10.0.0.50")},
		{name: "full/relayed discover keeps giaddr and relay info, client id", mode: ModeFull,
			req: discover(pxeBIOS, dhcpv4.WithRelay(net.ParseIP("10.9.0.1")),
				dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 2, 'a', 'b'}),
				dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, []byte{1, 0x52, 0x54, 0, 0x12, 0x34, 0x56})),
			want: func() *summary {
				s := fullReply("OFFER", "undionly.kpxe", true)
				s.RelayIP, s.Opt82, s.Opt61 = "10.9.0.1", "01026162", "01525400123456"
				return s
			}(),
			events: ev(EventOffer, "BIOS undionly.kpxe 10.0.0.50")},

		// Full mode REQUEST: ACK the leased address, NAK any other.
		{name: "full/BIOS/request selecting", mode: ModeFull, req: request(pxeBIOS, selecting...),
			want:   fullReply("ACK", "undionly.kpxe", true),
			events: ev(EventAck, "BIOS undionly.kpxe 10.0.0.50")},
		{name: "full/UEFI/request selecting", mode: ModeFull, req: request(pxeUEFI, selecting...),
			want:   fullReply("ACK", "ipxe.efi", true),
			events: ev(EventAck, "UEFI ipxe.efi 10.0.0.50")},
		{name: "full/iPXE/request selecting", mode: ModeFull, req: request(ipxeUEFI, selecting...),
			want:   fullReply("ACK", testScriptURL, false),
			events: ev(EventAck, "UEFI "+testScriptURL+" 10.0.0.50")},
		{name: "full/not PXE/request init-reboot", mode: ModeFull, req: request(plain, requestedIP("10.0.0.50")),
			want:   fullReply("ACK", "", false),
			events: ev(EventAck, "no-boot 10.0.0.50")},
		{name: "full/not PXE/request renewing", mode: ModeFull,
			req: request(plain, dhcpv4.WithClientIP(net.ParseIP("10.0.0.50"))),
			want: func() *summary {
				s := fullReply("ACK", "", false)
				s.ClientIP = "10.0.0.50"
				return s
			}(),
			events: ev(EventAck, "no-boot 10.0.0.50")},
		{name: "full/request for another address", mode: ModeFull, req: request(pxeBIOS, requestedIP("10.0.0.99")),
			want: &summary{Type: "NAK", ServerID: "10.0.0.1", Message: "requested address is not leased to this client",
				XID: testXID, HWAddr: testMAC.String()},
			events: ev(EventNak, "requested 10.0.0.99, leased 10.0.0.50")},
		{name: "full/relayed request for another address", mode: ModeFull,
			req: request(plain, requestedIP("10.0.0.99"), dhcpv4.WithRelay(net.ParseIP("10.9.0.1"))),
			want: &summary{Type: "NAK", ServerID: "10.0.0.1", Message: "requested address is not leased to this client",
				RelayIP: "10.9.0.1", Broadcast: true, XID: testXID, HWAddr: testMAC.String()},
			events: ev(EventNak, "requested 10.0.0.99, leased 10.0.0.50")},
		{name: "full/request to another server", mode: ModeFull,
			req: request(pxeBIOS, requestedIP("10.0.0.50"), serverID("10.0.0.2"))},
		{name: "full/request naming no address", mode: ModeFull, req: request(pxeBIOS)},
		{name: "full/ARM64/request", mode: ModeFull, req: request(pxeARM64, selecting...)},
		{name: "full/backend error/request", mode: ModeFull, req: request(pxeBIOS, selecting...),
			backend: func(b *fakeBackend) { b.err = errPoolExhausted }},

		// Full mode RELEASE / DECLINE: recorded, never answered, lease kept.
		{name: "full/release", mode: ModeFull,
			req:    packet(dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP("10.0.0.50")), serverID("10.0.0.1")),
			events: ev(EventRelease, "10.0.0.50")},
		{name: "full/release to another server", mode: ModeFull,
			req: packet(dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP("10.0.0.50")), serverID("10.0.0.2"))},
		{name: "full/decline", mode: ModeFull,
			req:    packet(dhcpv4.MessageTypeDecline, requestedIP("10.0.0.50"), serverID("10.0.0.1")),
			events: ev(EventDecline, "10.0.0.50")},
		{name: "full/decline without address", mode: ModeFull, req: packet(dhcpv4.MessageTypeDecline),
			events: ev(EventDecline, "unknown")},
		{name: "full/inform", mode: ModeFull,
			req: packet(dhcpv4.MessageTypeInform, with(pxeBIOS, dhcpv4.WithClientIP(net.ParseIP("10.0.0.50")))...)},

		// Packets no mode answers.
		{name: "full/no message type", mode: ModeFull, req: func() *dhcpv4.DHCPv4 {
			p := discover(pxeBIOS)
			p.Options.Del(dhcpv4.OptionDHCPMessageType)
			return p
		}()},
		{name: "full/boot reply opcode", mode: ModeFull, req: func() *dhcpv4.DHCPv4 {
			p := discover(pxeBIOS)
			p.OpCode = dhcpv4.OpcodeBootReply
			return p
		}()},
		{name: "full/token ring client", mode: ModeFull, req: discover(plain, dhcpv4.WithHWType(iana.HWTypeIEEE802))},
		{name: "proxy/infiniband-length address", mode: ModeProxy,
			req: discover(pxeBIOS, dhcpv4.WithHwAddr(make(net.HardwareAddr, 16)))},
		{name: "full/empty hardware address", mode: ModeFull, req: discover(plain, dhcpv4.WithHwAddr(nil))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be := newFakeBackend()
			if c.backend != nil {
				c.backend(be)
			}
			cfg := testConfig(c.mode, be)
			if c.config != nil {
				c.config(&cfg)
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Handle(context.Background(), c.req, c.proxyPort)
			if diff := cmp.Diff(c.want, summarize(got)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.events, be.Events()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if got != nil {
				// Every reply must survive the wire.
				back, err := dhcpv4.FromBytes(got.ToBytes())
				if err != nil {
					t.Fatalf("reply does not parse back: %v", err)
				}
				if diff := cmp.Diff(summarize(got), summarize(back)); diff != "" {
					t.Errorf("reply changed on the wire (-sent +parsed):\n%s", diff)
				}
			}
		})
	}
}

// Proxy mode must not even ask the Backend: it hands out no addresses.
func TestHandleProxyNeverLeases(t *testing.T) {
	be := newFakeBackend()
	s, err := New(testConfig(ModeProxy, be))
	if err != nil {
		t.Fatal(err)
	}
	for _, mods := range [][]dhcpv4.Modifier{pxeBIOS, pxeUEFI, ipxeBIOS, plain} {
		for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
			for _, port := range []bool{false, true} {
				s.Handle(context.Background(), packet(mt, mods...), port)
			}
		}
	}
	if be.Calls() != 0 {
		t.Errorf("proxy mode called Backend.Lease %d times, want 0", be.Calls())
	}
}

// The request must come out of Handle as it went in: Serve may log it afterwards.
func TestHandleLeavesRequestAlone(t *testing.T) {
	s, err := New(testConfig(ModeFull, newFakeBackend()))
	if err != nil {
		t.Fatal(err)
	}
	req := packet(dhcpv4.MessageTypeDiscover, pxeBIOS...)
	before := req.ToBytes()
	r := s.Handle(context.Background(), req, false)
	r.ClientHWAddr[0] ^= 0xff // a reply sharing the request's slices would show here
	if diff := cmp.Diff(before, req.ToBytes()); diff != "" {
		t.Errorf("request changed (-before +after):\n%s", diff)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(Config{})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(Config{}) = %v, want ErrInvalidConfig", err)
	}
}
