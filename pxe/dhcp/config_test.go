package dhcp

import (
	"net/netip"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config { return testConfig(ModeProxy, newFakeBackend()) }
	cases := []struct {
		name    string
		change  func(*Config)
		wantErr bool
	}{
		{"default plus address, URL and backend", func(*Config) {}, false},
		{"full mode", func(c *Config) { c.Mode = ModeFull }, false},
		{"mode empty", func(c *Config) { c.Mode = "" }, true},
		{"mode off is the caller's business", func(c *Config) { c.Mode = "off" }, true},
		{"mode in capitals", func(c *Config) { c.Mode = "PROXY" }, true},
		{"server IP unset", func(c *Config) { c.ServerIP = netip.Addr{} }, true},
		{"server IP v6", func(c *Config) { c.ServerIP = netip.MustParseAddr("fd00::1") }, true},
		{"server IP v4-mapped v6", func(c *Config) { c.ServerIP = netip.MustParseAddr("::ffff:10.0.0.1") }, true},
		{"server IP unspecified", func(c *Config) { c.ServerIP = netip.IPv4Unspecified() }, true},
		{"server IP broadcast", func(c *Config) { c.ServerIP = netip.MustParseAddr("255.255.255.255") }, true},
		{"server IP multicast", func(c *Config) { c.ServerIP = netip.MustParseAddr("224.0.0.1") }, true},
		{"HTTP base empty", func(c *Config) { c.HTTPBase = "" }, true},
		{"HTTP base without scheme", func(c *Config) { c.HTTPBase = "10.0.0.1:8080" }, true},
		{"HTTP base ftp", func(c *Config) { c.HTTPBase = "ftp://10.0.0.1" }, true},
		{"HTTP base without host", func(c *Config) { c.HTTPBase = "http://" }, true},
		{"HTTP base with query", func(c *Config) { c.HTTPBase = "http://10.0.0.1/?a=b" }, true},
		{"HTTP base with fragment", func(c *Config) { c.HTTPBase = "http://10.0.0.1/#x" }, true},
		{"HTTP base with user", func(c *Config) { c.HTTPBase = "http://u:p@10.0.0.1" }, true},
		{"HTTP base unparsable", func(c *Config) { c.HTTPBase = "http://10.0.0.1:80%zz" }, true},
		{"HTTP base too long for the file field", func(c *Config) { c.HTTPBase = "http://" + strings.Repeat("a", 90) }, true},
		{"HTTP base https with a path", func(c *Config) { c.HTTPBase = "https://boot.example.com/pxe" }, false},
		{"BIOS file empty", func(c *Config) { c.BIOSFile = "" }, true},
		{"UEFI file empty", func(c *Config) { c.UEFIFile = "" }, true},
		{"UEFI file snponly", func(c *Config) { c.UEFIFile = "snponly.efi" }, false},
		{"UEFI file in a directory", func(c *Config) { c.UEFIFile = "x86_64/ipxe.efi" }, false},
		{"BIOS file too long", func(c *Config) { c.BIOSFile = strings.Repeat("a", 128) }, true},
		{"BIOS file longest", func(c *Config) { c.BIOSFile = strings.Repeat("a", 127) }, false},
		{"UEFI file with NUL", func(c *Config) { c.UEFIFile = "ipxe\x00.efi" }, true},
		{"no backend", func(c *Config) { c.Backend = nil }, true},
		{"reply timeout zero", func(c *Config) { c.ReplyTimeout = 0 }, true},
		{"reply timeout negative", func(c *Config) { c.ReplyTimeout = -1 }, true},
		{"no logger is fine", func(c *Config) { c.Logger = nil }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := valid()
			c.change(&cfg)
			err := cfg.Validate()
			if (err != nil) != c.wantErr {
				t.Errorf("Validate() = %v, want error: %v", err, c.wantErr)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.Mode != ModeProxy || c.BIOSFile != "undionly.kpxe" || c.UEFIFile != "ipxe.efi" {
		t.Errorf("DefaultConfig() = %+v, want proxy mode with undionly.kpxe and ipxe.efi", c)
	}
	if c.Validate() == nil {
		t.Error("DefaultConfig() validates without a server IP, URL and backend")
	}
}
