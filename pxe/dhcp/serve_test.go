package dhcp

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestReplyAddr(t *testing.T) {
	bcast := "255.255.255.255:68"
	msg := func(mt dhcpv4.MessageType) *dhcpv4.DHCPv4 { return packet(mt) }
	cases := []struct {
		name      string
		req       *dhcpv4.DHCPv4
		resp      *dhcpv4.DHCPv4
		peer      net.Addr
		proxyPort bool
		want      string
	}{
		{"client without address", packet(dhcpv4.MessageTypeDiscover), msg(dhcpv4.MessageTypeOffer),
			&net.UDPAddr{IP: net.IPv4zero, Port: 68}, false, bcast},
		{"relayed", packet(dhcpv4.MessageTypeDiscover, dhcpv4.WithRelay(net.ParseIP("10.9.0.1"))),
			msg(dhcpv4.MessageTypeOffer), &net.UDPAddr{IP: net.ParseIP("10.9.0.1"), Port: 67}, false, "10.9.0.1:67"},
		{"renewing client", packet(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("10.0.0.50"))),
			msg(dhcpv4.MessageTypeAck), &net.UDPAddr{IP: net.ParseIP("10.0.0.50"), Port: 68}, false, "10.0.0.50:68"},
		{"NAK to a renewing client is broadcast", packet(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("10.0.0.50"))),
			msg(dhcpv4.MessageTypeNak), &net.UDPAddr{IP: net.ParseIP("10.0.0.50"), Port: 68}, false, bcast},
		{"relayed NAK goes to the relay", packet(dhcpv4.MessageTypeRequest, dhcpv4.WithRelay(net.ParseIP("10.9.0.1"))),
			msg(dhcpv4.MessageTypeNak), nil, false, "10.9.0.1:67"},
		{"boot server: back to the sender", packet(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("10.0.0.77"))),
			msg(dhcpv4.MessageTypeAck), &net.UDPAddr{IP: net.ParseIP("10.0.0.77"), Port: 4011}, true, "10.0.0.77:4011"},
		{"boot server: sender without address", packet(dhcpv4.MessageTypeRequest),
			msg(dhcpv4.MessageTypeAck), &net.UDPAddr{IP: net.IPv4zero, Port: 68}, true, bcast},
		{"boot server: not UDP", packet(dhcpv4.MessageTypeRequest),
			msg(dhcpv4.MessageTypeAck), &net.IPAddr{IP: net.ParseIP("10.0.0.77")}, true, bcast},
		{"boot server: IPv6 sender", packet(dhcpv4.MessageTypeRequest),
			msg(dhcpv4.MessageTypeAck), &net.UDPAddr{IP: net.ParseIP("fd00::1"), Port: 68}, true, bcast},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := replyAddr(c.req, c.resp, c.peer, c.proxyPort).String(); got != c.want {
				t.Errorf("replyAddr = %s, want %s", got, c.want)
			}
		})
	}
}

// TestServeLoopback runs Serve on loopback sockets: garbage and a non-PXE DISCOVER get no
// answer, a boot server REQUEST gets its ACK (unicast back: nothing is broadcast), and
// cancelling the context ends Serve with nil.
func TestServeLoopback(t *testing.T) {
	be := newFakeBackend()
	s, err := New(testConfig(ModeProxy, be))
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.PacketConn {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	conn67, conn4011, client := listen(), listen(), listen()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn67, conn4011) }()

	send := func(to net.PacketConn, b []byte) {
		t.Helper()
		if _, err := client.WriteTo(b, to.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	send(conn67, []byte("not dhcp"))
	send(conn4011, []byte{1, 1, 6})
	send(conn67, packet(dhcpv4.MessageTypeDiscover, plain...).ToBytes())
	req := packet(dhcpv4.MessageTypeRequest, with(pxeUEFI, dhcpv4.WithClientIP(net.ParseIP("127.0.0.1")))...)
	send(conn4011, req.ToBytes())

	if err := client.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply from the boot server port: %v", err)
	}
	if from.String() != conn4011.LocalAddr().String() {
		t.Errorf("reply from %s, want the boot server port %s", from, conn4011.LocalAddr())
	}
	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" || ack.TransactionID != req.TransactionID {
		t.Errorf("reply %s file %q xid %s, want ACK ipxe.efi xid %s", ack.MessageType(), ack.BootFileName, ack.TransactionID, req.TransactionID)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	// Only the REQUEST was answered; the garbage and the DISCOVER were read before it.
	if diff := cmp.Diff(ev(EventAck, "UEFI ipxe.efi boot-server"), be.Events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// A conn closed under Serve is an error, not a clean stop.
func TestServeReadError(t *testing.T) {
	s, err := New(testConfig(ModeFull, newFakeBackend()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), c, nil) }()
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve returned nil after its conn was closed, want an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its conn was closed")
	}
}

func TestServeNeedsConn67(t *testing.T) {
	s, err := New(testConfig(ModeFull, newFakeBackend()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), nil, nil); err == nil {
		t.Error("Serve(nil conn) = nil, want an error")
	}
}

func TestListenNeedsInterface(t *testing.T) {
	if c, err := Listen("", ServerPort); err == nil {
		c.Close()
		t.Error(`Listen("") = nil error, want one`)
	}
}
