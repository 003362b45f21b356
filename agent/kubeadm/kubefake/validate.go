package kubefake

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of kubeadm v1beta4 (cmd/kubeadm/app/apis/kubeadm/v1beta4/defaults.go).
const (
	defaultServiceSubnet   = "10.96.0.0/12"
	defaultDNSDomain       = "cluster.local"
	defaultCertificatesDir = "/etc/kubernetes/pki"
	defaultImageRepository = "registry.k8s.io"
	defaultClusterName     = "kubernetes"
	defaultEtcdDataDir     = "/var/lib/etcd"
	defaultCRISocket       = "unix:///var/run/containerd/containerd.sock"
	defaultBindPort        = 6443
	defaultTokenTTL        = 24 * time.Hour
	defaultNodeGroup       = "system:bootstrappers:kubeadm:default-node-token"
)

var (
	tokenRE     = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)
	tokenGroup  = regexp.MustCompile(`^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$`)
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// tokenPattern is how kubeadm quotes the bootstrap token format in its messages.
const tokenPattern = `\A([a-z0-9]{6})\.([a-z0-9]{16})\z`

// fieldErrors collects validation failures worded like apimachinery's field.Error, which
// is what kubeadm prints for an invalid configuration.
type fieldErrors []string

func (f *fieldErrors) invalid(path string, value any, detail string) {
	*f = append(*f, fmt.Sprintf("%s: Invalid value: %s: %s", path, formatValue(value), detail))
}

func (f *fieldErrors) required(path, detail string) {
	*f = append(*f, fmt.Sprintf("%s: Required value: %s", path, detail))
}

func (f *fieldErrors) unsupported(path, value string, supported ...string) {
	q := make([]string, len(supported))
	for i, s := range supported {
		q[i] = strconv.Quote(s)
	}
	*f = append(*f, fmt.Sprintf("%s: Unsupported value: %q: supported values: %s", path, value, strings.Join(q, ", ")))
}

// err aggregates like apimachinery's utilerrors.Aggregate: one error alone, more in brackets.
func (f fieldErrors) err() error {
	switch len(f) {
	case 0:
		return nil
	case 1:
		return errors.New(f[0])
	default:
		return fmt.Errorf("[%s]", strings.Join(f, ", "))
	}
}

func formatValue(v any) string {
	switch t := v.(type) {
	case string:
		return strconv.Quote(t)
	case int, int32, int64, bool:
		return fmt.Sprint(t)
	default:
		return fmt.Sprintf("%#v", t)
	}
}

// notSimulated marks a valid input the fake deliberately does not emulate.
func notSimulated(what string) error {
	return fmt.Errorf("fakekube: %s is not simulated", what)
}

// initConfig is a validated InitConfiguration + ClusterConfiguration with kubeadm's
// defaults applied.
type initConfig struct {
	nodeName        string
	criSocket       string
	taints          []taint
	advertise       string
	bindPort        int
	endpoint        string // host:port
	certDir         string
	etcdDataDir     string
	serviceSubnet   string
	podSubnet       string
	dnsDomain       string
	clusterName     string
	imageRepo       string
	version         string
	certSANs        []string
	tokens          []tokenSpec
	ignorePreflight []string
	// versionTooNew is kubeadm's KubernetesVersion preflight finding, reported in preflight.
	versionTooNew string
}

// tokenSpec is a bootstrap token to create, validated.
type tokenSpec struct {
	id, secret  string
	ttl         time.Duration // 0: never expires
	expires     time.Time     // set instead of ttl when the config gives one
	usages      []string
	groups      []string
	description string
}

func (t tokenSpec) String() string { return t.id + "." + t.secret }

// loadInitConfig decodes and validates an init configuration file for a fake of the
// given version.
func loadInitConfig(data []byte, fakeVersion string) (*initConfig, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var ic initConfiguration
	var cc clusterConfiguration
	var haveInit, haveCluster bool
	for _, d := range docs {
		if err := checkKubeadmDocument(d.gvk, "InitConfiguration", "ClusterConfiguration"); err != nil {
			return nil, err
		}
		switch d.gvk.kind {
		case "InitConfiguration":
			err, haveInit = decodeStrict(d, &ic), true
		case "ClusterConfiguration":
			err, haveCluster = decodeStrict(d, &cc), true
		}
		if err != nil {
			return nil, err
		}
	}
	if !haveInit && !haveCluster {
		return nil, errors.New("no InitConfiguration or ClusterConfiguration kind was found in the configuration file")
	}

	c := &initConfig{
		nodeName:        ic.NodeRegistration.Name,
		taints:          ic.NodeRegistration.Taints,
		advertise:       ic.LocalAPIEndpoint.AdvertiseAddress,
		bindPort:        int(ic.LocalAPIEndpoint.BindPort),
		endpoint:        cc.ControlPlaneEndpoint,
		certDir:         orDefault(cc.CertificatesDir, defaultCertificatesDir),
		serviceSubnet:   orDefault(cc.Networking.ServiceSubnet, defaultServiceSubnet),
		podSubnet:       cc.Networking.PodSubnet,
		dnsDomain:       orDefault(cc.Networking.DNSDomain, defaultDNSDomain),
		clusterName:     orDefault(cc.ClusterName, defaultClusterName),
		imageRepo:       orDefault(cc.ImageRepository, defaultImageRepository),
		version:         cc.KubernetesVersion,
		certSANs:        cc.APIServer.CertSANs,
		criSocket:       orDefault(ic.NodeRegistration.CRISocket, defaultCRISocket),
		ignorePreflight: ic.NodeRegistration.IgnorePreflightErrors,
		etcdDataDir:     defaultEtcdDataDir,
	}
	if c.bindPort == 0 {
		c.bindPort = defaultBindPort
	}
	if ic.NodeRegistration.Taints == nil {
		c.taints = []taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}}
	}

	var fe fieldErrors
	// The order follows kubeadm's ValidateInitConfiguration.
	validateNodeRegistration(&fe, &ic.NodeRegistration, "nodeRegistration")
	c.tokens = validateBootstrapTokens(&fe, ic.BootstrapTokens)
	validateCluster(&fe, &cc, c)
	validateAPIEndpoint(&fe, ic.LocalAPIEndpoint, "localAPIEndpoint")
	validateCertificateKey(&fe, ic.CertificateKey, "certificateKey")
	if err := fe.err(); err != nil {
		return nil, err
	}
	if err := checkVersion(c, fakeVersion); err != nil {
		return nil, err
	}
	if len(ic.SkipPhases) > 0 {
		return nil, notSimulated("InitConfiguration.skipPhases")
	}
	if ic.Patches != nil {
		return nil, notSimulated("InitConfiguration.patches")
	}
	if cc.Etcd.External != nil {
		return nil, notSimulated("external etcd (ClusterConfiguration.etcd.external)")
	}
	if cc.Etcd.Local != nil && cc.Etcd.Local.DataDir != "" {
		c.etcdDataDir = cc.Etcd.Local.DataDir
	}
	return c, nil
}

// kubeadmKinds are the kinds of kubeadm's configuration API.
var kubeadmKinds = []string{"InitConfiguration", "ClusterConfiguration", "JoinConfiguration", "ResetConfiguration", "UpgradeConfiguration"}

// checkKubeadmDocument refuses a document the command cannot use: an old or experimental
// kubeadm API, a kind kubeadm does not have, and (stricter than kubeadm, which ignores
// them with a warning) documents meant for another command or for a component.
func checkKubeadmDocument(g gvk, allowed ...string) error {
	if g.group != "kubeadm.k8s.io" {
		return notSimulated(fmt.Sprintf("configuration document %s (only %s are)", g.goString(), strings.Join(allowed, " and ")))
	}
	if err := checkAPIVersion(g); err != nil {
		return err
	}
	if g.groupVersion() != kubeadmGroupVersion || !slices.Contains(kubeadmKinds, g.kind) {
		return fmt.Errorf("unknown configuration %s", g.goString())
	}
	if !slices.Contains(allowed, g.kind) {
		return notSimulated(fmt.Sprintf("configuration document %s here (only %s are)", g.goString(), strings.Join(allowed, " and ")))
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func validateNodeRegistration(fe *fieldErrors, nr *nodeRegistrationOptions, p string) {
	if nr.Name == "" {
		fe.required(p, "--node-name or .nodeRegistration.name in the config file is a required value. It seems like this value couldn't be automatically detected in your environment, please specify the desired value using the CLI or config file.")
	} else if msg := checkSubdomain(nr.Name); msg != "" {
		fe.invalid(p+".name", nr.Name, msg)
	}
	if nr.CRISocket != "" {
		validateSocket(fe, nr.CRISocket, p+".criSocket")
	}
	for i, a := range nr.KubeletExtraArgs {
		if a.Name == "" {
			fe.invalid(fmt.Sprintf("%s.kubeletExtraArgs[%d].name", p, i), a.Name, "argument name must not be empty")
		}
	}
	switch nr.ImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		fe.unsupported(p+".imagePullPolicy", nr.ImagePullPolicy, "Always", "IfNotPresent", "Never")
	}
}

// checkSubdomain returns apimachinery's IsDNS1123Subdomain message, or "".
func checkSubdomain(s string) string {
	if len(s) > 253 {
		return "must be no more than 253 characters"
	}
	if !subdomainRE.MatchString(s) {
		return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
	}
	return ""
}

func validateSocket(fe *fieldErrors, socket, p string) {
	u, err := url.Parse(socket)
	switch {
	case err != nil:
		fe.invalid(p, socket, fmt.Sprintf("URL parsing error: %v", err))
	case u.Scheme == "" && !path.IsAbs(u.Path):
		fe.invalid(p, socket, "path is not absolute")
	case u.Scheme != "" && u.Scheme != "unix":
		fe.invalid(p, socket, fmt.Sprintf("URL scheme %s is not supported", u.Scheme))
	}
}

func validateBootstrapTokens(fe *fieldErrors, bts []bootstrapToken) []tokenSpec {
	var out []tokenSpec
	for i, bt := range bts {
		p := fmt.Sprintf("bootstrapTokens[%d]", i)
		t := tokenSpec{description: bt.Description, usages: bt.Usages, groups: bt.Groups, ttl: defaultTokenTTL}
		if m := tokenRE.FindStringSubmatch(bt.Token); m == nil {
			fe.invalid(p+".token", bt.Token, "the bootstrap token is invalid")
		} else {
			t.id, t.secret = m[1], m[2]
		}
		if t.usages == nil {
			t.usages = []string{"signing", "authentication"}
		}
		if t.groups == nil {
			t.groups = []string{defaultNodeGroup}
		}
		if msg := checkTokenUsages(t.usages); msg != "" {
			fe.invalid(p+".usages", t.usages, msg)
		}
		if msg := checkTokenGroups(t.usages, t.groups); msg != "" {
			fe.invalid(p+".groups", t.groups, msg)
		}
		switch {
		case bt.TTL != nil && bt.Expires != nil:
			fe.invalid(p, "", "the BootstrapToken .TTL and .Expires fields are mutually exclusive")
		case bt.Expires != nil:
			t.ttl, t.expires = 0, *bt.Expires
		case bt.TTL != nil:
			t.ttl = bt.TTL.Duration
		}
		out = append(out, t)
	}
	return out
}

func checkTokenUsages(usages []string) string {
	for _, u := range usages {
		if u != "signing" && u != "authentication" {
			return fmt.Sprintf("invalid bootstrap token usage string: %s, valid usage options: signing,authentication", u)
		}
	}
	return ""
}

func checkTokenGroups(usages, groups []string) string {
	if len(groups) > 0 && !slices.Contains(usages, "authentication") {
		return `token groups cannot be specified unless --usages includes "authentication"`
	}
	for _, g := range groups {
		if !tokenGroup.MatchString(g) {
			return fmt.Sprintf("bootstrap group %q is invalid (must match %s)", g, `\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z`)
		}
	}
	return ""
}

func validateCluster(fe *fieldErrors, cc *clusterConfiguration, c *initConfig) {
	validateNetworking(fe, c)
	for _, san := range cc.APIServer.CertSANs {
		if !isIPOrDNSOrWildcard(san) {
			fe.invalid("apiServer.certSANs", san, "altname is not a valid IP address, DNS label or a DNS label with subdomain wildcards")
		}
	}
	if !path.IsAbs(c.certDir) {
		fe.invalid("certificatesDir", c.certDir, "path is not absolute")
	}
	for k := range cc.FeatureGates {
		// RootlessControlPlane is kubeadm v1.37's only feature gate.
		if k != "RootlessControlPlane" {
			fe.invalid("featureGates", cc.FeatureGates, k+" is not a valid feature name.")
		}
	}
	if cc.ControlPlaneEndpoint == "" {
		fe.required("controlPlaneEndpoint", "fakekube: deployme always sets a stable host:port control-plane endpoint")
	} else if !isHostPort(cc.ControlPlaneEndpoint) {
		fe.invalid("controlPlaneEndpoint", cc.ControlPlaneEndpoint, "endpoint is not valid")
	}
	if cc.Etcd.Local != nil && cc.Etcd.External != nil {
		fe.invalid("etcd", "", ".Etcd.Local and .Etcd.External are mutually exclusive")
	}
	switch cc.EncryptionAlgorithm {
	case "", "ECDSA-P256", "ECDSA-P384", "RSA-2048", "RSA-3072", "RSA-4096":
	default:
		fe.invalid("encryptionAlgorithm", cc.EncryptionAlgorithm, "invalid encryption algorithm")
	}
}

func validateNetworking(fe *fieldErrors, c *initConfig) {
	if msg := checkSubdomain(c.dnsDomain); msg != "" {
		fe.invalid("networking.dnsDomain", c.dnsDomain, msg)
	}
	validateSubnets(fe, c.serviceSubnet, "networking.serviceSubnet")
	if c.podSubnet != "" {
		validateSubnets(fe, c.podSubnet, "networking.podSubnet")
		validatePodNodeMask(fe, c.podSubnet)
	}
}

func validateSubnets(fe *fieldErrors, s, p string) {
	parts := strings.Split(s, ",")
	var prefixes []netip.Prefix
	for _, part := range parts {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			fe.invalid(p, s, "couldn't parse subnet")
			return
		}
		prefixes = append(prefixes, pfx)
	}
	switch {
	case len(prefixes) > 2:
		fe.invalid(p, s, "expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking")
	case len(prefixes) == 2 && prefixes[0].Addr().Is4() == prefixes[1].Addr().Is4():
		fe.invalid(p, s, "expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking")
	}
}

// validatePodNodeMask mirrors kubeadm's check that the controller manager can carve node
// CIDRs (/24 for IPv4, /64 for IPv6) out of the pod subnet.
func validatePodNodeMask(fe *fieldErrors, s string) {
	for _, part := range strings.Split(s, ",") {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return
		}
		nodeMask := 24
		if pfx.Addr().Is6() {
			nodeMask = 64
		}
		switch {
		case pfx.Bits() > nodeMask:
			fe.invalid("networking.podSubnet", pfx.Masked().String(), fmt.Sprintf("the size of pod subnet with mask %d is smaller than the size of node subnet with mask %d", pfx.Bits(), nodeMask))
		case nodeMask-pfx.Bits() > 16:
			fe.invalid("networking.podSubnet", pfx.Masked().String(), fmt.Sprintf("pod subnet mask (%d) and node-mask (%d) difference is greater than 16", pfx.Bits(), nodeMask))
		}
	}
}

func validateAPIEndpoint(fe *fieldErrors, e apiEndpoint, p string) {
	if e.AdvertiseAddress == "" {
		fe.required(p+".advertiseAddress", "fakekube: the advertise address is not auto-detected; deployme always sets it")
	} else if net.ParseIP(e.AdvertiseAddress) == nil {
		fe.invalid(p+".advertiseAddress", e.AdvertiseAddress, "ip address is not valid")
	}
	if e.BindPort < 0 || e.BindPort > 65535 {
		fe.invalid(p+".bindPort", e.BindPort, "port number is not valid")
	}
}

func validateCertificateKey(fe *fieldErrors, key, p string) {
	if key == "" {
		return
	}
	b, err := hex.DecodeString(key)
	if err != nil {
		fe.invalid(p, key, fmt.Sprintf("certificate key decoding error: %v", err))
		return
	}
	if len(b) != 32 {
		fe.invalid(p, key, fmt.Sprintf("invalid certificate key size %d, the key must be an AES key of size 32", len(b)))
	}
}

func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return false
	}
	return net.ParseIP(host) != nil || checkSubdomain(host) == ""
}

func isIPOrDNSOrWildcard(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	return checkSubdomain(strings.TrimPrefix(s, "*.")) == ""
}

// semver is the part of a Kubernetes version the fake compares.
type semver struct{ major, minor, patch int }

func parseVersion(s string) (semver, bool) {
	rest, ok := strings.CutPrefix(s, "v")
	if !ok {
		return semver{}, false
	}
	if i := strings.IndexAny(rest, "-+"); i >= 0 {
		rest = rest[:i]
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return semver{}, false
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return semver{}, false
		}
		v[i] = n
	}
	return semver{v[0], v[1], v[2]}, true
}

// checkVersion enforces that the cluster runs the fake's minor version: older minors are
// refused as kubeadm refuses them, newer ones become a preflight error (the real kubeadm
// only warns; deployme never means to deploy a control plane newer than its kubeadm).
func checkVersion(c *initConfig, fakeVersion string) error {
	if c.version == "" {
		return errors.New("fakekube: ClusterConfiguration.kubernetesVersion must be set: the fake cannot look up the stable release on the internet")
	}
	want, ok := parseVersion(fakeVersion)
	if !ok {
		return fmt.Errorf("fakekube: the fake's own version %q is not a Kubernetes version", fakeVersion)
	}
	got, ok := parseVersion(c.version)
	if !ok {
		return fmt.Errorf("version %q doesn't match patterns for neither semantic version nor labels (stable, latest, ...)", c.version)
	}
	if got.major < want.major || (got.major == want.major && got.minor < want.minor) {
		return fmt.Errorf("this version of kubeadm only supports deploying clusters with the control plane version >= %d.%d.0. Current version: %s", want.major, want.minor, c.version)
	}
	if got.major > want.major || got.minor > want.minor {
		c.versionTooNew = fmt.Sprintf("Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes version: %s. Kubeadm version: %d.%d.x", strings.TrimPrefix(c.version, "v"), want.major, want.minor)
	}
	return nil
}

// joinConfig is a validated JoinConfiguration with kubeadm's defaults applied.
type joinConfig struct {
	nodeName        string
	criSocket       string
	taints          []taint
	caCertPath      string
	endpoint        string
	token           string
	tlsToken        string
	caCertHashes    []string
	controlPlane    bool
	advertise       string
	bindPort        int
	ignorePreflight []string
}

func loadJoinConfig(data []byte) (*joinConfig, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var jc joinConfiguration
	found := false
	for _, d := range docs {
		if err := checkKubeadmDocument(d.gvk, "JoinConfiguration"); err != nil {
			return nil, err
		}
		if err := decodeStrict(d, &jc); err != nil {
			return nil, err
		}
		found = true
	}
	if !found {
		return nil, errors.New("no JoinConfiguration kind was found in the configuration file")
	}

	c := &joinConfig{
		nodeName:        jc.NodeRegistration.Name,
		criSocket:       orDefault(jc.NodeRegistration.CRISocket, defaultCRISocket),
		taints:          jc.NodeRegistration.Taints,
		caCertPath:      orDefault(jc.CACertPath, defaultCertificatesDir+"/ca.crt"),
		tlsToken:        jc.Discovery.TLSBootstrapToken,
		ignorePreflight: jc.NodeRegistration.IgnorePreflightErrors,
	}
	var fe fieldErrors
	// The order follows kubeadm's ValidateJoinConfiguration.
	d := jc.Discovery
	switch {
	case d.BootstrapToken == nil && d.File == nil:
		fe.invalid("discovery", "", "bootstrapToken or file must be set")
	case d.BootstrapToken != nil && d.File != nil:
		fe.invalid("discovery", "", "bootstrapToken and file cannot both be set")
	}
	if bt := d.BootstrapToken; bt != nil {
		c.endpoint, c.token, c.caCertHashes = bt.APIServerEndpoint, bt.Token, bt.CACertHashes
		if c.tlsToken == "" {
			c.tlsToken = bt.Token
		}
		if bt.APIServerEndpoint == "" {
			fe.required("discovery.bootstrapToken", "APIServerEndpoint is not set")
		}
		if len(bt.CACertHashes) == 0 && !bt.UnsafeSkipCAVerification {
			fe.invalid("discovery.bootstrapToken.caCertHashes", "", "using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue")
		}
		if !tokenRE.MatchString(bt.Token) {
			fe.invalid("discovery.bootstrapToken.token", bt.Token, "the bootstrap token is invalid")
		}
		if _, _, err := net.SplitHostPort(bt.APIServerEndpoint); err != nil {
			fe.invalid("discovery.bootstrapToken.apiServerEndpoint", bt.APIServerEndpoint, err.Error())
		}
		if !tokenRE.MatchString(c.tlsToken) {
			fe.invalid("discovery.tlsBootstrapToken", c.tlsToken, "the bootstrap token is invalid")
		}
	}
	validateNodeRegistration(&fe, &jc.NodeRegistration, "nodeRegistration")
	if cp := jc.ControlPlane; cp != nil {
		c.controlPlane = true
		c.advertise = cp.LocalAPIEndpoint.AdvertiseAddress
		c.bindPort = int(cp.LocalAPIEndpoint.BindPort)
		validateAPIEndpoint(&fe, cp.LocalAPIEndpoint, "controlPlane.localAPIEndpoint")
		validateCertificateKey(&fe, cp.CertificateKey, "controlPlane.certificateKey")
	}
	if !path.IsAbs(c.caCertPath) || !strings.HasSuffix(c.caCertPath, ".crt") {
		fe.invalid("caCertPath", c.caCertPath, "the ca certificate path must be an absolute path")
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	if c.bindPort == 0 {
		c.bindPort = defaultBindPort
	}
	switch {
	case d.File != nil:
		return nil, notSimulated("file discovery (JoinConfiguration.discovery.file)")
	case d.BootstrapToken.UnsafeSkipCAVerification:
		return nil, notSimulated("discovery.bootstrapToken.unsafeSkipCAVerification: deployme always pins the cluster CA")
	case jc.ControlPlane != nil && jc.ControlPlane.CertificateKey != "":
		return nil, notSimulated("controlPlane.certificateKey (certificate download): deployme places the CAs before joining")
	case len(jc.SkipPhases) > 0:
		return nil, notSimulated("JoinConfiguration.skipPhases")
	case jc.Patches != nil:
		return nil, notSimulated("JoinConfiguration.patches")
	}
	return c, nil
}
