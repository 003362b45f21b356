package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/deployme/deployme/api/v1"
)

// TestNetworkTemplateRoundTrip: a template with a bond, a VLAN on it and a bridge over the
// VLAN carrying the host address is stored whole and read back the same from every view.
func TestNetworkTemplateRoundTrip(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := &v1.Network{
		CIDR: "10.40.0.0/24", Gateway: "10.40.0.1", DNS: []string{"10.40.0.2"}, MTU: 9000, Interface: "br-k8s",
		Bonds:   []v1.NetworkBond{{Name: "bond0", Mode: "802.3ad", Interfaces: []string{"eth0", "eth1"}}},
		VLANs:   []v1.NetworkVLAN{{Name: "bond0.100", Link: "bond0", ID: 100}},
		Bridges: []v1.NetworkBridge{{Name: "br-k8s", Interfaces: []string{"bond0.100"}}},
	}
	in, err := c.Client().CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("lacp-site"), Kind: ptr(v1.PhaseOnPremise), Network: want})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, in.Network); diff != "" {
		t.Errorf("created network (-want +got):\n%s", diff)
	}
	got, err := c.Client().GetInfra(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Network); diff != "" {
		t.Errorf("stored network (-want +got):\n%s", diff)
	}
}
