package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/deployme/deployme/internal/logkey"
)

// ErrInvalidConfig wraps every error New returns for a Config that fails Validate.
var ErrInvalidConfig = errors.New("invalid PXE DHCP config")

// errBadLease: the Backend returned a lease we cannot put on the wire.
var errBadLease = errors.New("backend returned an unusable lease")

var (
	// pxeDiscoveryControl is option 43 with PXE sub-option 6 (discovery control) = 8:
	// "the boot file in this offer is the one, skip boot server discovery". Without it a
	// PXE ROM may multicast/broadcast boot server discovery instead of using our file.
	pxeDiscoveryControl = []byte{6, 1, 8, 255}
	// ipxeNoProxyDHCP is iPXE's encapsulated option 175 with sub-option 176 (no-pxedhcp)
	// = 1: "stop waiting for proxyDHCP offers", worth seconds per boot (see doc.go).
	ipxeNoProxyDHCP = []byte{176, 1, 1}
)

// Server answers DHCP for PXE. Without ChainIPXE it keeps no per-client state: every answer
// follows from the packet and the Backend, so any coordinator replica, or one just
// restarted, answers alike.
type Server struct {
	cfg      Config
	serverIP net.IP // cfg.ServerIP in the form dhcpv4 wants, 4 bytes
	log      *slog.Logger

	// chained remembers, with ChainIPXE, the transaction in which a MAC was given our iPXE
	// binary (the only per-client state, and only then).
	mu      sync.Mutex
	chained map[string]chainedAt
	now     func() time.Time
}

type chainedAt struct {
	xid dhcpv4.TransactionID
	at  time.Time
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Server{cfg: cfg, serverIP: net.IP(cfg.ServerIP.AsSlice()), log: cfg.logger(), chained: map[string]chainedAt{}, now: time.Now}, nil
}

// firmware is what a PXE client boots, as far as the choice of binary goes.
type firmware int

const (
	fwUnsupported firmware = iota
	fwBIOS
	fwUEFI
)

func (f firmware) String() string {
	switch f {
	case fwBIOS:
		return "BIOS"
	case fwUEFI:
		return "UEFI"
	}
	return "unsupported"
}

// client is what Handle needs to know about the sender of a request.
type client struct {
	mac  net.HardwareAddr
	xid  dhcpv4.TransactionID
	pxe  bool   // vendor class PXEClient* or user class iPXE
	ipxe bool   // user class iPXE: already iPXE, wants its script
	arch string // as the client said it, for logs
	fw   firmware
}

func (c client) class() string {
	switch {
	case c.ipxe:
		return "ipxe"
	case c.pxe:
		return "pxe"
	}
	return "plain"
}

// boot is the boot file chosen for a PXE client.
type boot struct {
	fw   firmware
	file string // TFTP file name, or the script URL for iPXE
	tftp bool   // file is on our TFTP server
}

// Handle is the decision for one request: the reply, or nil to stay silent. proxyPort says
// the request came in on ProxyPort (4011). It does no I/O but Backend calls and logging, and
// it never panics, whatever the packet holds. Safe for concurrent use.
func (s *Server) Handle(ctx context.Context, req *dhcpv4.DHCPv4, proxyPort bool) *dhcpv4.DHCPv4 {
	if req == nil || req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil
	}
	// Other link types (InfiniBand's 20-byte addresses, ...) never PXE-boot our x86-64
	// images, and the Backend's leases are keyed by Ethernet MAC.
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		s.log.Debug("dhcp: ignoring non-ethernet client", logkey.XID, req.TransactionID.String())
		return nil
	}
	c := classify(req)
	mt := req.MessageType()
	log := s.log.With(logkey.MAC, c.mac.String(), logkey.XID, req.TransactionID.String(),
		logkey.MsgType, mt.String(), logkey.Arch, c.arch)
	port := ServerPort
	if proxyPort {
		port = ProxyPort
	}
	log.Debug("dhcp request", logkey.ClientClass, c.class(), logkey.Port, port,
		logkey.VendorClass, req.ClassIdentifier())

	if proxyPort {
		return s.bootServer(req, mt, c, log)
	}
	if s.cfg.Mode == ModeProxy {
		return s.proxyOffer(req, mt, c, log)
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		return s.fullOffer(ctx, req, c, log)
	case dhcpv4.MessageTypeRequest:
		return s.fullRequest(ctx, req, c, log)
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		s.releaseOrDecline(req, mt, c, log)
		return nil
	}
	log.Debug("dhcp: message type not served")
	return nil
}

// proxyOffer answers a PXE DISCOVER on port 67 in proxy mode. Everything else on port 67
// (REQUESTs, RELEASEs, non-PXE clients) belongs to the site's DHCP server.
func (s *Server) proxyOffer(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, c client, log *slog.Logger) *dhcpv4.DHCPv4 {
	if mt != dhcpv4.MessageTypeDiscover {
		log.Debug("dhcp: proxy mode answers only discovers on port 67")
		return nil
	}
	if !c.pxe {
		log.Debug("dhcp: not a PXE client, left to the site's DHCP server")
		return nil
	}
	b, ok := s.bootFor(c, log)
	if !ok {
		return nil
	}
	r := s.reply(req, dhcpv4.MessageTypeOffer)
	s.addBoot(r, b)
	s.addProxy(r, req)
	s.record(c, EventOffer, b.describe("proxy"), log)
	return r
}

// bootServer answers the boot REQUEST a standard PXE ROM unicasts to port 4011 once it has an
// address from another server. It does so in both modes: the answer depends on no lease.
func (s *Server) bootServer(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, c client, log *slog.Logger) *dhcpv4.DHCPv4 {
	if mt != dhcpv4.MessageTypeRequest {
		log.Debug("dhcp: boot server answers only requests")
		return nil
	}
	if !c.pxe {
		log.Debug("dhcp: not a PXE client")
		return nil
	}
	b, ok := s.bootFor(c, log)
	if !ok {
		return nil
	}
	r := s.reply(req, dhcpv4.MessageTypeAck)
	r.ClientIPAddr = ip4OrZero(req.ClientIPAddr)
	s.addBoot(r, b)
	s.addProxy(r, req)
	s.record(c, EventAck, b.describe("boot-server"), log)
	return r
}

// fullOffer answers a DISCOVER in full mode with the Backend's lease.
func (s *Server) fullOffer(ctx context.Context, req *dhcpv4.DHCPv4, c client, log *slog.Logger) *dhcpv4.DHCPv4 {
	b, ok := s.fullBoot(c, log)
	if !ok {
		return nil
	}
	l, err := s.lease(ctx, c.mac)
	if err != nil {
		log.Warn("dhcp: no lease, not answering", logkey.Err, err)
		return nil
	}
	r := s.reply(req, dhcpv4.MessageTypeOffer)
	addLease(r, l)
	s.addFullBoot(r, b)
	s.record(c, EventOffer, describe(b, l.IP.String()), log)
	return r
}

// fullRequest ACKs a REQUEST for the client's leased address and NAKs one for any other.
func (s *Server) fullRequest(ctx context.Context, req *dhcpv4.DHCPv4, c client, log *slog.Logger) *dhcpv4.DHCPv4 {
	// A server identifier that is not ours means the client took another server's offer
	// (RFC 2131 §4.3.2): that server answers.
	if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.serverIP) {
		log.Debug("dhcp: request for another server", logkey.ServerID, sid.String())
		return nil
	}
	want := requestedAddr(req)
	if !want.IsValid() {
		log.Debug("dhcp: request names no address")
		return nil
	}
	b, ok := s.fullBoot(c, log)
	if !ok {
		return nil
	}
	l, err := s.lease(ctx, c.mac)
	if err != nil {
		log.Warn("dhcp: no lease, not answering", logkey.Err, err)
		return nil
	}
	if want != l.IP {
		r := s.reply(req, dhcpv4.MessageTypeNak)
		r.UpdateOption(dhcpv4.OptMessage("requested address is not leased to this client"))
		// RFC 2131 §4.3.2: a relay can only broadcast the NAK on the client's segment if
		// the broadcast bit tells it to.
		if !ip4OrZero(req.GatewayIPAddr).IsUnspecified() {
			r.SetBroadcast()
		}
		s.record(c, EventNak, fmt.Sprintf("requested %s, leased %s", want, l.IP), log)
		return r
	}
	r := s.reply(req, dhcpv4.MessageTypeAck)
	r.ClientIPAddr = ip4OrZero(req.ClientIPAddr)
	addLease(r, l)
	s.addFullBoot(r, b)
	s.record(c, EventAck, describe(b, l.IP.String()), log)
	return r
}

// releaseOrDecline records the message; the Backend keeps the lease (see doc.go).
func (s *Server) releaseOrDecline(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, c client, log *slog.Logger) {
	if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.serverIP) {
		log.Debug("dhcp: message for another server", logkey.ServerID, sid.String())
		return
	}
	if mt == dhcpv4.MessageTypeRelease {
		addr := ip4OrZero(req.ClientIPAddr).String()
		log.Info("dhcp release; lease kept", logkey.IP, addr)
		s.cfg.Backend.Event(c.mac, EventRelease, addr)
		return
	}
	addr := "unknown"
	if a := requestedAddr(req); a.IsValid() {
		addr = a.String()
	}
	log.Warn("dhcp decline: the address is in use by another host on the segment", logkey.IP, addr)
	s.cfg.Backend.Event(c.mac, EventDecline, addr)
}

// fullBoot is the boot file for a full-mode answer: nil for a client that is not PXE (it
// gets a plain lease), and ok false for a PXE client we cannot boot (no answer at all).
func (s *Server) fullBoot(c client, log *slog.Logger) (*boot, bool) {
	if !c.pxe {
		return nil, true
	}
	b, ok := s.bootFor(c, log)
	if !ok {
		return nil, false
	}
	return &b, true
}

// bootFor picks the boot file, or refuses a firmware we have no binary for.
func (s *Server) bootFor(c client, log *slog.Logger) (boot, bool) {
	switch {
	case c.fw == fwUnsupported:
		// Info, not Debug: a machine that never boots because of this needs explaining.
		log.Info("dhcp: PXE client architecture not served, not answering (x86-64 BIOS and UEFI only)")
		return boot{}, false
	case c.ipxe && !s.chainNow(c):
		return boot{fw: c.fw, file: scriptURL(s.cfg.HTTPBase, c.mac)}, true
	case c.fw == fwUEFI:
		return boot{fw: c.fw, file: s.cfg.UEFIFile, tftp: true}, true
	default:
		return boot{fw: c.fw, file: s.cfg.BIOSFile, tftp: true}, true
	}
}

// chainNow tells, with ChainIPXE, whether this iPXE client must first be given our iPXE
// binary: it was not given it within ChainMemory, or it was in this very transaction (the
// REQUEST that follows the OFFER).
func (s *Server) chainNow(c client) bool {
	if !s.cfg.ChainIPXE {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.chained { // bounded by the machines booting within ChainMemory
		if now.Sub(v.at) > s.cfg.ChainMemory {
			delete(s.chained, k)
		}
	}
	key := c.mac.String()
	if e, ok := s.chained[key]; ok && e.xid != c.xid {
		return false
	}
	s.chained[key] = chainedAt{xid: c.xid, at: now}
	return true
}

// scriptURL is where iPXE fetches its per-machine script.
func scriptURL(base string, mac net.HardwareAddr) string {
	return strings.TrimRight(base, "/") + "/boot/ipxe?mac=" + mac.String()
}

// describe is an event detail: "<firmware> <file> <where>".
func (b boot) describe(where string) string {
	return b.fw.String() + " " + b.file + " " + where
}

func describe(b *boot, where string) string {
	if b == nil {
		return "no-boot " + where
	}
	return b.describe(where)
}

func (s *Server) record(c client, kind, detail string, log *slog.Logger) {
	log.Debug("dhcp reply", logkey.Event, kind, logkey.Detail, detail)
	s.cfg.Backend.Event(c.mac, kind, detail)
}

// reply starts an answer to req. It is built by hand rather than with
// dhcpv4.NewReplyFromRequest, which draws a random transaction ID from crypto/rand only to
// overwrite it: that can block early in boot and adds an error path for nothing.
func (s *Server) reply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IP{0, 0, 0, 0},
		YourIPAddr:    net.IP{0, 0, 0, 0},
		ServerIPAddr:  net.IP{0, 0, 0, 0},
		GatewayIPAddr: ip4OrZero(req.GatewayIPAddr),
		ClientHWAddr:  slices.Clone(req.ClientHWAddr),
		Options:       make(dhcpv4.Options),
	}
	r.UpdateOption(dhcpv4.OptMessageType(mt))
	r.UpdateOption(dhcpv4.OptServerIdentifier(s.serverIP))
	copyOption(r, req, dhcpv4.OptionRelayAgentInformation) // RFC 3046 §2.2: relays strip it
	copyOption(r, req, dhcpv4.OptionClientIdentifier)      // RFC 6842
	return r
}

// addBoot says where the boot file is, in every place a ROM may look: siaddr and the
// BOOTP file field (what PXE ROMs read), options 66 and 67 (what iPXE and UEFI prefer).
func (s *Server) addBoot(r *dhcpv4.DHCPv4, b boot) {
	r.ServerIPAddr = slices.Clone(s.serverIP)
	r.BootFileName = b.file // Validate keeps every name within the field
	r.UpdateOption(dhcpv4.OptBootFileName(b.file))
	if b.tftp {
		r.UpdateOption(dhcpv4.OptTFTPServerName(s.serverIP.String()))
	}
}

// addFullBoot adds a full-mode PXE client's boot file, and tells iPXE that no proxyDHCP
// offer is coming. b is nil for a client that is not PXE.
func (s *Server) addFullBoot(r *dhcpv4.DHCPv4, b *boot) {
	if b == nil {
		return
	}
	s.addBoot(r, *b)
	r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionEtherboot, ipxeNoProxyDHCP))
}

// addProxy marks a proxyDHCP / boot server answer: option 60 "PXEClient" is how ROMs (and
// iPXE) recognise it, option 43 makes them take our file without boot server discovery,
// and the PXE spec wants the client's UUID (option 97) echoed.
func (s *Server) addProxy(r, req *dhcpv4.DHCPv4) {
	r.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl))
	copyOption(r, req, dhcpv4.OptionClientMachineIdentifier)
}

// lease asks the Backend and checks the answer can go on the wire.
func (s *Server) lease(ctx context.Context, mac net.HardwareAddr) (Lease, error) {
	l, err := s.cfg.Backend.Lease(ctx, slices.Clone(mac))
	if err != nil {
		return Lease{}, err
	}
	l.IP = l.IP.Unmap()
	switch {
	case !l.IP.Is4() || l.IP.IsUnspecified():
		return Lease{}, fmt.Errorf("%w: address %v", errBadLease, l.IP)
	case l.PrefixLen < 1 || l.PrefixLen > 32:
		return Lease{}, fmt.Errorf("%w: prefix length %d", errBadLease, l.PrefixLen)
	case l.Duration < time.Second:
		return Lease{}, fmt.Errorf("%w: duration %v", errBadLease, l.Duration)
	}
	return l, nil
}

func addLease(r *dhcpv4.DHCPv4, l Lease) {
	r.YourIPAddr = l.IP.AsSlice()
	r.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(l.PrefixLen, 32)))
	if l.Router.Unmap().Is4() {
		r.UpdateOption(dhcpv4.OptRouter(net.IP(l.Router.Unmap().AsSlice())))
	}
	var dns []net.IP
	for _, d := range l.DNS {
		if d = d.Unmap(); d.Is4() {
			dns = append(dns, net.IP(d.AsSlice()))
		}
	}
	if len(dns) > 0 {
		r.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	// 0xffffffff on the wire means "infinite"; a long lease must not become one.
	d := min(l.Duration, (math.MaxUint32-1)*time.Second)
	r.UpdateOption(dhcpv4.OptIPAddressLeaseTime(d))
}

// classify reads what Handle needs from the request.
func classify(req *dhcpv4.DHCPv4) client {
	c := client{mac: slices.Clone(req.ClientHWAddr), xid: req.TransactionID}
	vc := req.ClassIdentifier()
	c.ipxe = slices.Contains(req.UserClass(), "iPXE")
	c.pxe = c.ipxe || strings.HasPrefix(vc, "PXEClient")
	c.arch, c.fw = clientArch(req, vc)
	return c
}

// clientArch reads option 93, else the "PXEClient:Arch:NNNNN" vendor class, else assumes
// BIOS. A client listing several architectures gets the first one we serve.
func clientArch(req *dhcpv4.DHCPv4, vc string) (string, firmware) {
	if req.Options.Has(dhcpv4.OptionClientSystemArchitectureType) {
		archs := req.ClientArch() // nil when malformed
		if len(archs) == 0 {
			return "malformed", fwUnsupported
		}
		for _, a := range archs {
			if fw := firmwareOf(a); fw != fwUnsupported {
				return archLabel(a), fw
			}
		}
		return archLabel(archs[0]), fwUnsupported
	}
	if f := strings.Split(vc, ":"); len(f) >= 3 && f[0] == "PXEClient" && f[1] == "Arch" {
		if n, err := strconv.ParseUint(f[2], 10, 16); err == nil {
			a := iana.Arch(n)
			return archLabel(a), firmwareOf(a)
		}
	}
	return archLabel(iana.INTEL_X86PC), fwBIOS
}

// archLabel keeps the number: iana names only the architectures it knows.
func archLabel(a iana.Arch) string { return strconv.Itoa(int(a)) + " " + a.String() }

func firmwareOf(a iana.Arch) firmware {
	switch a {
	case iana.INTEL_X86PC:
		return fwBIOS
	case iana.EFI_X86_64, iana.EFI_BC:
		return fwUEFI
	}
	return fwUnsupported
}

// requestedAddr is option 50 (SELECTING, INIT-REBOOT), else ciaddr (RENEWING, REBINDING).
func requestedAddr(req *dhcpv4.DHCPv4) netip.Addr {
	for _, ip := range []net.IP{req.RequestedIPAddress(), req.ClientIPAddr} {
		if a, ok := netip.AddrFromSlice(ip.To4()); ok && !a.IsUnspecified() {
			return a
		}
	}
	return netip.Addr{}
}

func copyOption(r, req *dhcpv4.DHCPv4, code dhcpv4.OptionCode) {
	if v := req.Options.Get(code); v != nil {
		r.UpdateOption(dhcpv4.OptGeneric(code, slices.Clone(v)))
	}
}

// ip4OrZero keeps a field encodable (dhcpv4 panics writing an IP that has no IPv4 form) and
// returns a copy, so a reply never shares memory with its request or with net.IPv4zero.
func ip4OrZero(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return slices.Clone(v4)
	}
	return net.IP{0, 0, 0, 0}
}
