// Package netnstest gives tests network namespaces of their own: created with `ip netns add`,
// removed (with every link inside) when the test ends, and usable from Go without moving the
// test's goroutines: netlink handles bound to the namespace, and sockets opened inside it
// (a socket stays in the namespace it was created in, whatever thread uses it later).
//
// Tests that use it need root and iproute2; Require skips with a message otherwise. Traffic
// stays inside the namespaces the test created.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Require skips the test unless it runs as root with `ip` (iproute2) installed.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test builds its network in namespaces of its own (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs `ip` (iproute2) for network namespaces")
	}
}

// NS is one network namespace owned by a test.
type NS struct {
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

// New creates a namespace with lo up; it is deleted when the test ends. It skips the test
// when the machine cannot create one.
func New(t testing.TB) *NS {
	t.Helper()
	Require(t)
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	name := "dmtest-" + hex.EncodeToString(suffix[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	ns := &NS{Name: name}
	t.Cleanup(func() {
		if ns.nl != nil {
			ns.nl.Close()
		}
		if ns.handle.IsOpen() {
			ns.handle.Close()
		}
		// Deleting the namespace deletes every interface inside it (and a veth's peer).
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	ns.handle = h
	// Routing only: asking for every netlink family also wants xfrm, whose module a
	// minimal guest kernel (internal/vmtest) does not load.
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	ns.nl = nl
	ns.MustIP(t, "link", "set", "lo", "up")
	return ns
}

// Handle is a netlink handle whose requests act inside the namespace.
func (n *NS) Handle() *netlink.Handle { return n.nl }

// NsHandle is the namespace's file handle (for netlink.NewHandleAt and the like).
func (n *NS) NsHandle() netns.NsHandle { return n.handle }

// IP runs `ip -n <ns> args...`.
func (n *NS) IP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// MustIP is IP that fails the test on error.
func (n *NS) MustIP(t testing.TB, args ...string) {
	t.Helper()
	if err := n.IP(args...); err != nil {
		t.Fatal(err)
	}
}

// Command is a command that runs inside the namespace (`ip netns exec`).
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread that is inside the namespace. Sockets fn opens stay in the
// namespace after Do returns. fn must not start goroutines that expect to be inside it.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	// A fresh goroutine whose thread is thrown away if it cannot be moved back: a thread
	// left in the wrong namespace must never run other goroutines.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a listener inside the namespace.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Dial connects from inside the namespace.
func (n *NS) Dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = net.Dial(network, addr)
		return err
	})
	return c, err
}

// Veth creates a veth pair with one end (aName) in a and the other (bName) in b, both up.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	a.MustIP(t, "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name)
	a.MustIP(t, "link", "set", aName, "up")
	b.MustIP(t, "link", "set", bName, "up")
}

// Bridge creates a bridge named name in ns, up.
func Bridge(t testing.TB, ns *NS, name string) {
	t.Helper()
	ns.MustIP(t, "link", "add", name, "type", "bridge")
	ns.MustIP(t, "link", "set", name, "up")
}

// Plug connects host to the bridge br living in sw: a veth pair whose hostIf end is in host
// (up, with cidr if not empty) and whose other end is a port of br.
func Plug(t testing.TB, sw *NS, br string, host *NS, hostIf, cidr string) {
	t.Helper()
	var suffix [3]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	port := "p" + hex.EncodeToString(suffix[:])
	Veth(t, sw, port, host, hostIf)
	sw.MustIP(t, "link", "set", port, "master", br)
	if cidr != "" {
		host.MustIP(t, "addr", "add", cidr, "dev", hostIf)
	}
}
