package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"

	"github.com/deployme/deployme/agent/netconf"
	"github.com/deployme/deployme/coordinator/state"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// NetworkConfig is the network host hostID must have, from its infra's template, or nil
// when the template asks for nothing (no links, no address interface). The revision is a
// hash of the JSON, so an agent skips what it already applied.
func (s *Service) NetworkConfig(hostID string) *agentv1.NetworkConfig {
	var out *agentv1.NetworkConfig
	s.store.Read(func(st *state.State) {
		h, ok := st.Host(hostID)
		if !ok {
			return
		}
		var b []byte
		if len(h.NetworkJSON) > 0 {
			// The host's own network replaces the template.
			b = h.NetworkJSON
		} else {
			infra, ok := st.Infra(h.InfraID)
			if !ok || infra.Network == nil {
				return
			}
			cfg, ok := hostNetwork(infra.Network, h)
			if !ok {
				return
			}
			var err error
			if b, err = json.Marshal(cfg); err != nil {
				return
			}
		}
		sum := sha256.Sum256(b)
		out = &agentv1.NetworkConfig{Revision: hex.EncodeToString(sum[:8]), Json: b}
	})
	return out
}

// hostNetwork turns an infra's template into one host's netconf.Config: the template's
// links with its MTU, and, when it names an interface, the host's own address inside the
// template's CIDR on that interface with the default route through the gateway.
func hostNetwork(t *state.Network, h *state.Host) (netconf.Config, bool) {
	var c netconf.Config
	for _, b := range t.Bonds {
		c.Bonds = append(c.Bonds, netconf.Bond{Name: b.Name, Mode: b.Mode, Interfaces: b.Interfaces, MTU: t.MTU})
	}
	for _, v := range t.VLANs {
		c.VLANs = append(c.VLANs, netconf.VLAN{Name: v.Name, Link: v.Link, ID: v.ID, MTU: t.MTU})
	}
	for _, b := range t.Bridges {
		c.Bridges = append(c.Bridges, netconf.Bridge{Name: b.Name, Interfaces: b.Interfaces, MTU: t.MTU})
	}
	if t.Interface != "" {
		if addr := addressIn(h, t.CIDR); addr != "" {
			c.Addresses = append(c.Addresses, netconf.Address{Link: t.Interface, CIDR: addr})
			if t.Gateway != "" {
				c.Routes = append(c.Routes, netconf.Route{Dst: "default", Gateway: t.Gateway, Link: t.Interface})
			}
		}
	}
	if len(c.Bonds)+len(c.VLANs)+len(c.Bridges)+len(c.Addresses) == 0 {
		return c, false
	}
	return c, true
}

// addressIn is the host's address (with its prefix length) inside cidr, or "".
func addressIn(h *state.Host, cidr string) string {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return ""
	}
	for _, nic := range h.NICs {
		for _, a := range nic.Addresses {
			if ap, err := netip.ParsePrefix(a); err == nil && p.Masked().Contains(ap.Addr()) {
				return netip.PrefixFrom(ap.Addr(), p.Bits()).String()
			}
		}
	}
	return ""
}

// SetHostNetwork gives a host its own network (replacing its infra's template for it), after
// checking it as the agent will; nil clears it.
func (s *Service) SetHostNetwork(ctx context.Context, id string, n *v1.HostNetwork) (*v1.Host, error) {
	var b []byte
	if n != nil {
		raw, err := json.Marshal(n)
		if err != nil {
			return nil, err
		}
		// The wire type and agent/netconf's Config share their JSON; decoding strictly
		// catches any drift between the two.
		var cfg netconf.Config
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, v1.InvalidField("network", "network: %v", err)
		}
		if err := cfg.Validate(); err != nil {
			var fe *netconf.FieldError
			if errors.As(err, &fe) {
				return nil, v1.InvalidField("network."+fe.Field, "network.%s: %s", fe.Field, fe.Msg)
			}
			return nil, v1.InvalidField("network", "network: %v", err)
		}
		if b, err = json.Marshal(cfg); err != nil {
			return nil, err
		}
	}
	a, err := s.apply(ctx, command.TypeSetHostNetwork, &raftcmdv1.SetHostNetwork{HostId: id, ConfigJson: b, At: unixNano(s.now())}, id)
	if err != nil {
		return nil, err
	}
	if h, ok := a.Value.(*state.Host); ok && h.ID == a.ID {
		out := hostOut(h)
		return &out, nil
	}
	return written(s.localHost(a.ID))
}
