package dhcp

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Shared fixtures of the tests in this package.

var (
	testServerIP = netip.MustParseAddr("10.0.0.1")
	testMAC      = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	testLease    = Lease{
		IP:        netip.MustParseAddr("10.0.0.50"),
		PrefixLen: 24,
		Router:    netip.MustParseAddr("10.0.0.254"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("fd00::53")},
		Duration:  time.Hour,
	}
)

type event struct{ MAC, Kind, Detail string }

// fakeBackend hands every MAC the same lease (or err) and records events.
type fakeBackend struct {
	mu     sync.Mutex
	lease  Lease
	err    error
	calls  int
	events []event
	// quiet drops events, so a long fuzz run does not hoard them.
	quiet bool
}

func newFakeBackend() *fakeBackend { return &fakeBackend{lease: testLease} }

func (b *fakeBackend) Lease(_ context.Context, _ net.HardwareAddr) (Lease, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	return b.lease, b.err
}

func (b *fakeBackend) Event(mac net.HardwareAddr, kind, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.quiet {
		b.events = append(b.events, event{mac.String(), kind, detail})
	}
}

func (b *fakeBackend) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func (b *fakeBackend) Events() []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]event(nil), b.events...)
}

var errPoolExhausted = errors.New("pool exhausted")

func testConfig(mode Mode, be Backend) Config {
	c := DefaultConfig()
	c.Mode = mode
	c.ServerIP = testServerIP
	c.HTTPBase = "http://10.0.0.1:8080"
	c.Backend = be
	if testing.Verbose() {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return c
}

// Client flavours, as modifiers of a request.

// vendor sets option 60.
func vendor(vc string) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc)) }

// arch sets option 93.
func arch(a ...iana.Arch) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClientArch(a...)) }

var (
	// A BIOS PXE ROM, as iPXE's undionly and Intel ROMs identify.
	pxeBIOS = []dhcpv4.Modifier{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)}
	// UEFI x86-64 firmware (OVMF).
	pxeUEFI = []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)}
	// UEFI with the EFI byte-code arch, as some firmware sends.
	pxeEFIBC = []dhcpv4.Modifier{vendor("PXEClient:Arch:00009:UNDI:003016"), arch(iana.EFI_BC)}
	// iPXE (QEMU's ROM, or our chained binary), BIOS: raw user class as iPXE sends it.
	ipxeBIOS = append([]dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", false)}, pxeBIOS...)
	// iPXE on UEFI, user class in RFC 3004 form.
	ipxeUEFI = append([]dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", true)}, pxeUEFI...)
	// An ARM64 UEFI machine: not ours to boot.
	pxeARM64 = []dhcpv4.Modifier{vendor("PXEClient:Arch:00011:UNDI:003001"), arch(iana.EFI_ARM64)}
	// iPXE on ARM64: refused too.
	ipxeARM64 = append([]dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", false)}, pxeARM64...)
	// The live image's DHCP client: not PXE.
	plain = []dhcpv4.Modifier{vendor("udhcp 1.35.0")}
	// Option 93 missing, arch only in the vendor class.
	archInVendorOnly = []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003016")}
	// No arch anywhere: an old BIOS ROM.
	noArch = []dhcpv4.Modifier{vendor("PXEClient")}
	// Option 93 of odd length.
	badArch = []dhcpv4.Modifier{vendor("PXEClient"), dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0})}
	// Several archs, the first one not ours.
	multiArch = []dhcpv4.Modifier{vendor("PXEClient"), arch(iana.EFI_ARM64, iana.EFI_X86_64)}
)

func with(mods []dhcpv4.Modifier, more ...dhcpv4.Modifier) []dhcpv4.Modifier {
	return append(append([]dhcpv4.Modifier(nil), mods...), more...)
}

// packet builds a request of type mt from testMAC with a fixed transaction ID.
func packet(mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	base := []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}),
		dhcpv4.WithHwAddr(testMAC),
		dhcpv4.WithMessageType(mt),
	}
	p, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		panic(err)
	}
	return p
}

func requestedIP(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s)))
}

func serverID(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(s)))
}

// summary is the part of a reply the tests compare.
type summary struct {
	Type                         string
	YourIP, ClientIP, NextServer string
	RelayIP                      string
	Broadcast                    bool
	File                         string
	ServerID, VendorClass        string
	TFTPServer, BootFile         string
	Mask, Router, DNS, LeaseTime string
	Opt43, Opt175, Opt97, Opt61  string // hex
	Opt82                        string // hex
	Message                      string
	XID                          string
	HWAddr                       string
	// OtherOptions are codes of options not listed above: none is expected.
	OtherOptions []uint8
}

func summarize(r *dhcpv4.DHCPv4) *summary {
	if r == nil {
		return nil
	}
	hexOpt := func(code dhcpv4.OptionCode) string { return hex.EncodeToString(r.Options.Get(code)) }
	ip := func(ip net.IP) string {
		if ip == nil || ip.IsUnspecified() {
			return ""
		}
		return ip.String()
	}
	s := &summary{
		Type:        r.MessageType().String(),
		YourIP:      ip(r.YourIPAddr),
		ClientIP:    ip(r.ClientIPAddr),
		NextServer:  ip(r.ServerIPAddr),
		RelayIP:     ip(r.GatewayIPAddr),
		Broadcast:   r.IsBroadcast(),
		File:        r.BootFileName,
		ServerID:    ip(r.ServerIdentifier()),
		VendorClass: r.ClassIdentifier(),
		TFTPServer:  r.TFTPServerName(),
		BootFile:    r.BootFileNameOption(),
		Opt43:       hexOpt(dhcpv4.OptionVendorSpecificInformation),
		Opt175:      hexOpt(dhcpv4.OptionEtherboot),
		Opt97:       hexOpt(dhcpv4.OptionClientMachineIdentifier),
		Opt61:       hexOpt(dhcpv4.OptionClientIdentifier),
		Opt82:       hexOpt(dhcpv4.OptionRelayAgentInformation),
		Message:     r.Message(),
		XID:         r.TransactionID.String(),
		HWAddr:      r.ClientHWAddr.String(),
	}
	if m := r.SubnetMask(); m != nil {
		s.Mask = net.IP(m).String()
	}
	if rt := r.Router(); len(rt) > 0 {
		s.Router = rt[0].String()
	}
	for i, d := range r.DNS() {
		if i > 0 {
			s.DNS += ","
		}
		s.DNS += d.String()
	}
	if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		s.LeaseTime = r.IPAddressLeaseTime(0).String()
	}
	known := map[uint8]bool{53: true, 54: true, 60: true, 66: true, 67: true, 1: true, 3: true, 6: true, 51: true,
		43: true, 175: true, 97: true, 61: true, 82: true, 56: true}
	for code := range r.Options {
		if !known[code] {
			s.OtherOptions = append(s.OtherOptions, code)
		}
	}
	slices.Sort(s.OtherOptions)
	return s
}
