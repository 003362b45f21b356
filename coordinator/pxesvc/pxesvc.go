// Package pxesvc runs a replica's boot services: proxy or full DHCP on the boot segment,
// TFTP for the iPXE binaries and the boot HTTP handler (scripts, kernel, initrd), over the
// coordinator's state. Every replica can run them; what a machine boots comes from Raft, so
// any replica gives the same answer and a machine boots while one replica is down.
//
// pxe/* packages know nothing of the coordinator: this package is their Backend.
package pxesvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/logkey"
	"github.com/deployme/deployme/pxe/dhcp"
	"github.com/deployme/deployme/pxe/httpboot"
	"github.com/deployme/deployme/pxe/tftp"
)

// Config is the boot services' part of the coordinator's configuration (--pxe-* flags).
type Config struct {
	// Enabled turns the boot services on (--pxe).
	Enabled bool
	// InfraID is the bare-metal infra the machines of this segment join, by ID or name
	// (resolved when first needed, so the infra may be created after the replica starts).
	InfraID string
	// Interface is the boot segment's interface; DHCP binds to it.
	Interface string
	// DHCPMode is proxy (answer PXE clients only, next to the site's DHCP server), full
	// (also hand out addresses from DHCPRange, leases in Raft) or off.
	DHCPMode string
	// DHCPRange is full mode's address range, "10.0.0.100-10.0.0.199".
	DHCPRange string
	LeaseTime time.Duration
	// TFTPAddr is where TFTP listens (":69"); empty turns TFTP off.
	TFTPAddr string
	// Assets holds vmlinuz, initrd.img and the iPXE binaries (make images).
	Assets string
	// ServerIP is this replica's address on the boot segment; default: the interface's
	// first IPv4 address.
	ServerIP string
	// HTTPBase is how iPXE reaches this replica's HTTP server; default
	// http://<ServerIP>:<port of the HTTP address>.
	HTTPBase string
	// LoopLimit network boots without progress make a machine's state error.
	LoopLimit int
	// UEFIFile is the UEFI iPXE binary: ipxe.efi (default) or snponly.efi.
	UEFIFile string
	// JoinTokenTTL is the life of the join tokens minted for booting machines.
	JoinTokenTTL time.Duration
	// ChainIPXE serves our iPXE binary over TFTP to iPXE ROMs first (pxe/dhcp).
	ChainIPXE bool
	// RouterAdvertisements multicasts "no IPv6 router here" on the interface, which saves
	// iPXE a 16 s wait per boot; turn off when the segment has an IPv6 router.
	RouterAdvertisements bool
}

// DefaultConfig returns the defaults (services off).
func DefaultConfig() Config {
	return Config{DHCPMode: "proxy", TFTPAddr: ":69", LeaseTime: time.Hour, LoopLimit: 5, UEFIFile: "ipxe.efi", JoinTokenTTL: 24 * time.Hour,
		RouterAdvertisements: true}
}

// Validate checks an enabled configuration.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	switch {
	case c.InfraID == "":
		return errors.New("pxe: --pxe-infra names the bare-metal infra the machines join")
	case c.Assets == "":
		return errors.New("pxe: --pxe-assets is required (make images builds them)")
	case c.DHCPMode != "proxy" && c.DHCPMode != "full" && c.DHCPMode != "off":
		return fmt.Errorf("pxe: --pxe-dhcp-mode %q: proxy, full or off", c.DHCPMode)
	case c.DHCPMode != "off" && c.Interface == "":
		return errors.New("pxe: --pxe-interface is required for DHCP")
	case c.LoopLimit < 1:
		return errors.New("pxe: the boot-loop limit must be at least 1")
	}
	if c.DHCPMode == "full" {
		if _, _, err := parseRange(c.DHCPRange); err != nil {
			return fmt.Errorf("pxe: --pxe-dhcp-range: %w", err)
		}
	}
	return nil
}

func parseRange(s string) (netip.Addr, netip.Addr, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
	hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || !lo.Is4() || !hi.Is4() || hi.Less(lo) {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("%q is not an IPv4 range such as 10.0.0.100-10.0.0.199", s)
	}
	return lo, hi, nil
}

// Service is what the boot services need of the coordinator's service layer.
type Service interface {
	RecordBoot(ctx context.Context, mac net.HardwareAddr, infraID, kind, detail string, loopLimit int, at time.Time) error
	AllocateLease(ctx context.Context, mac net.HardwareAddr, infraID, lo, hi string, d time.Duration) (*v1.Machine, error)
	LocalMachine(mac string) (*v1.Machine, error)
	GetInfra(ctx context.Context, id string) (*v1.Infra, error)
	ListInfras(ctx context.Context) (*v1.InfraList, error)
	CreateJoinToken(ctx context.Context, infraID string, ttl time.Duration, maxUses int) (*v1.JoinToken, error)
	AgentCoordinators() []string
	AgentCAFingerprint() string
}

// Services are one replica's boot services.
type Services struct {
	cfg  Config
	svc  Service
	log  *slog.Logger
	boot *httpboot.Handler
	tftp *tftp.Server
	dhcp *dhcp.Server
	ip   netip.Addr

	// events go to Raft in order from one goroutine, so a slow write never delays a DHCP
	// answer and a machine's history keeps its order.
	events chan bootEvent

	tokenMu sync.Mutex
	token   *v1.JoinToken // under tokenMu

	mu      sync.Mutex
	infraID string // resolved InfraID
	// byIP maps a full-mode lease to its MAC, so a TFTP transfer (which only shows the
	// client's address) lands in the right machine's history.
	byIP map[netip.Addr]net.HardwareAddr
}

type bootEvent struct {
	mac          net.HardwareAddr
	kind, detail string
	at           time.Time
}

// New prepares the services; nothing listens before Run.
func New(cfg Config, svc Service, httpAddr string, logger *slog.Logger, reg prometheus.Registerer) (*Services, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Services{cfg: cfg, svc: svc, log: logger, events: make(chan bootEvent, 1024), byIP: map[netip.Addr]net.HardwareAddr{}}
	ip, err := serverIP(cfg)
	if err != nil {
		return nil, err
	}
	s.ip = ip
	base := cfg.HTTPBase
	if base == "" {
		_, port, err := net.SplitHostPort(httpAddr)
		if err != nil {
			return nil, fmt.Errorf("pxe: HTTP address %q: %w", httpAddr, err)
		}
		host := "127.0.0.1"
		if ip.IsValid() {
			host = ip.String()
		}
		base = "http://" + net.JoinHostPort(host, port)
	}
	hc := httpboot.DefaultConfig()
	hc.Backend, hc.Assets, hc.BaseURL, hc.Logger = bootBackend{s}, cfg.Assets, base, logger.With(logkey.Component, "httpboot")
	if s.boot, err = httpboot.New(hc); err != nil {
		return nil, err
	}
	if cfg.TFTPAddr != "" {
		tc := tftp.DefaultConfig()
		tc.Assets, tc.Logger, tc.Metrics = cfg.Assets, logger.With(logkey.Component, "tftp"), reg
		tc.OnTransfer = s.tftpDone
		if s.tftp, err = tftp.New(tc); err != nil {
			return nil, err
		}
	}
	if cfg.DHCPMode != "off" {
		dc := dhcp.DefaultConfig()
		dc.Mode = dhcp.Mode(cfg.DHCPMode)
		dc.ServerIP, dc.HTTPBase, dc.UEFIFile = ip, base, cfg.UEFIFile
		dc.Backend, dc.Logger = dhcpBackend{s}, logger.With(logkey.Component, "dhcp")
		dc.ChainIPXE = cfg.ChainIPXE
		if s.dhcp, err = dhcp.New(dc); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// serverIP is the configured address, else the interface's first IPv4 address.
func serverIP(cfg Config) (netip.Addr, error) {
	if cfg.ServerIP != "" {
		ip, err := netip.ParseAddr(cfg.ServerIP)
		if err != nil || !ip.Is4() {
			return netip.Addr{}, fmt.Errorf("pxe: server address %q is not an IPv4 address", cfg.ServerIP)
		}
		return ip, nil
	}
	if cfg.Interface == "" {
		return netip.Addr{}, nil
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("pxe: interface %s: %w", cfg.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pxe: interface %s has no IPv4 address", cfg.Interface)
}

// HTTP is the /boot/ handler to mount on the replica's HTTP server.
func (s *Services) HTTP() http.Handler { return s.boot }

// Run serves DHCP and TFTP until ctx ends.
func (s *Services) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.recordLoop(ctx); return nil })
	if s.tftp != nil {
		addr, err := net.ResolveUDPAddr("udp", s.cfg.TFTPAddr)
		if err != nil {
			return fmt.Errorf("pxe: --pxe-tftp-addr: %w", err)
		}
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			return fmt.Errorf("pxe: tftp: %w", err)
		}
		s.log.Info("serving tftp", logkey.Addr, conn.LocalAddr().String())
		g.Go(func() error { defer conn.Close(); return s.tftp.Serve(ctx, conn) })
	}
	if s.dhcp != nil {
		c67, err := dhcp.Listen(s.cfg.Interface, dhcp.ServerPort)
		if err != nil {
			return fmt.Errorf("pxe: dhcp on %s: %w", s.cfg.Interface, err)
		}
		var c4011 net.PacketConn
		if s.cfg.DHCPMode == "proxy" {
			c, err := dhcp.Listen(s.cfg.Interface, dhcp.ProxyPort)
			if err != nil {
				c67.Close()
				return fmt.Errorf("pxe: proxy dhcp on %s: %w", s.cfg.Interface, err)
			}
			c4011 = c
		}
		s.log.Info("serving dhcp", "interface", s.cfg.Interface, "mode", s.cfg.DHCPMode, "server_ip", s.ip.String())
		if s.cfg.RouterAdvertisements {
			g.Go(func() error {
				if err := dhcp.AnnounceNoRouter(ctx, s.cfg.Interface, 3*time.Second); err != nil {
					s.log.Warn("no IPv6 router advertisements: iPXE will wait for IPv6 on every boot", logkey.Err, err)
				}
				return nil
			})
		}
		g.Go(func() error {
			defer c67.Close()
			if c4011 != nil {
				defer c4011.Close()
			}
			return s.dhcp.Serve(ctx, c67, c4011)
		})
	}
	return g.Wait()
}

// event queues a boot event; when the queue is full it is dropped (the history is
// informative, the boot goes on).
func (s *Services) event(mac net.HardwareAddr, kind, detail string) {
	select {
	case s.events <- bootEvent{mac: mac, kind: kind, detail: detail, at: time.Now()}:
	default:
		s.log.Warn("boot event dropped: queue full", logkey.MAC, mac.String(), "kind", kind)
	}
}

func (s *Services) recordLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.events:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			infra, err := s.infra(wctx)
			if err == nil {
				err = s.svc.RecordBoot(wctx, e.mac, infra, e.kind, e.detail, s.cfg.LoopLimit, e.at)
			}
			if err != nil {
				s.log.Warn("boot event not recorded", logkey.MAC, e.mac.String(), "kind", e.kind, logkey.Err, err)
			}
			cancel()
		}
	}
}

func (s *Services) tftpDone(remote netip.AddrPort, file string, n int64, err error) {
	s.mu.Lock()
	mac := s.byIP[remote.Addr().Unmap()]
	s.mu.Unlock()
	if mac == nil {
		return // proxy mode: the client's address was not ours to give
	}
	detail := fmt.Sprintf("%s %d bytes", file, n)
	if err != nil {
		detail = fmt.Sprintf("%s failed: %v", file, err)
	}
	s.event(mac, "tftp.sent", detail)
}

// infra resolves the configured infra (ID or name) once it exists.
func (s *Services) infra(ctx context.Context) (string, error) {
	s.mu.Lock()
	id := s.infraID
	s.mu.Unlock()
	if id != "" {
		return id, nil
	}
	list, err := s.svc.ListInfras(ctx)
	if err != nil {
		return "", err
	}
	for _, in := range list.Items {
		if in.ID == s.cfg.InfraID || in.Name == s.cfg.InfraID {
			s.mu.Lock()
			s.infraID = in.ID
			s.mu.Unlock()
			return in.ID, nil
		}
	}
	return "", fmt.Errorf("pxe: infra %q (--pxe-infra) does not exist", s.cfg.InfraID)
}

// joinToken returns a join token of the boot infra for machines to register with, minting
// a new one when the cached one is within a quarter of its life of expiring.
func (s *Services) joinToken(ctx context.Context) (*v1.JoinToken, error) {
	// tokenMu makes concurrent script requests share one minting.
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	if t := s.token; t != nil && time.Until(t.ExpiresAt) > s.cfg.JoinTokenTTL/4 {
		return t, nil
	}
	infra, err := s.infra(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.svc.CreateJoinToken(ctx, infra, s.cfg.JoinTokenTTL, 0)
	if err != nil {
		return nil, err
	}
	s.token = t
	return t, nil
}

// bootBackend answers httpboot.
type bootBackend struct{ s *Services }

func (b bootBackend) Machine(ctx context.Context, mac net.HardwareAddr) (httpboot.Machine, error) {
	m := httpboot.Machine{MAC: mac, Next: httpboot.NextAgent}
	if mc, err := b.s.svc.LocalMachine(mac.String()); err == nil && mc.NextBoot == "disk" {
		m.Next, m.DiskExit, m.DiskChain = httpboot.NextDisk, mc.DiskExit, mc.DiskChain
		return m, nil
	}
	t, err := b.s.joinToken(ctx)
	if err != nil {
		return m, err
	}
	m.Coordinators = b.s.svc.AgentCoordinators()
	m.JoinToken = t.Secret
	if fp := b.s.svc.AgentCAFingerprint(); fp != "" {
		m.CAHash = "sha256:" + fp
	}
	return m, nil
}

func (b bootBackend) Event(mac net.HardwareAddr, kind, detail string) { b.s.event(mac, kind, detail) }

// dhcpBackend answers pxe/dhcp.
type dhcpBackend struct{ s *Services }

func (b dhcpBackend) Lease(ctx context.Context, mac net.HardwareAddr) (dhcp.Lease, error) {
	s := b.s
	lo, hi, err := parseRange(s.cfg.DHCPRange)
	if err != nil {
		return dhcp.Lease{}, err
	}
	infra, err := s.infra(ctx)
	if err != nil {
		return dhcp.Lease{}, err
	}
	m, err := s.svc.AllocateLease(ctx, mac, infra, lo.String(), hi.String(), s.cfg.LeaseTime)
	if err != nil {
		return dhcp.Lease{}, err
	}
	ip, err := netip.ParseAddr(m.LeaseIP)
	if err != nil {
		return dhcp.Lease{}, fmt.Errorf("lease of %s: %w", mac, err)
	}
	s.mu.Lock()
	s.byIP[ip] = mac
	s.mu.Unlock()
	l := dhcp.Lease{IP: ip, PrefixLen: 24, Duration: s.cfg.LeaseTime}
	// The infra's network template says the subnet, gateway and DNS; else the segment's
	// own prefix length and no router.
	if in, err := s.svc.GetInfra(ctx, infra); err == nil && in.Network != nil {
		n := in.Network
		if p, err := netip.ParsePrefix(n.CIDR); err == nil && p.Contains(ip) {
			l.PrefixLen = p.Bits()
		}
		if gw, err := netip.ParseAddr(n.Gateway); err == nil {
			l.Router = gw
		}
		for _, d := range n.DNS {
			if a, err := netip.ParseAddr(d); err == nil {
				l.DNS = append(l.DNS, a)
			}
		}
	} else if bits := s.segmentBits(); bits > 0 {
		l.PrefixLen = bits
	}
	return l, nil
}

func (b dhcpBackend) Event(mac net.HardwareAddr, kind, detail string) { b.s.event(mac, kind, detail) }

// segmentBits is the prefix length of the interface address that is ServerIP.
func (s *Services) segmentBits() int {
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return 0
	}
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == s.ip {
			return p.Bits()
		}
	}
	return 0
}
