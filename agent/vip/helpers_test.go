//go:build linux

package vip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"

	"github.com/deployme/deployme/internal/netnstest"
	"github.com/deployme/deployme/internal/nlretry"
	"github.com/deployme/deployme/internal/poll"
)

var testVIP = netip.MustParsePrefix("10.50.0.100/24")

// testConfig is DefaultConfig with the short intervals of a test.
func testConfig(t *testing.T, ns *netnstest.NS, r *readyz, rec *recorder) Config {
	cfg := DefaultConfig()
	cfg.Handle = ns.Handle()
	cfg.Do = ns.Do
	cfg.Readyz = r.check
	cfg.CheckInterval = 20 * time.Millisecond
	cfg.GARPInterval = 20 * time.Millisecond
	cfg.Report = rec.report
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg
}

// running is a Manager whose Run goroutine the test owns.
type running struct {
	*Manager
	rec  *recorder
	stop func() error
}

// start runs a Manager made from cfg until stop is called or the test ends.
func start(t *testing.T, cfg Config, rec *recorder) *running {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("Run did not return 10 s after its context ended")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &running{Manager: m, rec: rec, stop: stop}
}

// readyz is a readiness check the test turns on and off.
type readyz struct {
	ok       atomic.Bool
	calls    atomic.Int64
	failures atomic.Int64
}

func newReadyz(ok bool) *readyz {
	r := &readyz{}
	r.ok.Store(ok)
	return r
}

func (r *readyz) check(ctx context.Context) error {
	r.calls.Add(1)
	if r.ok.Load() {
		return nil
	}
	r.failures.Add(1)
	return errors.New("connection refused")
}

// recorder keeps every Status a Manager reports, with the time it arrived.
type recorder struct {
	mu  sync.Mutex
	all []recorded
	// onReport, if set before the Manager starts, sees each Status as it arrives.
	onReport func(Status)
}

type recorded struct {
	at time.Time
	st Status
}

func (r *recorder) report(st Status) {
	r.mu.Lock()
	r.all = append(r.all, recorded{time.Now(), st})
	r.mu.Unlock()
	if r.onReport != nil {
		r.onReport(st)
	}
}

// last is the latest Status of cluster id.
func (r *recorder) last(id string) (Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.all) - 1; i >= 0; i-- {
		if r.all[i].st.ClusterID == id {
			return r.all[i].st, true
		}
	}
	return Status{}, false
}

func (r *recorder) history(id string) []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Status
	for _, x := range r.all {
		if x.st.ClusterID == id {
			out = append(out, x.st)
		}
	}
	return out
}

// waitLast waits until the latest Status of cluster id satisfies cond, and returns it.
func (r *recorder) waitLast(t *testing.T, id, what string, cond func(Status) bool) Status {
	t.Helper()
	var st Status
	eventually(t, what, func() bool {
		var ok bool
		st, ok = r.last(id)
		return ok && cond(st)
	})
	return st
}

// eventually polls cond for a generous while; nothing here depends on the machine's speed
// beyond it.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Until(ctx, 2*time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// newLAN returns the namespace of a switch: a bridge br0 every host plugs into.
func newLAN(t *testing.T) *netnstest.NS {
	sw := netnstest.New(t)
	netnstest.Bridge(t, sw, "br0")
	return sw
}

// host is a namespace with eth0 plugged into the switch, with address cidr.
func host(t *testing.T, sw *netnstest.NS, cidr string) *netnstest.NS {
	ns := netnstest.New(t)
	netnstest.Plug(t, sw, "br0", ns, "eth0", cidr)
	return ns
}

func macOf(t *testing.T, ns *netnstest.NS) net.HardwareAddr {
	t.Helper()
	l, err := ns.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// addrsOf lists the addresses equal to ip in ns, any family, any link.
func addrsOf(t *testing.T, ns *netnstest.NS, ip netip.Addr) []netlink.Addr {
	t.Helper()
	all, err := nlretry.Dump(func() ([]netlink.Addr, error) { return ns.Handle().AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Addr
	for _, a := range all {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			out = append(out, a)
		}
	}
	return out
}

// addrStrings lists every address of ns except ip, as "link address label", for
// comparisons.
func addrStrings(t *testing.T, ns *netnstest.NS, except netip.Addr) []string {
	t.Helper()
	all, err := nlretry.Dump(func() ([]netlink.Addr, error) { return ns.Handle().AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range all {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == except {
			continue
		}
		out = append(out, a.IPNet.String()+" "+a.Label)
	}
	return out
}

// serve answers every TCP connection to ns's port 6443 with name, standing in for the API
// server of that host.
func serve(t *testing.T, ns *netnstest.NS, name string) {
	t.Helper()
	ln, err := ns.Listen("tcp", "0.0.0.0:6443")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
}

// whoAnswers connects from ns to addr and returns what the server there says.
func whoAnswers(ns *netnstest.NS, addr string) (string, error) {
	var got []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	return string(got), err
}

// observer records every ARP packet eth0 of its namespace sees, and sends requests.
type observer struct {
	c    *arp.Client
	mac  net.HardwareAddr
	done chan struct{}

	mu   sync.Mutex
	seen []seenARP
}

type seenARP struct {
	at  time.Time
	dst net.HardwareAddr // Ethernet destination
	p   arp.Packet
}

func newObserver(t *testing.T, ns *netnstest.NS) *observer {
	t.Helper()
	o := &observer{done: make(chan struct{})}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		o.mac = ifi.HardwareAddr
		o.c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		t.Fatalf("observer: %v", err)
	}
	go func() {
		defer close(o.done)
		for {
			p, f, err := o.c.Read()
			if err != nil {
				return // closed
			}
			o.mu.Lock()
			o.seen = append(o.seen, seenARP{at: time.Now(), dst: f.Destination, p: *p})
			o.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		o.c.Close()
		<-o.done
	})
	return o
}

func (o *observer) filter(keep func(seenARP) bool) []seenARP {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []seenARP
	for _, s := range o.seen {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// garps are the gratuitous ARPs for vip sent from mac.
func (o *observer) garps(vip netip.Addr, mac net.HardwareAddr) []seenARP {
	return o.filter(func(s seenARP) bool {
		return s.p.SenderIP == vip && s.p.TargetIP == vip && s.p.SenderHardwareAddr.String() == mac.String()
	})
}

// request asks who has target, from sender (an address the replies go back to).
func (o *observer) request(sender, target netip.Addr) error {
	p, err := arp.NewPacket(arp.OperationRequest, o.mac, sender, make(net.HardwareAddr, 6), target)
	if err != nil {
		return err
	}
	return o.c.WriteTo(p, ethernet.Broadcast)
}

// replies are the answers for target sent to us, addressed to sender.
func (o *observer) replies(target, sender netip.Addr) []seenARP {
	return o.filter(func(s seenARP) bool {
		return s.p.Operation == arp.OperationReply && s.p.SenderIP == target &&
			s.p.TargetIP == sender && s.p.TargetHardwareAddr.String() == o.mac.String()
	})
}
