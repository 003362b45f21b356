package rest

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
)

// Limits of the request schema (also stated in openapi.yaml).
const (
	MaxPerPage           = 100
	DefaultPerPage       = 20
	MaxWorkers           = 1000
	MaxTokenTTL          = 3650 * 24 * time.Hour
	MaxJoinTTL           = 365 * 24 * time.Hour
	DefaultJoinTTL       = 24 * time.Hour
	MaxKubeconfigTTL     = 365 * 24 * time.Hour
	DefaultKubeconfigTTL = 365 * 24 * time.Hour
)

var (
	// nameRe: letters, digits and hyphens, 1-63 characters, starting and ending with a
	// letter or digit (a DNS label, as cluster names end up in host and certificate names).
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	idRe       = regexp.MustCompile(`^cls_[a-z0-9]{1,64}$`)
	durationRe = regexp.MustCompile(`^([1-9][0-9]{0,6})([mhdw])$`)
)

func validName(field, name string) error {
	if !nameRe.MatchString(name) {
		return v1.InvalidField(field, "%s must be 1-63 letters, digits or hyphens, starting and ending with a letter or digit", field)
	}
	return nil
}

// ParseDuration reads the API's durations: "30m", "12h", "90d", "2w", at most maxD.
func ParseDuration(field, s string, maxD time.Duration) (time.Duration, error) {
	m := durationRe.FindStringSubmatch(s)
	if m == nil {
		return 0, v1.InvalidField(field, "%s must be a positive duration such as 30m, 12h, 90d or 2w", field)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
	d := time.Duration(n) * unit
	if d > maxD {
		return 0, v1.InvalidField(field, "%s must be at most %s", field, humanDuration(maxD))
	}
	return d, nil
}

func humanDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

func validateCreateCluster(req *v1.CreateClusterRequest, cat Catalog) error {
	if req.Name == nil {
		return v1.InvalidField("name", "name is required")
	}
	if err := validName("name", *req.Name); err != nil {
		return err
	}
	if req.ControlPlanes == nil {
		return v1.InvalidField("control_planes", "control_planes is required")
	}
	if *req.ControlPlanes != 1 && *req.ControlPlanes != 3 {
		return v1.InvalidField("control_planes", "control_planes must be 1 or 3")
	}
	if req.Workers == nil {
		return v1.InvalidField("workers", "workers is required")
	}
	if *req.Workers < 1 || *req.Workers > MaxWorkers {
		return v1.InvalidField("workers", "workers must be between 1 and %d", MaxWorkers)
	}
	if req.NodeSize == nil {
		return v1.InvalidField("node_size", "node_size is required")
	}
	if !slices.Contains(cat.NodeSizes, *req.NodeSize) {
		return v1.InvalidField("node_size", "node_size must be one of %s", strings.Join(cat.NodeSizes, ", "))
	}
	phase := v1.PhaseManaged
	if req.Phase != nil {
		phase = *req.Phase
	}
	switch phase {
	case v1.PhaseManaged:
		if req.InfraID != nil && *req.InfraID != v1.ManagedInfraID {
			return v1.InvalidField("infra_id", "phase managed runs on %s; omit infra_id or use a phase matching the infra", v1.ManagedInfraID)
		}
	case v1.PhaseOnPremise, v1.PhaseBaremetal:
		if req.InfraID == nil || *req.InfraID == "" {
			return v1.InvalidField("infra_id", "infra_id is required for phase %s", phase)
		}
		if *req.InfraID == v1.ManagedInfraID {
			return v1.InvalidField("infra_id", "%s is the managed pool; use phase managed for it", v1.ManagedInfraID)
		}
	default:
		return v1.InvalidField("phase", "phase must be managed, onpremise or baremetal")
	}
	if req.KubernetesVersion != nil && !slices.ContainsFunc(cat.KubernetesVersions, func(k v1.KubernetesVersion) bool { return k.Version == *req.KubernetesVersion }) {
		return v1.InvalidField("kubernetes_version", "kubernetes_version %q is not offered; see GET /v1/kubernetes/versions", *req.KubernetesVersion)
	}
	return nil
}

func validatePatchCluster(req *v1.PatchClusterRequest, cat Catalog) error {
	if req.Workers == nil && req.NodeSize == nil {
		return v1.Errorf(v1.CodeInvalidRequest, "nothing to change: give workers and/or node_size")
	}
	if req.Workers != nil && (*req.Workers < 1 || *req.Workers > MaxWorkers) {
		return v1.InvalidField("workers", "workers must be between 1 and %d", MaxWorkers)
	}
	if req.NodeSize != nil && !slices.Contains(cat.NodeSizes, *req.NodeSize) {
		return v1.InvalidField("node_size", "node_size must be one of %s", strings.Join(cat.NodeSizes, ", "))
	}
	return nil
}

func validateUpgrade(req *v1.UpgradeClusterRequest, cat Catalog) error {
	if req.KubernetesVersion == nil {
		return v1.InvalidField("kubernetes_version", "kubernetes_version is required")
	}
	if !slices.ContainsFunc(cat.KubernetesVersions, func(k v1.KubernetesVersion) bool { return k.Version == *req.KubernetesVersion }) {
		return v1.InvalidField("kubernetes_version", "kubernetes_version %q is not offered; see GET /v1/kubernetes/versions", *req.KubernetesVersion)
	}
	return nil
}

var (
	validPerms      = []string{v1.PermRead, v1.PermWrite, v1.PermAdmin}
	validPlans      = []string{v1.PlanCommunity, v1.PlanPro, v1.PlanEnterprise}
	validStatus     = []string{v1.StatusProvisioning, v1.StatusRunning, v1.StatusScaling, v1.StatusUpgrading, v1.StatusError, v1.StatusDeleting}
	validHostStates = []string{v1.HostDiscovered, v1.HostAvailable, v1.HostAssigned, v1.HostOffline, v1.HostDecommissioned}
)

func validateCreateToken(req *v1.CreateTokenRequest) error {
	if req.Name == nil {
		return v1.InvalidField("name", "name is required")
	}
	if n := strings.TrimSpace(*req.Name); n == "" || len(*req.Name) > 128 || strings.ContainsFunc(*req.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return v1.InvalidField("name", "name must be 1-128 printable characters")
	}
	if req.Permissions == nil || len(*req.Permissions) == 0 {
		return v1.InvalidField("permissions", "permissions is required: one or more of read, write, admin")
	}
	for _, p := range *req.Permissions {
		if !slices.Contains(validPerms, p) {
			return v1.InvalidField("permissions", "unknown permission %q: use read, write or admin", p)
		}
	}
	scope := "*"
	if req.Scope != nil {
		scope = *req.Scope
	}
	if scope != "*" && scope != "cluster:*" && !(strings.HasPrefix(scope, "cluster:") && idRe.MatchString(strings.TrimPrefix(scope, "cluster:"))) {
		return v1.InvalidField("scope", "scope must be *, cluster:* or cluster:<cluster id>")
	}
	if slices.Contains(*req.Permissions, v1.PermAdmin) && scope != "*" {
		return v1.InvalidField("scope", "an admin token manages the whole platform: its scope must be *")
	}
	if req.Expires != nil {
		if _, err := ParseDuration("expires", *req.Expires, MaxTokenTTL); err != nil {
			return err
		}
	}
	if req.Plan != nil && !slices.Contains(validPlans, *req.Plan) {
		return v1.InvalidField("plan", "plan must be community, pro or enterprise")
	}
	return nil
}

func validateCreateInfra(req *v1.CreateInfraRequest) error {
	if req.Name == nil {
		return v1.InvalidField("name", "name is required")
	}
	if err := validName("name", *req.Name); err != nil {
		return err
	}
	if req.Kind == nil {
		return v1.InvalidField("kind", "kind is required: onpremise or baremetal")
	}
	if *req.Kind != v1.PhaseOnPremise && *req.Kind != v1.PhaseBaremetal {
		return v1.InvalidField("kind", "kind must be onpremise or baremetal")
	}
	if n := req.Network; n != nil {
		var cidr netip.Prefix
		if n.CIDR != "" {
			p, err := netip.ParsePrefix(n.CIDR)
			if err != nil {
				return v1.InvalidField("network.cidr", "network.cidr must be a CIDR such as 10.0.0.0/24")
			}
			cidr = p.Masked()
		}
		if n.Gateway != "" {
			gw, err := netip.ParseAddr(n.Gateway)
			if err != nil {
				return v1.InvalidField("network.gateway", "network.gateway must be an IP address")
			}
			if cidr.IsValid() && !cidr.Contains(gw) {
				return v1.InvalidField("network.gateway", "network.gateway %s is outside network.cidr %s", n.Gateway, cidr)
			}
		}
		for _, d := range n.DNS {
			if _, err := netip.ParseAddr(d); err != nil {
				return v1.InvalidField("network.dns", "network.dns must list IP addresses; %q is not one", d)
			}
		}
		if n.MTU != 0 && (n.MTU < 576 || n.MTU > 9216) {
			return v1.InvalidField("network.mtu", "network.mtu must be between 576 and 9216")
		}
		if err := validateNetworkLinks(n); err != nil {
			return err
		}
	}
	if a := req.AutoAccept; a != nil {
		if err := validateAutoAccept(a); err != nil {
			return err
		}
	}
	if req.VIPPool != nil {
		p, err := netip.ParsePrefix(*req.VIPPool)
		if err != nil {
			return v1.InvalidField("vip_pool", "vip_pool must be a CIDR such as 10.0.0.240/28")
		}
		if p.Addr().Is4() && p.Bits() > 30 || p.Addr().Is6() && p.Bits() > 126 {
			return v1.InvalidField("vip_pool", "vip_pool %s holds no usable address", *req.VIPPool)
		}
	}
	return nil
}

// query reads and checks query parameters: unknown ones are refused, so a typo such as
// ?statu=running is an error rather than an unfiltered list.
type query struct {
	v   url.Values
	err error
}

func newQuery(u *url.URL, allowed ...string) *query {
	q := &query{}
	v, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		q.err = v1.Errorf(v1.CodeInvalidRequest, "malformed query string")
		return q
	}
	q.v = v
	for name := range v {
		if !slices.Contains(allowed, name) {
			q.err = v1.InvalidField(name, "unknown query parameter %q", name)
			return q
		}
		if len(v[name]) > 1 {
			q.err = v1.InvalidField(name, "query parameter %q given more than once", name)
			return q
		}
	}
	return q
}

func (q *query) int(name string, def, lo, hi int) int {
	if q.err != nil || !q.v.Has(name) {
		return def
	}
	n, err := strconv.Atoi(q.v.Get(name))
	if err != nil || n < lo || n > hi {
		q.err = v1.InvalidField(name, "%s must be an integer between %d and %d", name, lo, hi)
		return def
	}
	return n
}

func (q *query) oneOf(name string, values []string) string {
	if q.err != nil || !q.v.Has(name) {
		return ""
	}
	s := q.v.Get(name)
	if !slices.Contains(values, s) {
		q.err = v1.InvalidField(name, "%s must be one of %s", name, strings.Join(values, ", "))
	}
	return s
}

func (q *query) str(name string) string {
	if q.err != nil {
		return ""
	}
	return q.v.Get(name)
}

func (q *query) page() (page, perPage int) {
	page = q.int("page", 1, 1, 1_000_000)
	perPage = q.int("per_page", DefaultPerPage, 1, MaxPerPage)
	return page, perPage
}

// bondModes are the bonding modes a template may ask for.
var bondModes = []string{"802.3ad", "active-backup"}

// validLinkName checks a Linux interface name: 1-15 bytes, no '/', ':' or white space, not
// "." or "..". We are stricter than the kernel: letters, digits, '-', '_' and '.'.
func validLinkName(field, name string) error {
	if name == "" {
		return v1.InvalidField(field, "%s is required", field)
	}
	if len(name) > 15 || name == "." || name == ".." {
		return v1.InvalidField(field, "%s %q is not a valid interface name (1-15 characters)", field, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return v1.InvalidField(field, "%s %q is not a valid interface name (letters, digits, '-', '_', '.')", field, name)
		}
	}
	return nil
}

// validateNetworkLinks checks the links a template creates: names valid and unique, each
// interface in at most one bond or bridge, VLAN ids 1-4094, the address interface known.
// A refused template stores nothing, so no agent ever sees it.
func validateNetworkLinks(n *v1.Network) error {
	defined := map[string]string{} // name -> field that defines it
	define := func(field, name string) error {
		if err := validLinkName(field, name); err != nil {
			return err
		}
		if prev, ok := defined[name]; ok {
			return v1.InvalidField(field, "%s %q is already defined by %s", field, name, prev)
		}
		defined[name] = field
		return nil
	}
	member := map[string]string{} // interface -> field of the bond or bridge that takes it
	take := func(field, name string) error {
		if err := validLinkName(field, name); err != nil {
			return err
		}
		if prev, ok := member[name]; ok {
			return v1.InvalidField(field, "%s: interface %q is already in %s", field, name, prev)
		}
		member[name] = field
		return nil
	}
	if len(n.Bonds)+len(n.VLANs)+len(n.Bridges) > 64 {
		return v1.InvalidField("network", "network defines more than 64 links")
	}
	for i, b := range n.Bonds {
		f := fmt.Sprintf("network.bonds[%d]", i)
		if err := define(f+".name", b.Name); err != nil {
			return err
		}
		if !slices.Contains(bondModes, b.Mode) {
			return v1.InvalidField(f+".mode", "%s.mode must be 802.3ad or active-backup", f)
		}
		if len(b.Interfaces) == 0 {
			return v1.InvalidField(f+".interfaces", "%s.interfaces must list at least one interface", f)
		}
		for j, m := range b.Interfaces {
			if err := take(fmt.Sprintf("%s.interfaces[%d]", f, j), m); err != nil {
				return err
			}
		}
	}
	for i, v := range n.VLANs {
		f := fmt.Sprintf("network.vlans[%d]", i)
		if err := define(f+".name", v.Name); err != nil {
			return err
		}
		if err := validLinkName(f+".link", v.Link); err != nil {
			return err
		}
		if v.ID < 1 || v.ID > 4094 {
			return v1.InvalidField(f+".id", "%s.id must be between 1 and 4094", f)
		}
	}
	for i, b := range n.Bridges {
		f := fmt.Sprintf("network.bridges[%d]", i)
		if err := define(f+".name", b.Name); err != nil {
			return err
		}
		for j, m := range b.Interfaces {
			if err := take(fmt.Sprintf("%s.interfaces[%d]", f, j), m); err != nil {
				return err
			}
		}
	}
	for name, field := range member {
		if _, ok := defined[name]; ok && strings.HasPrefix(field, "network.bonds") && strings.HasPrefix(defined[name], "network.bonds") {
			return v1.InvalidField(field, "%s: a bond cannot be a member of a bond", field)
		}
	}
	if n.Interface != "" {
		if err := validLinkName("network.interface", n.Interface); err != nil {
			return err
		}
		if _, ok := member[n.Interface]; ok {
			return v1.InvalidField("network.interface", "network.interface %q is a member of %s and cannot carry the address", n.Interface, member[n.Interface])
		}
		if n.CIDR == "" {
			return v1.InvalidField("network.cidr", "network.cidr is required with network.interface (the host's address is the one in it)")
		}
	}
	return nil
}

// macPrefix is 1 to 6 hex octets separated by colons, e.g. "52:54:00".
var macPrefix = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){0,5}$`)

func validateAutoAccept(a *v1.AutoAccept) error {
	if len(a.MACPrefixes)+len(a.Serials)+len(a.Labels) > 256 {
		return v1.InvalidField("auto_accept", "auto_accept holds at most 256 rules")
	}
	for i, p := range a.MACPrefixes {
		if !macPrefix.MatchString(p) {
			return v1.InvalidField(fmt.Sprintf("auto_accept.mac_prefixes[%d]", i), "%q is not a MAC prefix such as 52:54:00", p)
		}
	}
	for i, s := range a.Serials {
		if s == "" || len(s) > 128 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return v1.InvalidField(fmt.Sprintf("auto_accept.serials[%d]", i), "a serial is 1-128 printable characters")
		}
	}
	for k, v := range a.Labels {
		if k == "" || len(k) > 63 || len(v) > 63 || strings.ContainsAny(k+v, "=,\n\r\x00") {
			return v1.InvalidField("auto_accept.labels", "label %q=%q: keys 1-63 and values up to 63 characters, without = , or control characters", k, v)
		}
	}
	return nil
}
