package main

import (
	"errors"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitCmdline(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  console=ttyS0   quiet\n", []string{"console=ttyS0", "quiet"}},
		{`a="b c" d`, []string{"a=b c", "d"}},
		{`"a=b c" d`, []string{"a=b c", "d"}},
		{`a="" b`, []string{"a=", "b"}},
		{"a\tb", []string{"a", "b"}},
	} {
		if diff := cmp.Diff(tc.want, splitCmdline(tc.in)); diff != "" {
			t.Errorf("splitCmdline(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	for _, tc := range []struct {
		name    string
		in      string
		want    bootConfig
		wantErr error
	}{
		{
			name: "everything",
			in: "BOOT_IMAGE=vmlinuz console=ttyS0 deployme.coordinator=10.0.0.1:9090,[fd00::1]:9090 " +
				"deployme.join_token=tok deployme.ca_hash=sha256:ab deployme.hostname=node-1 " +
				`deployme.labels="rack=r1,zone=a" BOOTIF=01-52-54-00-12-34-56 deployme.debug quiet`,
			want: bootConfig{
				Coordinators: []string{"10.0.0.1:9090", "[fd00::1]:9090"},
				JoinToken:    "tok", CAHash: "sha256:ab", Hostname: "node-1", Labels: "rack=r1,zone=a",
				BootIF: mac, Debug: true,
			},
		},
		{
			name: "dashes, the last one wins, a space ends a value",
			in:   "deployme.coordinator=a:1 deployme.join-token=x deployme.coordinator=b:2,\tc:3 deployme.debug=off",
			want: bootConfig{Coordinators: []string{"b:2"}, JoinToken: "x"},
		},
		{
			name: "warnings",
			in: "deployme.coordinator=a:1 deployme.hostname=-bad deployme.initrd_sha256=00 deployme.debug=maybe " +
				"deployme.bogus=1 BOOTIF=06-52-54-00-12-34-56",
			want: bootConfig{Coordinators: []string{"a:1"}, Debug: true, Warnings: []string{
				"deployme.initrd_sha256 is ignored: this kernel cannot give the initrd back to check it",
				"deployme.debug=maybe is not a boolean; debug is on",
				"unknown parameter deployme.bogus ignored",
				"BOOTIF=06-52-54-00-12-34-56 ignored: hardware type 06 is not Ethernet",
				"deployme.hostname=-bad is not a valid host name; ignored",
			}},
		},
		{name: "plain MAC in BOOTIF", in: "deployme.coordinator=a:1 BOOTIF=52:54:00:12:34:56",
			want: bootConfig{Coordinators: []string{"a:1"}, BootIF: mac}},
		{name: "no coordinator", in: "console=ttyS0 deployme.coordinator=", wantErr: errNoCoordinator},
		{name: "no coordinator at all", in: "console=ttyS0", wantErr: errNoCoordinator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCmdline(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseCoordinatorsRejects(t *testing.T) {
	for _, in := range []string{"host", "host:", ":9090", "host:0", "host:65536", "host:http", "a:1,b"} {
		if got, err := parseCoordinators(in); err == nil {
			t.Errorf("parseCoordinators(%q) = %v, want an error", in, got)
		}
	}
}

func TestValidHostname(t *testing.T) {
	for in, want := range map[string]bool{
		"node-1": true, "node-1.rack.example": true, "N1": true,
		"": false, "-a": false, "a-": false, "a..b": false, "a_b": false, "a b": false,
		"a234567890123456789012345678901234567890123456789012345678901234": false, // 64-byte label
	} {
		if got := validHostname(in); got != want {
			t.Errorf("validHostname(%q) = %v, want %v", in, got, want)
		}
	}
}
