package service

import (
	"encoding/json"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/state"
)

// apiTime is how times leave the API: UTC, whole seconds (RFC 3339 as in the seed).
func apiTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

func clusterOut(st *state.State, c *state.Cluster) v1.Cluster {
	joined := st.JoinedCount(c.ID)
	return v1.Cluster{
		ID:                c.ID,
		Name:              c.Name,
		Status:            c.Status,
		StatusReason:      c.StatusReason,
		Phase:             c.Phase,
		ControlPlanes:     c.ControlPlanes,
		Workers:           c.Workers,
		NodeSize:          c.NodeSize,
		NodeCount:         joined,
		Endpoint:          c.Endpoint,
		KubernetesVersion: c.KubernetesVersion,
		InfraID:           c.InfraID,
		CreatedAt:         apiTime(c.CreatedAt),
		UpdatedAt:         apiTime(c.UpdatedAt),
	}
}

func tokenOut(t *state.Token) v1.Token {
	out := v1.Token{
		ID:          t.ID,
		Name:        t.Name,
		Permissions: append([]string(nil), t.Permissions...),
		Scope:       t.Scope,
		Plan:        t.Plan,
		CreatedAt:   apiTime(t.CreatedAt),
	}
	if t.ExpiresAt != nil {
		e := apiTime(*t.ExpiresAt)
		out.ExpiresAt = &e
	}
	return out
}

func infraOut(i *state.Infra) v1.Infra {
	out := v1.Infra{ID: i.ID, Name: i.Name, Kind: i.Kind, VIPPool: i.VIPPool, CreatedAt: apiTime(i.CreatedAt)}
	if a := i.AutoAccept; a != nil {
		out.AutoAccept = &v1.AutoAccept{MACPrefixes: a.MACPrefixes, Serials: a.Serials, Labels: a.Labels}
	}
	if n := i.Network; n != nil {
		out.Network = &v1.Network{CIDR: n.CIDR, Gateway: n.Gateway, DNS: append([]string(nil), n.DNS...), MTU: n.MTU, Interface: n.Interface}
		for _, b := range n.Bonds {
			out.Network.Bonds = append(out.Network.Bonds, v1.NetworkBond{Name: b.Name, Mode: b.Mode, Interfaces: append([]string(nil), b.Interfaces...)})
		}
		for _, v := range n.VLANs {
			out.Network.VLANs = append(out.Network.VLANs, v1.NetworkVLAN{Name: v.Name, Link: v.Link, ID: v.ID})
		}
		for _, b := range n.Bridges {
			out.Network.Bridges = append(out.Network.Bridges, v1.NetworkBridge{Name: b.Name, Interfaces: append([]string(nil), b.Interfaces...)})
		}
	}
	return out
}

func joinTokenOut(j *state.JoinToken) v1.JoinToken {
	return v1.JoinToken{ID: j.ID, InfraID: j.InfraID, ExpiresAt: apiTime(j.ExpiresAt), MaxUses: j.MaxUses, Uses: j.Uses, CreatedAt: apiTime(j.CreatedAt)}
}

func hostOut(h *state.Host) v1.Host {
	out := v1.Host{
		ID:           h.ID,
		InfraID:      h.InfraID,
		Hostname:     h.Hostname,
		State:        h.State,
		ClusterID:    h.ClusterID,
		CPUs:         h.CPUs,
		MemoryBytes:  h.MemoryBytes,
		Disks:        []v1.Disk{},
		NICs:         []v1.NIC{},
		Labels:       map[string]string{},
		AgentVersion: h.AgentVersion,
		Serial:       h.Serial,
		Network:      hostNetworkOut(h.NetworkJSON),
		ConnectedTo:  h.ConnectedTo,
		LastSeen:     apiTime(h.LastSeen),
		CreatedAt:    apiTime(h.CreatedAt),
	}
	for _, d := range h.Disks {
		out.Disks = append(out.Disks, v1.Disk{Name: d.Name, SizeBytes: d.SizeBytes, Rotational: d.Rotational, Serial: d.Serial})
	}
	for _, n := range h.NICs {
		out.NICs = append(out.NICs, v1.NIC{Name: n.Name, MAC: n.MAC, SpeedMbps: n.SpeedMbps, Addresses: append([]string(nil), n.Addresses...), Up: n.Up})
	}
	for k, v := range h.Labels {
		out.Labels[k] = v
	}
	return out
}

func nodeOut(st *state.State, n *state.Node) v1.Node {
	out := v1.Node{HostID: n.HostID, Role: n.Role, State: n.State, Step: n.Step, CreatedAt: apiTime(n.CreatedAt), UpdatedAt: apiTime(n.UpdatedAt)}
	if h, ok := st.Host(n.HostID); ok {
		out.Hostname = h.Hostname
	}
	out.APIReady = n.APIReady
	out.NodeSize, out.Replaces, out.EtcdMemberID = n.Size, n.Replaces, n.EtcdMemberID
	if c, ok := st.Cluster(n.ClusterID); ok && c.VIP != nil && c.VIP.Holder == n.HostID {
		out.VIP = &v1.NodeVIP{Address: c.VIP.Address, Epoch: c.VIP.Epoch, Held: c.VIP.Held}
	}
	for _, s := range n.Steps {
		ns := v1.NodeStep{Name: s.Name, State: s.State, Attempt: s.Attempt, Executor: s.Executor, Phase: s.Phase, Reason: s.Reason, Output: s.Output}
		if !s.StartedAt.IsZero() {
			t := apiTime(s.StartedAt)
			ns.StartedAt = &t
		}
		if !s.EndedAt.IsZero() {
			t := apiTime(s.EndedAt)
			ns.EndedAt = &t
		}
		out.Steps = append(out.Steps, ns)
	}
	return out
}

func eventOut(e state.Event) v1.Event {
	return v1.Event{Seq: e.Seq, ClusterID: e.ClusterID, HostID: e.HostID, Type: e.Type, Message: e.Message, Time: e.Time.UTC(), DurationMS: e.DurationMS}
}

// hostNetworkOut decodes a host's own network for the API (nil when it has none).
func hostNetworkOut(b []byte) *v1.HostNetwork {
	if len(b) == 0 {
		return nil
	}
	var n v1.HostNetwork
	if json.Unmarshal(b, &n) != nil {
		return nil
	}
	return &n
}
