package kubeadm

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Defaults for the optional parameters. They are the values kubeadm itself would pick, except
// DefaultPodSubnet, which kubeadm leaves unset and our CNI manifest expects.
const (
	DefaultCRISocket       = "unix:///run/containerd/containerd.sock"
	DefaultCertificatesDir = "/etc/kubernetes/pki"
	DefaultPodSubnet       = "10.244.0.0/16"
	DefaultServiceSubnet   = "10.96.0.0/12"
	// DefaultBootstrapTokenTTL is short because the init token is only a fallback: every join
	// gets a fresh token from its own credentials step.
	DefaultBootstrapTokenTTL = 10 * time.Minute
	// DiscoveryTimeout is how long a join waits to fetch and verify the cluster CA from the
	// control-plane endpoint. It is written out explicitly so that the join step's own
	// deadline can be reasoned about from this package alone.
	DiscoveryTimeout = 5 * time.Minute
	// APIServerPort is the port every API server binds to.
	APIServerPort = 6443
)

const (
	apiVersion = "kubeadm.k8s.io/v1beta4"
	// encryptionAlgorithm matches the coordinator's PKI, so that what kubeadm generates
	// (leaf certificates, and any CA it would create) uses the same key type as our CAs.
	encryptionAlgorithm = "ECDSA-P256"
)

// InitParams are the inputs of the first control plane's `kubeadm init`.
type InitParams struct {
	// ClusterName ends up in every kubeconfig kubeadm writes; an RFC 1123 subdomain.
	ClusterName string
	// KubernetesVersion is vMAJOR.MINOR.PATCH. It is always explicit so that kubeadm never
	// looks up a "stable" label on the internet.
	KubernetesVersion string
	// NodeName is the Node object's name; an RFC 1123 subdomain.
	NodeName string
	// AdvertiseAddress is the IP this API server advertises. It is required because hosts
	// being provisioned may have no default route for kubeadm to guess from.
	AdvertiseAddress string
	// ControlPlaneEndpoint is the cluster-wide API address, host:port with a numeric port.
	ControlPlaneEndpoint string
	// PodSubnet and ServiceSubnet are single CIDRs; "" means DefaultPodSubnet and
	// DefaultServiceSubnet.
	PodSubnet, ServiceSubnet string
	// CertSANs are extra IPs or DNS names (wildcards allowed) for the API server certificate.
	CertSANs []string
	// BootstrapToken is created by init, in the form [a-z0-9]{6}.[a-z0-9]{16}.
	BootstrapToken string
	// BootstrapTokenTTL is the token's lifetime; 0 means DefaultBootstrapTokenTTL.
	BootstrapTokenTTL time.Duration
	// CertificatesDir is where the CAs already are and kubeadm writes the rest; "" means
	// DefaultCertificatesDir.
	CertificatesDir string
	// CRISocket is the container runtime's endpoint, a unix:// URL; "" means DefaultCRISocket.
	CRISocket string
}

// JoinParams are the inputs of `kubeadm join`, for control planes and workers.
type JoinParams struct {
	// NodeName is the Node object's name; an RFC 1123 subdomain.
	NodeName string
	// ControlPlaneEndpoint is the cluster-wide API address used for discovery, host:port.
	ControlPlaneEndpoint string
	// Token is the bootstrap token minted by the credentials step.
	Token string
	// CACertHash pins the cluster CA, "sha256:" and 64 lowercase hex digits. It is required:
	// we never join without verifying whom we join.
	CACertHash string
	// ControlPlane makes the node an additional control plane. The shared CAs must already be
	// in place (the pki step), hence no certificate key.
	ControlPlane bool
	// AdvertiseAddress is the IP of this node's API server: required with ControlPlane,
	// checked but unused otherwise.
	AdvertiseAddress string
	// CRISocket is the container runtime's endpoint, a unix:// URL; "" means DefaultCRISocket.
	CRISocket string
}

// ParamError reports the first invalid parameter. Field is the Go name of the InitParams or
// JoinParams field (e.g. "PodSubnet"), so that callers map it back to their own parameter
// names without reading the message.
type ParamError struct {
	Field   string
	Message string
}

func (e *ParamError) Error() string {
	return "kubeadm config: invalid " + e.Field + ": " + e.Message
}

func paramErr(field, format string, args ...any) *ParamError {
	return &ParamError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// The v1beta4 documents, restricted to the fields we set. Names and nesting follow
// cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go of kubeadm v1.37. Fields we always set have
// no omitempty, so a mistake shows up in the golden files instead of silently vanishing.

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type initConfiguration struct {
	typeMeta
	BootstrapTokens  []bootstrapToken `json:"bootstrapTokens"`
	NodeRegistration nodeRegistration `json:"nodeRegistration"`
	LocalAPIEndpoint apiEndpoint      `json:"localAPIEndpoint"`
}

// bootstrapToken leaves usages and groups to kubeadm's defaults (signing, authentication;
// system:bootstrappers:kubeadm:default-node-token), which is what joining nodes need.
type bootstrapToken struct {
	Token string `json:"token"`
	TTL   string `json:"ttl"` // a Go duration, as metav1.Duration parses it
}

type nodeRegistration struct {
	Name      string `json:"name"`
	CRISocket string `json:"criSocket"`
}

type apiEndpoint struct {
	AdvertiseAddress string `json:"advertiseAddress"`
	BindPort         int32  `json:"bindPort"`
}

type clusterConfiguration struct {
	typeMeta
	ClusterName          string     `json:"clusterName"`
	KubernetesVersion    string     `json:"kubernetesVersion"`
	ControlPlaneEndpoint string     `json:"controlPlaneEndpoint"`
	CertificatesDir      string     `json:"certificatesDir"`
	EncryptionAlgorithm  string     `json:"encryptionAlgorithm"`
	Networking           networking `json:"networking"`
	APIServer            apiServer  `json:"apiServer"`
}

type networking struct {
	PodSubnet     string `json:"podSubnet"`
	ServiceSubnet string `json:"serviceSubnet"`
}

type apiServer struct {
	CertSANs []string `json:"certSANs"`
}

type joinConfiguration struct {
	typeMeta
	NodeRegistration nodeRegistration  `json:"nodeRegistration"`
	Discovery        discovery         `json:"discovery"`
	ControlPlane     *joinControlPlane `json:"controlPlane,omitempty"`
	// Timeouts carries the discovery timeout: v1beta4 moved it out of discovery.
	Timeouts timeouts `json:"timeouts"`
}

type discovery struct {
	BootstrapToken bootstrapTokenDiscovery `json:"bootstrapToken"`
}

type bootstrapTokenDiscovery struct {
	APIServerEndpoint string   `json:"apiServerEndpoint"`
	Token             string   `json:"token"`
	CACertHashes      []string `json:"caCertHashes"`
}

type joinControlPlane struct {
	LocalAPIEndpoint apiEndpoint `json:"localAPIEndpoint"`
}

type timeouts struct {
	Discovery string `json:"discovery"`
}

// RenderInit validates p and returns an InitConfiguration and a ClusterConfiguration as one
// multi-document YAML file for `kubeadm init --config`.
func RenderInit(p InitParams) ([]byte, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, err
	}
	sans := p.CertSANs
	if sans == nil {
		sans = []string{} // rendered as [], keeping the key present
	}
	ic := initConfiguration{
		typeMeta: typeMeta{APIVersion: apiVersion, Kind: "InitConfiguration"},
		BootstrapTokens: []bootstrapToken{{
			Token: p.BootstrapToken,
			TTL:   p.BootstrapTokenTTL.String(),
		}},
		NodeRegistration: nodeRegistration{Name: p.NodeName, CRISocket: p.CRISocket},
		LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: p.AdvertiseAddress, BindPort: APIServerPort},
	}
	cc := clusterConfiguration{
		typeMeta:             typeMeta{APIVersion: apiVersion, Kind: "ClusterConfiguration"},
		ClusterName:          p.ClusterName,
		KubernetesVersion:    p.KubernetesVersion,
		ControlPlaneEndpoint: p.ControlPlaneEndpoint,
		CertificatesDir:      p.CertificatesDir,
		EncryptionAlgorithm:  encryptionAlgorithm,
		Networking:           networking{PodSubnet: p.PodSubnet, ServiceSubnet: p.ServiceSubnet},
		APIServer:            apiServer{CertSANs: sans},
	}
	return marshalDocs(ic, cc)
}

// RenderJoin validates p and returns a JoinConfiguration for `kubeadm join --config`.
func RenderJoin(p JoinParams) ([]byte, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, err
	}
	jc := joinConfiguration{
		typeMeta:         typeMeta{APIVersion: apiVersion, Kind: "JoinConfiguration"},
		NodeRegistration: nodeRegistration{Name: p.NodeName, CRISocket: p.CRISocket},
		Discovery: discovery{BootstrapToken: bootstrapTokenDiscovery{
			APIServerEndpoint: p.ControlPlaneEndpoint,
			Token:             p.Token,
			CACertHashes:      []string{p.CACertHash},
		}},
		Timeouts: timeouts{Discovery: DiscoveryTimeout.String()},
	}
	if p.ControlPlane {
		jc.ControlPlane = &joinControlPlane{
			LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: p.AdvertiseAddress, BindPort: APIServerPort},
		}
	}
	return marshalDocs(jc)
}

// marshalDocs writes each value as one YAML document, separated by "---" lines.
func marshalDocs(docs ...any) ([]byte, error) {
	var buf bytes.Buffer
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("kubeadm config: marshal: %w", err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func (p InitParams) withDefaults() InitParams {
	if p.PodSubnet == "" {
		p.PodSubnet = DefaultPodSubnet
	}
	if p.ServiceSubnet == "" {
		p.ServiceSubnet = DefaultServiceSubnet
	}
	if p.BootstrapTokenTTL == 0 {
		p.BootstrapTokenTTL = DefaultBootstrapTokenTTL
	}
	if p.CertificatesDir == "" {
		p.CertificatesDir = DefaultCertificatesDir
	}
	if p.CRISocket == "" {
		p.CRISocket = DefaultCRISocket
	}
	return p
}

func (p JoinParams) withDefaults() JoinParams {
	if p.CRISocket == "" {
		p.CRISocket = DefaultCRISocket
	}
	return p
}

// validate checks in field order and returns the first problem.
func (p InitParams) validate() error {
	if err := checkName("ClusterName", p.ClusterName); err != nil {
		return err
	}
	if !versionRE.MatchString(p.KubernetesVersion) {
		return paramErr("KubernetesVersion", "%q is not of the form vMAJOR.MINOR.PATCH", p.KubernetesVersion)
	}
	if err := checkName("NodeName", p.NodeName); err != nil {
		return err
	}
	if err := checkIP("AdvertiseAddress", p.AdvertiseAddress); err != nil {
		return err
	}
	if err := checkEndpoint("ControlPlaneEndpoint", p.ControlPlaneEndpoint); err != nil {
		return err
	}
	pods, err := checkPodSubnet(p.PodSubnet)
	if err != nil {
		return err
	}
	services, err := checkServiceSubnet(p.ServiceSubnet)
	if err != nil {
		return err
	}
	// kubeadm accepts overlapping ranges, but then pod and service routing collide.
	if pods.Overlaps(services) {
		return paramErr("ServiceSubnet", "%s overlaps the pod subnet %s", services, pods)
	}
	for i, san := range p.CertSANs {
		if err := checkSAN(san); err != nil {
			return paramErr("CertSANs", "entry %d: %s", i, err)
		}
	}
	if err := checkToken("BootstrapToken", p.BootstrapToken); err != nil {
		return err
	}
	if p.BootstrapTokenTTL < 0 {
		return paramErr("BootstrapTokenTTL", "%s is negative", p.BootstrapTokenTTL)
	}
	if !path.IsAbs(p.CertificatesDir) {
		return paramErr("CertificatesDir", "%q is not an absolute path", p.CertificatesDir)
	}
	return checkCRISocket(p.CRISocket)
}

// validate checks in field order and returns the first problem.
func (p JoinParams) validate() error {
	if err := checkName("NodeName", p.NodeName); err != nil {
		return err
	}
	if err := checkEndpoint("ControlPlaneEndpoint", p.ControlPlaneEndpoint); err != nil {
		return err
	}
	if err := checkToken("Token", p.Token); err != nil {
		return err
	}
	if !caCertHashRE.MatchString(p.CACertHash) {
		return paramErr("CACertHash", "%q is not sha256: followed by 64 lowercase hex digits", p.CACertHash)
	}
	if p.ControlPlane || p.AdvertiseAddress != "" {
		if err := checkIP("AdvertiseAddress", p.AdvertiseAddress); err != nil {
			return err
		}
	}
	return checkCRISocket(p.CRISocket)
}

var (
	versionRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	// tokenRE is kubeadm's bootstrap token format, id.secret.
	tokenRE      = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	caCertHashRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	dnsLabelRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// checkName requires an RFC 1123 subdomain, the rule Kubernetes applies to Node names.
func checkName(field, s string) error {
	if s == "" {
		return paramErr(field, "is required")
	}
	if err := dnsSubdomain(s); err != nil {
		return paramErr(field, "%q: %s", s, err)
	}
	return nil
}

func dnsSubdomain(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", label)
		}
		if !dnsLabelRE.MatchString(label) {
			return fmt.Errorf("label %q is not lowercase letters, digits and inner hyphens", label)
		}
	}
	return nil
}

// parseIP accepts a literal address without a zone: a zone means nothing to other hosts.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has a zone", s)
	}
	return a, nil
}

// checkIP also refuses the unspecified address, which kubeadm would take as "detect it".
func checkIP(field, s string) error {
	if s == "" {
		return paramErr(field, "is required")
	}
	a, err := parseIP(s)
	if err != nil {
		return paramErr(field, "%s", err)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return paramErr(field, "%s is not a unicast address", s)
	}
	return nil
}

// checkEndpoint requires host:port with an IP or DNS host and a numeric port. kubeadm also
// takes a bare host, but then every node would depend on its default port.
func checkEndpoint(field, s string) error {
	if s == "" {
		return paramErr(field, "is required")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return paramErr(field, "%q is not host:port", s)
	}
	if _, err := parseIP(host); err != nil {
		if dnsSubdomain(host) != nil {
			return paramErr(field, "host %q is neither an IP address nor a DNS name", host)
		}
	}
	if !isDigits(port) {
		return paramErr(field, "port %q is not a number", port)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return paramErr(field, "port %s is out of range 1-65535", port)
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// parseCIDR wants the network address itself (10.244.0.0/16, not 10.244.1.2/16), so that what
// we render is what the cluster uses.
func parseCIDR(field, s string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, paramErr(field, "%q is not a CIDR (dual-stack lists are not supported)", s)
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, paramErr(field, "%s is not a network address; did you mean %s?", s, pfx.Masked())
	}
	return pfx, nil
}

// checkPodSubnet applies kubeadm's limits for the default node mask (/24 for IPv4, /64 for
// IPv6): the subnet must hold at least one node range and at most 2^16 of them.
func checkPodSubnet(s string) (netip.Prefix, error) {
	pfx, err := parseCIDR("PodSubnet", s)
	if err != nil {
		return pfx, err
	}
	nodeMask := 24
	if pfx.Addr().Is6() {
		nodeMask = 64
	}
	if pfx.Bits() > nodeMask || nodeMask-pfx.Bits() > 16 {
		return pfx, paramErr("PodSubnet", "%s: the prefix length must be between /%d and /%d", s, nodeMask-16, nodeMask)
	}
	return pfx, nil
}

// checkServiceSubnet applies kubeadm's (and the API server's) limits: at most 20 host bits,
// and room for the cluster's own service IPs.
func checkServiceSubnet(s string) (netip.Prefix, error) {
	pfx, err := parseCIDR("ServiceSubnet", s)
	if err != nil {
		return pfx, err
	}
	hostBits := pfx.Addr().BitLen() - pfx.Bits()
	if hostBits > 20 || hostBits < 4 {
		return pfx, paramErr("ServiceSubnet", "%s: the prefix length must be between /%d and /%d",
			s, pfx.Addr().BitLen()-20, pfx.Addr().BitLen()-4)
	}
	return pfx, nil
}

// checkSAN accepts what kubeadm accepts for certSANs: an IP, a DNS name, or *.a DNS name.
func checkSAN(s string) error {
	if _, err := parseIP(s); err == nil {
		return nil
	}
	name := strings.TrimPrefix(s, "*.")
	if s == "" || dnsSubdomain(name) != nil {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", s)
	}
	return nil
}

func checkToken(field, s string) error {
	if !tokenRE.MatchString(s) {
		return paramErr(field, "is not of the form [a-z0-9]{6}.[a-z0-9]{16}")
	}
	return nil
}

// checkCRISocket requires the unix:// URL form; kubeadm rewrites a bare path with a warning.
func checkCRISocket(s string) error {
	p, ok := strings.CutPrefix(s, "unix://")
	if !ok || !path.IsAbs(p) {
		return paramErr("CRISocket", "%q is not a unix:// URL with an absolute path", s)
	}
	return nil
}
