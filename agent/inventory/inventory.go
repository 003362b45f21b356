// Package inventory describes the host an agent runs on: CPUs, memory, disks, NICs, OS,
// firmware identity, Kubernetes tool versions and operator labels.
//
// Everything is read from the host itself (procfs, sysfs, os-release, netlink), with every
// root directory and side effect behind Options so tests describe a whole machine with a
// testdata tree and fakes. The result is normalised (sorted, never-nil collections) so that
// Changed, and therefore the agent's decision to re-send, depends only on what the host is.
package inventory

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Inventory is what an agent reports about its host. The JSON names match api/v1's Host,
// Disk and NIC so the coordinator can show it without renaming.
type Inventory struct {
	Hostname string `json:"hostname"`
	// OSRelease is PRETTY_NAME from os-release, e.g. "Ubuntu 24.04.1 LTS".
	OSRelease   string `json:"os_release"`
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model"`
	MemoryBytes int64  `json:"memory_bytes"`
	// Disks and NICs are sorted by name.
	Disks []Disk `json:"disks"`
	NICs  []NIC  `json:"nics"`
	// Product and Serial come from DMI; empty on machines (and VMs) that have none.
	Product string `json:"product"`
	Serial  string `json:"serial"`
	// Versions holds kubeadm, kubelet and containerd, each only when installed.
	Versions map[string]string `json:"versions"`
	Labels   map[string]string `json:"labels"`
}

// Disk is one block device.
type Disk struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Rotational bool   `json:"rotational"`
	Serial     string `json:"serial,omitempty"`
}

// NIC is one network interface other than the loopback.
type NIC struct {
	Name      string `json:"name"`
	MAC       string `json:"mac"`
	SpeedMbps int    `json:"speed_mbps,omitempty"`
	// Addresses are in CIDR form ("10.0.0.5/24"), IPv4 before IPv6.
	Addresses []string `json:"addresses,omitempty"`
	Up        bool     `json:"up"`
}

// Link is what Collect needs to know about a network link.
type Link struct {
	Name string
	// Type is the kernel's link kind: "device" for a physical NIC, "bond", "vlan",
	// "bridge", "veth", "vxlan", ...
	Type     string
	MAC      string
	Loopback bool
	// Up means the link carries traffic (operationally up), not merely administratively up.
	Up bool
	// Addresses are in CIDR form.
	Addresses []string
}

// LinkLister lists the host's network links. Netlink is the real one.
type LinkLister interface {
	Links(ctx context.Context) ([]Link, error)
}

// Options says where Collect reads from. The zero value reads the real host.
type Options struct {
	// ProcDir, SysDir and EtcDir default to /proc, /sys and /etc.
	ProcDir, SysDir, EtcDir string
	// Links defaults to Netlink.
	Links LinkLister
	// RunVersion returns the version output of the named tool (kubeadm, kubelet,
	// containerd), or an error wrapping exec.ErrNotFound when it is not installed. It
	// defaults to ExecVersion.
	RunVersion func(ctx context.Context, name string) (string, error)
	// Labels are the operator's --labels, copied into the inventory.
	Labels map[string]string
	// Hostname defaults to os.Hostname.
	Hostname func() (string, error)
	// Logger receives version probes that failed for a reason other than absence.
	// Defaults to discarding.
	Logger *slog.Logger
}

// VersionedTools are the tools whose versions Collect reports, in probe order.
var VersionedTools = []string{"kubeadm", "kubelet", "containerd"}

func (o Options) withDefaults() Options {
	if o.ProcDir == "" {
		o.ProcDir = "/proc"
	}
	if o.SysDir == "" {
		o.SysDir = "/sys"
	}
	if o.EtcDir == "" {
		o.EtcDir = "/etc"
	}
	if o.Links == nil {
		o.Links = Netlink{}
	}
	if o.RunVersion == nil {
		o.RunVersion = ExecVersion
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Collect describes the host. Only what every Linux host has (cpuinfo, meminfo, a
// hostname, a link list) is required; anything else missing is left empty, because VMs,
// containers and odd hardware legitimately lack DMI, serials or speeds.
func Collect(ctx context.Context, o Options) (*Inventory, error) {
	o = o.withDefaults()
	inv := &Inventory{
		Versions: map[string]string{},
		Labels:   map[string]string{},
	}
	var err error
	if inv.Hostname, err = o.Hostname(); err != nil {
		return nil, fmt.Errorf("inventory: hostname: %w", err)
	}
	if inv.CPUs, inv.CPUModel, err = readCPUInfo(filepath.Join(o.ProcDir, "cpuinfo")); err != nil {
		return nil, err
	}
	if inv.MemoryBytes, err = readMemTotal(filepath.Join(o.ProcDir, "meminfo")); err != nil {
		return nil, err
	}
	inv.Kernel = readTrimmed(filepath.Join(o.ProcDir, "sys", "kernel", "osrelease"))
	inv.OSRelease = readPrettyName(filepath.Join(o.EtcDir, "os-release"))
	inv.Product = readTrimmed(filepath.Join(o.SysDir, "class", "dmi", "id", "product_name"))
	inv.Serial = readTrimmed(filepath.Join(o.SysDir, "class", "dmi", "id", "product_serial"))
	if inv.Disks, err = readDisks(filepath.Join(o.SysDir, "block")); err != nil {
		return nil, err
	}
	if inv.NICs, err = collectNICs(ctx, o); err != nil {
		return nil, err
	}
	for _, tool := range VersionedTools {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out, err := o.RunVersion(ctx, tool)
		if err != nil {
			// A broken or hung tool must not keep the host from registering; the
			// step that needs the tool will fail with the real reason.
			if !isNotInstalled(err) {
				o.Logger.Warn("version probe failed", "tool", tool, "error", err)
			}
			continue
		}
		if v := parseVersion(out); v != "" {
			inv.Versions[tool] = v
		}
	}
	for k, v := range o.Labels {
		inv.Labels[k] = v
	}
	return inv, nil
}

func collectNICs(ctx context.Context, o Options) ([]NIC, error) {
	links, err := o.Links.Links(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: list links: %w", err)
	}
	nics := []NIC{}
	for _, l := range links {
		if l.Loopback || l.Name == "lo" || churning(l) {
			continue
		}
		nics = append(nics, NIC{
			Name:      l.Name,
			MAC:       l.MAC,
			SpeedMbps: readSpeed(filepath.Join(o.SysDir, "class", "net", l.Name, "speed")),
			Addresses: sortAddresses(l.Addresses),
			Up:        l.Up,
		})
	}
	slices.SortFunc(nics, func(a, b NIC) int { return cmp.Compare(a.Name, b.Name) })
	return nics, nil
}

// hasGlobalAddress tells whether one of addrs (CIDR notation) is neither link-local nor
// loopback.
func hasGlobalAddress(addrs []string) bool {
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err == nil && !p.Addr().IsLinkLocalUnicast() && !p.Addr().IsLoopback() {
			return true
		}
	}
	return false
}

// sortAddresses orders addresses so that a kernel listing them in another order is not
// mistaken for a change.
func sortAddresses(addrs []string) []string {
	if len(addrs) == 0 {
		return nil
	}
	out := slices.Clone(addrs)
	slices.SortFunc(out, func(a, b string) int {
		pa, errA := netip.ParsePrefix(a)
		pb, errB := netip.ParsePrefix(b)
		if errA != nil || errB != nil {
			return strings.Compare(a, b)
		}
		return pa.Compare(pb)
	})
	return out
}

// Changed tells whether b describes the host differently from a, i.e. whether the agent
// has to send it again. Nil and empty collections are the same thing here.
func Changed(a, b *Inventory) bool {
	return !gocmp.Equal(a, b, cmpopts.EquateEmpty())
}

// churning tells whether a link is one Kubernetes networking creates and removes as pods
// come and go (pod veths, overlay tunnels, CNI and container bridges, IPVS dummies). Listing
// them would make the inventory "change" on every pod start; they say nothing about the host.
//
// A veth that carries a global address is kept: then it is the host's own uplink (a host
// that is itself a container or a network namespace), while the host end of a pod's veth
// has at most a link-local address.
func churning(l Link) bool {
	switch l.Type {
	case "veth":
		return !hasGlobalAddress(l.Addresses)
	case "vxlan", "geneve", "ipip", "ifb", "dummy", "wireguard":
		return true
	case "bridge":
		for _, p := range []string{"cni", "docker", "kube", "flannel", "cali", "cilium", "weave"} {
			if strings.HasPrefix(l.Name, p) {
				return true
			}
		}
	}
	return false
}
