package inventory

import "testing"

func TestChurningLinksAreLeftOut(t *testing.T) {
	tests := []struct {
		link Link
		want bool
	}{
		{Link{Name: "eth0", Type: "device"}, false},
		{Link{Name: "bond0", Type: "bond"}, false},
		{Link{Name: "eth0.100", Type: "vlan"}, false},
		{Link{Name: "br0", Type: "bridge"}, false}, // an operator's bridge says something about the host
		{Link{Name: "vethab12cd", Type: "veth"}, true},
		{Link{Name: "vethab12cd", Type: "veth", Addresses: []string{"fe80::1/64"}}, true},             // a pod's, host side
		{Link{Name: "eth0", Type: "veth", Addresses: []string{"10.60.0.11/24", "fe80::1/64"}}, false}, // a namespace host's uplink
		{Link{Name: "flannel.1", Type: "vxlan"}, true},
		{Link{Name: "cni0", Type: "bridge"}, true},
		{Link{Name: "docker0", Type: "bridge"}, true},
		{Link{Name: "kube-ipvs0", Type: "dummy"}, true},
		{Link{Name: "tunl0", Type: "ipip"}, true},
	}
	for _, tc := range tests {
		if got := churning(tc.link); got != tc.want {
			t.Errorf("churning(%s %s) = %v, want %v", tc.link.Type, tc.link.Name, got, tc.want)
		}
	}
}
