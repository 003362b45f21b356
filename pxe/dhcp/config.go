package dhcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Mode says whether the server also hands out addresses.
type Mode string

const (
	// ModeProxy answers PXE clients with boot information only, next to the site's DHCP.
	ModeProxy Mode = "proxy"
	// ModeFull is the segment's DHCP server: addresses from Backend.Lease, plus boot
	// information for PXE clients.
	ModeFull Mode = "full"
)

// Ports the server listens on.
const (
	// ServerPort is the DHCP server port, where DISCOVERs and REQUESTs are broadcast.
	ServerPort = 67
	// ProxyPort is the PXE boot server port: after getting an address elsewhere, a standard
	// PXE ROM unicasts its boot REQUEST to the proxyDHCP server here.
	ProxyPort = 4011
	// ClientPort is where DHCP clients listen for replies.
	ClientPort = 68
)

// Event kinds passed to Backend.Event.
const (
	EventOffer   = "dhcp.offer"
	EventAck     = "dhcp.ack"
	EventNak     = "dhcp.nak"
	EventRelease = "dhcp.release"
	EventDecline = "dhcp.decline"
)

// Lease is one address given to one MAC in full mode.
type Lease struct {
	// IP is the client's address (IPv4).
	IP netip.Addr
	// PrefixLen is the subnet's prefix length, sent as the subnet mask (option 1).
	PrefixLen int
	// Router, if valid, is sent as option 3.
	Router netip.Addr
	// DNS servers, option 6; IPv4 entries only are sent.
	DNS []netip.Addr
	// Duration is the lease time, option 51. It must be positive.
	Duration time.Duration
}

// Backend is what the coordinator provides; it keeps leases and boot history in Raft.
type Backend interface {
	// Lease returns the address for mac in full mode: the same one on every call while it
	// lasts. An error (pool exhausted, no leader) means no answer; the client retries.
	Lease(ctx context.Context, mac net.HardwareAddr) (Lease, error)
	// Event records a step of a machine's boot history, e.g. (EventOffer, "BIOS
	// undionly.kpxe 10.0.0.50"). It is called on the packet path and must not block long.
	Event(mac net.HardwareAddr, kind, detail string)
}

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Mode is ModeProxy or ModeFull.
	Mode Mode
	// ServerIP is this server's IPv4 address on the boot segment: siaddr, option 54 and the
	// TFTP server clients fetch BIOSFile / UEFIFile from.
	ServerIP netip.Addr
	// HTTPBase is how iPXE reaches the coordinator's boot HTTP server, e.g.
	// "http://10.0.0.1:8080"; iPXE is sent HTTPBase + "/boot/ipxe?mac=<mac>".
	HTTPBase string
	// BIOSFile is the iPXE binary for legacy BIOS PXE ROMs, over TFTP.
	BIOSFile string
	// UEFIFile is the iPXE binary for x86-64 UEFI, over TFTP: "ipxe.efi" (own drivers) or
	// "snponly.efi" (uses the firmware's network stack; for NICs iPXE has no driver for).
	UEFIFile string
	// Backend gives leases (full mode) and records events. Required.
	Backend Backend
	// ReplyTimeout bounds the Backend call for one request. Clients retransmit after about
	// 4 s, so a later answer is wasted; keep it below that.
	ReplyTimeout time.Duration
	// ChainIPXE hands an iPXE client our own iPXE binary over TFTP in its first DHCP
	// transaction, and its script only from a later one (the chained binary's). Off by
	// default: iPXE gets its script at once. On, the NIC's iPXE ROM (QEMU's, or an old one
	// on real hardware) is replaced by the binary we serve. A loop is avoided by keying on
	// the transaction ID: the chained iPXE starts a new transaction (FACTS.md, section 3).
	// The memory is per replica and forgotten after ChainMemory.
	ChainIPXE   bool
	ChainMemory time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// DefaultConfig returns proxy mode with the stock iPXE file names; the caller sets
// ServerIP, HTTPBase and Backend.
func DefaultConfig() Config {
	return Config{
		Mode:         ModeProxy,
		BIOSFile:     "undionly.kpxe",
		UEFIFile:     "ipxe.efi",
		ReplyTimeout: 3 * time.Second,
		ChainMemory:  5 * time.Minute,
	}
}

// maxFileField is what the BOOTP file field holds (128 bytes with the terminating NUL).
// Some PXE ROMs read only that field, never option 67, so TFTP names must fit in it.
const maxFileField = 127

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeProxy, ModeFull:
	case "":
		return errors.New("mode is empty")
	default:
		return fmt.Errorf("unknown mode %q (want %q or %q)", c.Mode, ModeProxy, ModeFull)
	}
	if !c.ServerIP.IsValid() {
		return errors.New("server IP is not set")
	}
	if !c.ServerIP.Is4() {
		return fmt.Errorf("server IP %s is not IPv4", c.ServerIP)
	}
	if c.ServerIP.IsUnspecified() || c.ServerIP.IsMulticast() || c.ServerIP == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("server IP %s cannot be a server identifier", c.ServerIP)
	}
	if err := validateHTTPBase(c.HTTPBase); err != nil {
		return err
	}
	for _, nf := range [...]struct{ name, file string }{{"BIOS file", c.BIOSFile}, {"UEFI file", c.UEFIFile}} {
		name, f := nf.name, nf.file
		if f == "" {
			return fmt.Errorf("%s is empty", name)
		}
		if len(f) > maxFileField {
			return fmt.Errorf("%s %q is longer than the %d bytes of the BOOTP file field", name, f, maxFileField)
		}
		if strings.ContainsRune(f, 0) {
			return fmt.Errorf("%s contains a NUL byte", name)
		}
	}
	if c.Backend == nil {
		return errors.New("no backend")
	}
	if c.ReplyTimeout <= 0 {
		return errors.New("reply timeout must be positive")
	}
	return nil
}

func validateHTTPBase(s string) error {
	if s == "" {
		return errors.New("HTTP base URL is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("HTTP base URL: %w", err)
	}
	// iPXE builds without HTTPS exist (Debian's 2019 one has none), but the choice is the
	// operator's; anything else is a typo.
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("HTTP base URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("HTTP base URL %q has no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("HTTP base URL %q must have no query, fragment or user", s)
	}
	// The script URL goes in the BOOTP file field too, for ROMs that ignore option 67.
	if n := len(scriptURL(s, make(net.HardwareAddr, 6))); n > maxFileField {
		return fmt.Errorf("HTTP base URL %q is too long: the script URL would be %d bytes, the BOOTP file field holds %d", s, n, maxFileField)
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
