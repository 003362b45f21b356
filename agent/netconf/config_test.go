package netconf

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// validConfig is the acceptance test's config: a bond, a VLAN on it, a bridge on the VLAN.
func validConfig() Config {
	return Config{
		Bonds:   []Bond{{Name: "bond0", Mode: ModeActiveBackup, Interfaces: []string{"eth1", "eth2"}, MTU: 9000}},
		VLANs:   []VLAN{{Name: "bond0.100", Link: "bond0", ID: 100}},
		Bridges: []Bridge{{Name: "br-k8s", Interfaces: []string{"bond0.100"}}},
		Links:   []Link{{Name: "eth0", MTU: 1400}},
		Addresses: []Address{
			{Link: "br-k8s", CIDR: "10.20.0.5/24"},
			{Link: "br-k8s", CIDR: "fd00:20::5/64"},
		},
		Routes: []Route{
			{Dst: "10.99.0.0/16", Gateway: "10.20.0.1"},
			{Dst: "default", Gateway: "fd00:20::1", Link: "br-k8s"},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		fields []string // every FieldError's field, in order; none for a valid config
	}{
		{name: "valid", change: func(*Config) {}},
		{name: "empty", change: func(c *Config) { *c = Config{} }},
		{name: "802.3ad", change: func(c *Config) { c.Bonds[0].Mode = Mode8023AD }},
		{name: "bad mode", change: func(c *Config) { c.Bonds[0].Mode = "balance-rr" }, fields: []string{"bonds[0].mode"}},
		{name: "bond without members", change: func(c *Config) { c.Bonds[0].Interfaces = nil }, fields: []string{"bonds[0].interfaces"}},
		{name: "vlan id 0", change: func(c *Config) { c.VLANs[0].ID = 0 }, fields: []string{"vlans[0].id"}},
		{name: "vlan id 4095", change: func(c *Config) { c.VLANs[0].ID = 4095 }, fields: []string{"vlans[0].id"}},
		{name: "vlan without parent", change: func(c *Config) { c.VLANs[0].Link = "" }, fields: []string{"vlans[0].link"}},
		{name: "vlan on itself", change: func(c *Config) { c.VLANs[0].Link = "bond0.100" }, fields: []string{"vlans[0].link"}},
		{
			name: "vlan loop",
			change: func(c *Config) {
				c.VLANs = []VLAN{{Name: "a", Link: "b", ID: 1}, {Name: "b", Link: "a", ID: 2}}
				c.Bridges = nil
				c.Addresses, c.Routes = nil, nil
			},
			fields: []string{"vlans[1].link"},
		},
		{name: "name too long", change: func(c *Config) { c.Bonds[0].Name = "bond0123456789ab" }, fields: []string{"bonds[0].name"}},
		{name: "name with slash", change: func(c *Config) { c.Bridges[0].Name = "br/k8s" }, fields: []string{"bridges[0].name"}},
		{name: "name dot dot", change: func(c *Config) { c.Links[0].Name = ".." }, fields: []string{"links[0].name"}},
		{name: "name with space", change: func(c *Config) { c.Bonds[0].Interfaces[1] = "eth 2" }, fields: []string{"bonds[0].interfaces[1]"}},
		{name: "duplicate link", change: func(c *Config) { c.Bridges[0].Name = "bond0" }, fields: []string{"bridges[0].name"}},
		{
			name:   "enslaved twice",
			change: func(c *Config) { c.Bridges[0].Interfaces = append(c.Bridges[0].Interfaces, "eth2") },
			fields: []string{"bridges[0].interfaces[1]"},
		},
		{name: "bond of a bridge", change: func(c *Config) { c.Bonds[0].Interfaces[0] = "br-k8s" }, fields: []string{"bonds[0].interfaces[0]"}},
		{name: "bridge in itself", change: func(c *Config) { c.Bridges[0].Interfaces[0] = "br-k8s" }, fields: []string{"bridges[0].interfaces[0]"}},
		{name: "mtu too small", change: func(c *Config) { c.Bonds[0].MTU = 67 }, fields: []string{"bonds[0].mtu"}},
		{name: "mtu too big", change: func(c *Config) { c.VLANs[0].MTU = 65536 }, fields: []string{"vlans[0].mtu"}},
		{name: "mtu negative", change: func(c *Config) { c.Links[0].MTU = -1 }, fields: []string{"links[0].mtu"}},
		{name: "link mtu differs from bond's", change: func(c *Config) { c.Links[0] = Link{Name: "bond0", MTU: 1500} }, fields: []string{"links[0].mtu"}},
		{name: "mtu of a bond member", change: func(c *Config) { c.Links[0] = Link{Name: "eth1", MTU: 1500} }, fields: []string{"links[0].mtu"}},
		{name: "duplicate link entry", change: func(c *Config) { c.Links = append(c.Links, Link{Name: "eth0"}) }, fields: []string{"links[1].name"}},
		{name: "address not a cidr", change: func(c *Config) { c.Addresses[0].CIDR = "10.20.0.5" }, fields: []string{"addresses[0].cidr"}},
		{name: "address with zone", change: func(c *Config) { c.Addresses[1].CIDR = "fe80::1%eth0/64" }, fields: []string{"addresses[1].cidr"}},
		{name: "address mapped", change: func(c *Config) { c.Addresses[1].CIDR = "::ffff:10.0.0.1/120" }, fields: []string{"addresses[1].cidr"}},
		{name: "address multicast", change: func(c *Config) { c.Addresses[0].CIDR = "224.0.0.1/4" }, fields: []string{"addresses[0].cidr"}},
		{name: "address without link", change: func(c *Config) { c.Addresses[0].Link = "" }, fields: []string{"addresses[0].link"}},
		{
			name:   "duplicate address",
			change: func(c *Config) { c.Addresses = append(c.Addresses, Address{Link: "br-k8s", CIDR: "10.20.0.5/24"}) },
			fields: []string{"addresses[2].cidr"},
		},
		{name: "route without gateway or link", change: func(c *Config) { c.Routes[0].Gateway = "" }, fields: []string{"routes[0]"}},
		{name: "route dst host bits", change: func(c *Config) { c.Routes[0].Dst = "10.99.1.0/16" }, fields: []string{"routes[0].dst"}},
		{name: "route dst garbage", change: func(c *Config) { c.Routes[0].Dst = "everywhere" }, fields: []string{"routes[0].dst"}},
		{name: "route gateway family", change: func(c *Config) { c.Routes[0].Gateway = "fd00:20::1" }, fields: []string{"routes[0].gateway"}},
		{name: "route gateway garbage", change: func(c *Config) { c.Routes[0].Gateway = "10.20.0" }, fields: []string{"routes[0].gateway"}},
		{name: "link-local gateway needs link", change: func(c *Config) { c.Routes[1] = Route{Dst: "default", Gateway: "fe80::1"} }, fields: []string{"routes[1].link"}},
		{name: "duplicate route", change: func(c *Config) { c.Routes[1] = Route{Dst: "10.99.0.0/16", Link: "br-k8s"} }, fields: []string{"routes[1].dst"}},
		{name: "route bad link", change: func(c *Config) { c.Routes[1].Link = "this-name-is-too-long" }, fields: []string{"routes[1].link"}},
		{
			name: "several problems are all reported",
			change: func(c *Config) {
				c.Bonds[0].Mode = "x"
				c.VLANs[0].ID = -1
				c.Addresses[0].CIDR = "nope"
			},
			fields: []string{"bonds[0].mode", "vlans[0].id", "addresses[0].cidr"},
		},
		{name: "too many", change: func(c *Config) { c.Routes = make([]Route, maxItems+1) }, fields: []string{"routes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			if len(tt.fields) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want an error matching ErrInvalid", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.fields[0] {
				t.Errorf("errors.As found %v, want field %s", fe, tt.fields[0])
			}
			if diff := cmp.Diff(tt.fields, fieldsOf(err)); diff != "" {
				t.Errorf("fields (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

// fieldsOf lists the fields of every FieldError joined in err.
func fieldsOf(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe.Field)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

func TestFieldErrorMessage(t *testing.T) {
	c := validConfig()
	c.Bonds[0].Mode = "rr"
	c.VLANs[0].ID = 5000
	c.Addresses[0].CIDR = "x"
	want := `bonds[0].mode: must be "802.3ad" or "active-backup"` + "\n" +
		"vlans[0].id: must be 1-4094\n" +
		"addresses[0].cidr: not a CIDR"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want\n%s", err, want)
	}
}

func TestConfigJSON(t *testing.T) {
	b, err := json.Marshal(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	// The coordinator writes these names; a rename here breaks the wire format.
	for _, key := range []string{`"bonds"`, `"vlans"`, `"bridges"`, `"links"`, `"addresses"`, `"routes"`,
		`"name"`, `"mode"`, `"interfaces"`, `"mtu"`, `"link"`, `"id"`, `"cidr"`, `"dst"`, `"gateway"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(validConfig(), back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func FuzzConfigValidate(f *testing.F) {
	good, _ := json.Marshal(validConfig())
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"vlans":[{"name":"a","link":"b","id":1},{"name":"b","link":"a","id":2}]}`))
	f.Add([]byte(`{"routes":[{"dst":"default","gateway":"fe80::1"},{"dst":"::/0","link":"x"}]}`))
	f.Add([]byte(`{"addresses":[{"link":"eth0","cidr":"::ffff:1.2.3.4/200"}],"bonds":[{"name":"","interfaces":null}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Config
		if json.Unmarshal(data, &c) != nil {
			return
		}
		err := c.Validate()
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("Validate error %v does not match ErrInvalid", err)
		}
		if err == nil {
			// A config that passes must be one the reconciler can plan without surprises.
			p := newPlan(c)
			if len(p.vlans) != len(c.VLANs) || len(p.addrs) != len(c.Addresses) || len(p.routes) != len(c.Routes) {
				t.Fatalf("plan lost entries: %+v", p)
			}
		}
	})
}
