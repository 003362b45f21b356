package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sync/errgroup"

	"github.com/deployme/deployme/internal/logkey"
)

const (
	// maxInFlight bounds the requests being answered at once. A rack powering on sends a
	// few hundred DISCOVERs within seconds; beyond this many waiting on the Backend, more
	// goroutines would only queue on Raft while clients retransmit anyway.
	maxInFlight = 256
	// readBuf is larger than any UDP datagram, so no request is truncated.
	readBuf = 1 << 16
)

// Listen opens a UDP socket for Serve on port (ServerPort or ProxyPort) of iface, as
// server4 does: bound to the device, so a multi-homed coordinator answers only the boot
// segment, and allowed to broadcast, since clients without an address cannot get unicast.
// It needs root or CAP_NET_RAW and CAP_NET_BIND_SERVICE.
func Listen(iface string, port int) (*net.UDPConn, error) {
	if iface == "" {
		// Without a device the socket would hear, and answer, every segment.
		return nil, errors.New("listen dhcp: no interface")
	}
	c, err := server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: port})
	if err != nil {
		return nil, fmt.Errorf("listen dhcp on %s port %d: %w", iface, port, err)
	}
	return c, nil
}

// Serve answers requests read from conn67 (port 67, required) and conn4011 (the PXE boot
// server port; nil to leave it out, as full mode may) until ctx ends, then returns nil once
// every answer in flight is done. A read error ends it with that error. The caller owns the
// conns and closes them after Serve returns; Serve stops its reads by setting a read
// deadline in the past, so the conns are not reusable for reading afterwards.
func (s *Server) Serve(ctx context.Context, conn67, conn4011 net.PacketConn) error {
	if conn67 == nil {
		return errors.New("serve dhcp: no port 67 conn")
	}
	s.log.Info("dhcp server started", logkey.Mode, string(s.cfg.Mode), logkey.Addr, conn67.LocalAddr().String(),
		logkey.IP, s.cfg.ServerIP.String())
	var (
		handlers sync.WaitGroup
		slots    = make(chan struct{}, maxInFlight)
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.readLoop(gctx, conn67, false, slots, &handlers) })
	if conn4011 != nil {
		g.Go(func() error { return s.readLoop(gctx, conn4011, true, slots, &handlers) })
	}
	err := g.Wait()
	handlers.Wait()
	s.log.Info("dhcp server stopped")
	return err
}

func (s *Server) readLoop(ctx context.Context, conn net.PacketConn, proxyPort bool, slots chan struct{}, handlers *sync.WaitGroup) error {
	// A deadline in the past wakes the blocked ReadFrom without closing a conn we do not own.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, readBuf)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read dhcp on %s: %w", conn.LocalAddr(), err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("dhcp: malformed packet", logkey.RemoteAddr, peer.String(), logkey.Err, err)
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			s.log.Debug("dhcp: too many requests in flight, dropping one", logkey.RemoteAddr, peer.String())
			continue
		}
		handlers.Go(func() {
			defer func() { <-slots }()
			s.answer(ctx, conn, peer, req, proxyPort)
		})
	}
}

// answer runs Handle for one request and sends the reply, if any.
func (s *Server) answer(ctx context.Context, conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, proxyPort bool) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReplyTimeout)
	defer cancel()
	resp := s.Handle(ctx, req, proxyPort)
	if resp == nil {
		return
	}
	dst := replyAddr(req, resp, peer, proxyPort)
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		s.log.Warn("dhcp: cannot send reply", logkey.Addr, dst.String(), logkey.MAC, req.ClientHWAddr.String(), logkey.Err, err)
	}
}

// replyAddr is where a reply goes (RFC 2131 §4.1). Unicast to a client without an address
// would need an ARP entry we cannot add from a UDP socket, so such clients get a broadcast,
// which every PXE ROM accepts.
func replyAddr(req, resp *dhcpv4.DHCPv4, peer net.Addr, proxyPort bool) *net.UDPAddr {
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	if proxyPort {
		// A boot server request comes from a configured client: answer where it came from.
		if u, ok := peer.(*net.UDPAddr); ok && u.IP.To4() != nil && !u.IP.IsUnspecified() && u.Port != 0 {
			return u
		}
		return bcast
	}
	if gi := ip4OrZero(req.GatewayIPAddr); !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: ServerPort}
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return bcast
	}
	if ci := ip4OrZero(req.ClientIPAddr); !ci.IsUnspecified() {
		return &net.UDPAddr{IP: ci, Port: ClientPort}
	}
	return bcast
}
