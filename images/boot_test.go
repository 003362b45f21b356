package images

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/deployme/deployme/internal/netnstest"
)

// Addresses of the test's network: the host side of the tap (DHCP server and the
// "coordinator") and what the guest is leased.
var (
	hostIP  = net.IPv4(10, 77, 0, 1)
	guestIP = net.IPv4(10, 77, 0, 50)
)

const (
	guestMAC  = "52:54:00:12:34:56"
	leaseTime = 20 // seconds: short, so that the test sees init renew at T1 (10 s)
	bootLimit = 4 * time.Minute
)

// TestInitBootsAndStartsAgent boots the built kernel and initrd in QEMU (TCG) on a tap
// device in a network namespace of its own, serves DHCP there, and follows the console:
// modules loaded, address leased, agent started; then the agent dials the coordinator
// address and init renews its lease.
func TestInitBootsAndStartsAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under emulation (about a minute); skipped with -short")
	}
	netnstest.Require(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64 (apt-get install qemu-system-x86); .ci/run installs it")
	}
	dir := sharedImage(t)

	ns := netnstest.New(t)
	ns.MustIP(t, "tuntap", "add", "dev", "tap0", "mode", "tap")
	ns.MustIP(t, "addr", "add", "10.77.0.1/24", "dev", "tap0")
	ns.MustIP(t, "link", "set", "tap0", "up")

	dhcpSeen := make(chan *dhcpv4.DHCPv4, 64)
	var srv *server4.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = server4.NewServer("tap0", &net.UDPAddr{Port: dhcpv4.ServerPort}, dhcpHandler(dhcpSeen))
		return err
	}); err != nil {
		t.Fatalf("dhcp server: %v", err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })

	// The coordinator's gRPC port: accepting a connection proves the agent dialled it.
	ln, err := ns.Listen("tcp", "10.77.0.1:9090")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dialled := make(chan struct{})
	go func() {
		var once sync.Once
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			once.Do(func() { close(dialled) })
			c.Close()
		}
	}()

	cmdline := strings.Join([]string{"console=ttyS0", "quiet", "loglevel=3", "panic=-1",
		"deployme.coordinator=10.77.0.1:9090", "deployme.join_token=test-token",
		"deployme.ca_hash=sha256:" + strings.Repeat("00", 32),
		"BOOTIF=01-" + strings.ReplaceAll(guestMAC, ":", "-")}, " ")
	// -cpu max gives the guest RDRAND; the virtio RNG is there for the module that uses it.
	qemu := ns.Command("qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot",
		"-kernel", filepath.Join(dir, Vmlinuz), "-initrd", filepath.Join(dir, Initrd), "-append", cmdline,
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+guestMAC, "-device", "virtio-rng-pci")
	con := newConsole()
	qemu.Stdout, qemu.Stderr = con, con
	start := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	exited := make(chan struct{})
	go func() { qemu.Wait(); close(exited) }()
	t.Cleanup(func() {
		// `ip netns exec` execs QEMU, so this PID is QEMU's.
		qemu.Process.Kill()
		<-exited
	})
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", tail(con.String(), 12000))
		}
	}()
	deadline := time.Now().Add(bootLimit)

	for _, marker := range []string{
		"deployme-init: modules loaded",
		"deployme-init: dhcp 10.77.0.50/24 via eth0",
		"deployme-init: hostname vm-50",
		"deployme-init: starting agent",
	} {
		if err := con.waitFor(marker, deadline, exited); err != nil {
			t.Fatal(err)
		}
	}
	booted := time.Since(start)
	t.Logf("boot time (QEMU start to \"starting agent\", TCG): %s", booted.Round(10*time.Millisecond))

	select {
	case <-dialled:
		t.Logf("agent dialled 10.77.0.1:9090 %s after QEMU start", time.Since(start).Round(10*time.Millisecond))
	case <-exited:
		t.Fatal("QEMU exited before the agent dialled the coordinator")
	case <-time.After(time.Until(deadline)):
		t.Fatal("the agent never dialled 10.77.0.1:9090")
	}

	// The first DISCOVER says who is asking; a REQUEST from the leased address is a renewal.
	var sawClass, renewed bool
	for !renewed {
		select {
		case m := <-dhcpSeen:
			if m.MessageType() == dhcpv4.MessageTypeDiscover && m.ClassIdentifier() == "deployme-netboot" {
				sawClass = true
			}
			renewed = m.MessageType() == dhcpv4.MessageTypeRequest && m.ClientIPAddr.Equal(guestIP)
		case <-exited:
			t.Fatal("QEMU exited before init renewed its lease")
		case <-time.After(time.Until(deadline)):
			t.Fatal("init never renewed its DHCP lease")
		}
	}
	if !sawClass {
		t.Error("no DISCOVER with vendor class deployme-netboot")
	}
	for _, bad := range []string{"deployme-init: fatal", "Kernel panic", "agent exited"} {
		if strings.Contains(con.String(), bad) {
			t.Errorf("console shows %q", bad)
		}
	}
	if !t.Failed() {
		t.Logf("console (init and agent lines):\n%s", grepLines(con.String(), "deployme-init:", "level="))
	}
}

// dhcpHandler leases guestIP to any client, with hostIP as router and DNS server. It never
// touches the test's T: its goroutines may outlive the test. A reply that cannot be built
// or sent shows as a missing console marker.
func dhcpHandler(seen chan<- *dhcpv4.DHCPv4) server4.Handler {
	return func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		select {
		case seen <- m:
		default:
		}
		var reply dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			reply = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			reply = dhcpv4.MessageTypeAck
		default:
			return
		}
		resp, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(reply), dhcpv4.WithYourIP(guestIP),
			dhcpv4.WithServerIP(hostIP), dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(hostIP),
			dhcpv4.WithDNS(hostIP), dhcpv4.WithLeaseTime(leaseTime),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(hostIP)), dhcpv4.WithOption(dhcpv4.OptHostName("vm-50")))
		if err != nil {
			return
		}
		conn.WriteTo(resp.ToBytes(), peer)
	}
}

// console collects QEMU's output and wakes waiters on every write.
type console struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

func newConsole() *console { return &console{more: make(chan struct{}, 1)} }

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

var _ io.Writer = (*console)(nil)

// waitFor returns once the console shows s.
func (c *console) waitFor(s string, deadline time.Time, exited <-chan struct{}) error {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for !strings.Contains(c.String(), s) {
		select {
		case <-c.more:
		case <-exited:
			if strings.Contains(c.String(), s) {
				return nil
			}
			return fmt.Errorf("QEMU exited before the console showed %q", s)
		case <-timer.C:
			return fmt.Errorf("the console did not show %q within %s", s, bootLimit)
		}
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// grepLines keeps the lines that contain any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out = append(out, strings.TrimRight(line, "\r"))
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
