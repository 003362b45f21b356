package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	macC = net.HardwareAddr{2, 0, 0, 0, 0, 0xc}
)

func TestCarrierReady(t *testing.T) {
	for _, tc := range []struct {
		name   string
		nics   []nic
		bootif net.HardwareAddr
		want   bool
	}{
		{"no NICs", nil, nil, false},
		{"none with carrier", []nic{{MAC: macA}, {MAC: macB}}, nil, false},
		{"any, no BOOTIF", []nic{{MAC: macA}, {MAC: macB, Carrier: true}}, nil, true},
		{"boot NIC has carrier", []nic{{MAC: macA, Carrier: true}, {MAC: macB, Carrier: true}}, macB, true},
		{"waits for the boot NIC", []nic{{MAC: macA, Carrier: true}, {MAC: macB}}, macB, false},
		{"boot NIC not in the image", []nic{{MAC: macA, Carrier: true}}, macC, true},
	} {
		if got := carrierReady(tc.nics, tc.bootif); got != tc.want {
			t.Errorf("%s: carrierReady = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDHCPOrder(t *testing.T) {
	nics := []nic{
		{Name: "eth2", Index: 4, MAC: macC, Carrier: true},
		{Name: "eth0", Index: 2, MAC: macA, Carrier: true},
		{Name: "eth1", Index: 3, MAC: macB, Carrier: true},
		{Name: "eth3", Index: 5, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xd}},
	}
	names := func(ns []nic) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return out
	}
	if diff := cmp.Diff([]string{"eth0", "eth1", "eth2"}, names(dhcpOrder(nics, nil))); diff != "" {
		t.Errorf("no BOOTIF (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"eth2", "eth0", "eth1"}, names(dhcpOrder(nics, macC))); diff != "" {
		t.Errorf("BOOTIF eth2 (-want +got):\n%s", diff)
	}
}

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 77, 0, 50))}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFromACK(t *testing.T) {
	mtu := dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, []byte{0x23, 0x28}) // 9000
	for _, tc := range []struct {
		name string
		ack  *dhcpv4.DHCPv4
		want addressing
	}{
		{
			name: "router, dns, search, hostname, mtu",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 77, 0, 1)),
				dhcpv4.WithDNS(net.IPv4(10, 77, 0, 1), net.IPv4(10, 77, 0, 2)),
				dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"rack.example", "example"}})),
				dhcpv4.WithOption(dhcpv4.OptHostName("vm-50")), dhcpv4.WithOption(mtu),
				dhcpv4.WithLeaseTime(3600)),
			want: addressing{
				Addr:   netip.MustParsePrefix("10.77.0.50/24"),
				Routes: []route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.77.0.1")}},
				DNS:    []netip.Addr{netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")},
				Search: []string{"rack.example", "example"}, MTU: 9000, Hostname: "vm-50",
				Renew: 30 * time.Minute, Expire: time.Hour,
			},
		},
		{
			name: "classless routes win over the router option; T1 from the server",
			ack: ack(t, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 77, 0, 254)),
				dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
					&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4(10, 88, 0, 0).To4(), Mask: net.CIDRMask(16, 32)}, Router: net.IPv4zero},
					&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: net.IPv4(10, 77, 0, 1)},
				)),
				dhcpv4.WithOption(dhcpv4.OptDomainName("example")),
				dhcpv4.WithLeaseTime(100), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(20*time.Second))),
			want: addressing{
				Addr: netip.MustParsePrefix("10.77.0.50/24"),
				Routes: []route{
					{Dst: netip.MustParsePrefix("10.88.0.0/16")},
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.77.0.1")},
				},
				Search: []string{"example"}, Renew: 20 * time.Second, Expire: 100 * time.Second,
			},
		},
		{
			name: "no mask: the class's; no lease time: nothing to renew; bad hostname dropped",
			ack:  ack(t, dhcpv4.WithOption(dhcpv4.OptHostName("not valid"))),
			want: addressing{Addr: netip.MustParsePrefix("10.77.0.50/8")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fromACK(tc.ack)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := fromACK(ack(t, dhcpv4.WithYourIP(net.IPv4zero))); err == nil {
		t.Error("an ACK for 0.0.0.0 was accepted")
	}
}

func TestResolvConf(t *testing.T) {
	got := resolvConf(addressing{DNS: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")},
		Search: []string{"a.example", "example"}})
	want := "# written by deployme-init from the DHCP lease\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch a.example example\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMACHostname(t *testing.T) {
	if got := macHostname(net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}); got != "deployme-525400123456" || !validHostname(got) {
		t.Errorf("macHostname = %q", got)
	}
}

func TestUndrivenNICs(t *testing.T) {
	sys := t.TempDir()
	dev := func(addr, class string, driver bool) {
		d := filepath.Join(sys, "bus", "pci", "devices", addr)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range map[string]string{"class": class + "\n", "vendor": "0x15b3\n", "device": "0x1017\n"} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if driver {
			if err := os.Symlink("../../drivers/x", filepath.Join(d, "driver")); err != nil {
				t.Fatal(err)
			}
		}
	}
	dev("0000:00:03.0", "0x020000", true)  // a NIC with its driver
	dev("0000:03:00.0", "0x020000", false) // a NIC without
	dev("0000:00:1f.2", "0x010601", false) // a SATA controller
	want := []string{"0000:03:00.0 (vendor 0x15b3 device 0x1017)"}
	if diff := cmp.Diff(want, undrivenNICs(sys)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
