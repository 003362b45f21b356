package netnstest_test

import (
	"io"
	"testing"

	"github.com/deployme/deployme/internal/netnstest"
	"github.com/deployme/deployme/internal/nlretry"
)

// TestTwoHostsOnABridge: two namespaces plugged into a bridge in a third reach each other by
// TCP, from sockets the test opened inside them.
func TestTwoHostsOnABridge(t *testing.T) {
	sw, a, b := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Bridge(t, sw, "br0")
	netnstest.Plug(t, sw, "br0", a, "eth0", "10.99.0.1/24")
	netnstest.Plug(t, sw, "br0", b, "eth0", "10.99.0.2/24")
	ln, err := a.Listen("tcp", "10.99.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("hello from a"))
		c.Close()
	}()
	c, err := b.Dial("tcp", "10.99.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello from a" {
		t.Fatalf("read %q, %v", got, err)
	}
	links, err := nlretry.Dump(a.Handle().LinkList)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range links {
		names[l.Attrs().Name] = true
	}
	if !names["eth0"] || !names["lo"] || len(names) != 2 {
		t.Errorf("links in a = %v, want lo and eth0 only", names)
	}
}
