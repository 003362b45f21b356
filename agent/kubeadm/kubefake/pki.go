package kubefake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// keyPair is a certificate with its private key.
type keyPair struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

// caFiles are the CAs and keys the coordinator places before init or a control-plane join
// (docs/steps.md, the pki step), with the names kubeadm uses for them in its messages.
var caFiles = []struct{ base, ux string }{
	{"ca", "CA"},
	{"front-proxy-ca", "front-proxy CA"},
	{"etcd/ca", "etcd CA"},
}

// loadCAs checks every CA and the service-account key pair in certDir, worded like
// kubeadm's SharedCertificateExists.
func loadCAs(h *hostFS, certDir string) (map[string]*keyPair, error) {
	cas := map[string]*keyPair{}
	var errs []string
	for i, f := range caFiles {
		kp, err := loadCertAndKey(h, certDir, f.base)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("failure loading certificate for %s: %v", f.ux, err))
		case !kp.cert.IsCA:
			errs = append(errs, fmt.Sprintf("certificate %s is not a CA", f.ux))
		default:
			cas[f.base] = kp
		}
		// kubeadm checks the service-account keys right after the cluster CA.
		if i == 0 {
			if err := checkServiceAccountKeys(h, certDir); err != nil {
				errs = append(errs, fmt.Sprintf("failure loading key for service account: %v", err))
			}
		}
	}
	if len(errs) == 1 {
		return nil, errors.New(errs[0])
	}
	if len(errs) > 1 {
		return nil, fmt.Errorf("[%s]", strings.Join(errs, ", "))
	}
	return cas, nil
}

func loadCertAndKey(h *hostFS, dir, base string) (*keyPair, error) {
	certPath := path.Join(dir, base+".crt")
	keyPath := path.Join(dir, base+".key")
	certPEM, err := h.readFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("couldn't load the certificate file %s: %w", certPath, err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("couldn't load the certificate file %s: %w", certPath, err)
	}
	keyPEM, err := h.readFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("couldn't load the private key file %s: %w", keyPath, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the private key file %s is neither in RSA nor ECDSA format", keyPath)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("fakekube: the certificate %s does not match the private key %s", certPath, keyPath)
	}
	return &keyPair{cert: cert, certPEM: certPEM, key: key, keyPEM: keyPEM}, nil
}

// checkServiceAccountKeys wants sa.key and sa.pub to be a matching key pair.
func checkServiceAccountKeys(h *hostFS, dir string) error {
	keyPath, pubPath := path.Join(dir, "sa.key"), path.Join(dir, "sa.pub")
	keyPEM, err := h.readFile(keyPath)
	if err != nil {
		return fmt.Errorf("couldn't load the private key file %s: %w", keyPath, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("the private key file %s is neither in RSA nor ECDSA format", keyPath)
	}
	pubPEM, err := h.readFile(pubPath)
	if err != nil {
		return fmt.Errorf("couldn't load the public key file %s: %w", pubPath, err)
	}
	block, _ := pem.Decode(pubPEM)
	if block == nil || block.Type != "PUBLIC KEY" {
		return fmt.Errorf("couldn't load the public key file %s: data does not contain a valid RSA or ECDSA public key", pubPath)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("couldn't load the public key file %s: %w", pubPath, err)
	}
	if !publicKeysEqual(pub, key.Public()) {
		return fmt.Errorf("fakekube: the public key %s does not match the private key %s", pubPath, keyPath)
	}
	return nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("data does not contain any valid RSA or ECDSA certificates")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("not a signing key")
		}
		return s, nil
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	// Every public key type of crypto/* has this method.
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// caHash is the discovery-token-ca-cert-hash of a CA: the SHA-256 of its
// SubjectPublicKeyInfo, as kubeadm's pubkeypin computes it.
func caHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// issue signs a fresh certificate for a new ECDSA key. ECDSA keeps the fake fast even under
// the race detector; kubeadm's default RSA-2048 buys a test nothing.
func issue(ca *keyPair, cn string, orgs []string, usage x509.ExtKeyUsage, dnsNames []string, ips []net.IP) (*keyPair, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(365 * 24 * time.Hour)
	if ca.cert.NotAfter.Before(notAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return &keyPair{cert: cert, certPEM: certPEM, key: key, keyPEM: keyPEM}, keyPEM, nil
}

// kubeconfig is the clientcmd v1 Config format, limited to what kubeadm writes.
type kubeconfig struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []namedCluster `json:"clusters"`
	Contexts       []namedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
	Preferences    struct{}       `json:"preferences"`
	Users          []namedUser    `json:"users"`
}

type namedCluster struct {
	Name    string `json:"name"`
	Cluster struct {
		Server                   string `json:"server"`
		CertificateAuthorityData []byte `json:"certificate-authority-data,omitempty"`
	} `json:"cluster"`
}

type namedContext struct {
	Name    string `json:"name"`
	Context struct {
		Cluster string `json:"cluster"`
		User    string `json:"user"`
	} `json:"context"`
}

type namedUser struct {
	Name string `json:"name"`
	User struct {
		ClientCertificateData []byte `json:"client-certificate-data,omitempty"`
		ClientKeyData         []byte `json:"client-key-data,omitempty"`
		ClientCertificate     string `json:"client-certificate,omitempty"`
		ClientKey             string `json:"client-key,omitempty"`
	} `json:"user"`
}

// renderKubeconfig writes a kubeconfig whose client certificate is embedded, as kubeadm's
// admin.conf is. (kubeadm's kubelet.conf instead points at
// /var/lib/kubelet/pki/kubelet-client-current.pem; the fake embeds it too, because a path
// inside the rootfs would not resolve for a kubectl running outside it.)
func renderKubeconfig(clusterName, server string, ca []byte, user string, cert, key []byte) ([]byte, error) {
	ctx := user + "@" + clusterName
	var kc kubeconfig
	kc.APIVersion, kc.Kind, kc.CurrentContext = "v1", "Config", ctx
	var c namedCluster
	c.Name = clusterName
	c.Cluster.Server = server
	c.Cluster.CertificateAuthorityData = ca
	kc.Clusters = []namedCluster{c}
	var x namedContext
	x.Name = ctx
	x.Context.Cluster, x.Context.User = clusterName, user
	kc.Contexts = []namedContext{x}
	var u namedUser
	u.Name = user
	u.User.ClientCertificateData, u.User.ClientKeyData = cert, key
	kc.Users = []namedUser{u}
	return yaml.Marshal(kc)
}

// clientConfig is what a client takes from a kubeconfig's current context.
type clientConfig struct {
	endpoint string // host:port of the server
	ca       []byte
	cert     *x509.Certificate
}

// parseKubeconfig reads the current context of a kubeconfig the way clientcmd would
// resolve it, failing with clientcmd-like messages.
func parseKubeconfig(data []byte) (*clientConfig, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("couldn't get version/kind; json parse error: %w", err)
	}
	if kc.CurrentContext == "" {
		return nil, errors.New("invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER environment variable")
	}
	i := slices.IndexFunc(kc.Contexts, func(c namedContext) bool { return c.Name == kc.CurrentContext })
	if i < 0 {
		return nil, fmt.Errorf("invalid configuration: context was not found for specified context: %s", kc.CurrentContext)
	}
	ctx := kc.Contexts[i].Context
	ci := slices.IndexFunc(kc.Clusters, func(c namedCluster) bool { return c.Name == ctx.Cluster })
	ui := slices.IndexFunc(kc.Users, func(u namedUser) bool { return u.Name == ctx.User })
	if ci < 0 {
		return nil, fmt.Errorf("invalid configuration: cluster %q not found", ctx.Cluster)
	}
	cl := kc.Clusters[ci].Cluster
	u, err := url.Parse(cl.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("invalid configuration: server %q is not an https URL", cl.Server)
	}
	cc := &clientConfig{endpoint: u.Host, ca: cl.CertificateAuthorityData}
	if ui >= 0 {
		user := kc.Users[ui].User
		if user.ClientCertificate != "" {
			return nil, notSimulated("a kubeconfig with a client-certificate file path (the fake embeds client certificates)")
		}
		if len(user.ClientCertificateData) > 0 {
			cert, err := parseCertPEM(user.ClientCertificateData)
			if err != nil {
				return nil, fmt.Errorf("unable to load client certificate: %w", err)
			}
			key, err := parseKeyPEM(user.ClientKeyData)
			if err != nil || !publicKeysEqual(cert.PublicKey, key.Public()) {
				return nil, errors.New("tls: private key does not match public key")
			}
			cc.cert = cert
		}
	}
	return cc, nil
}

// errUnknownAuthority is what a client reports when the server's certificate is not
// signed by the CA in its kubeconfig.
var errUnknownAuthority = errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority")

// authenticate checks a client config against a cluster the way the API server (and the
// client's TLS) would: the kubeconfig must trust the cluster's CA and present a client
// certificate the cluster's CA signed. It returns the client's user and groups.
func authenticate(cl *cluster, cc *clientConfig) (user string, groups []string, err error) {
	caCert, err := parseCertPEM([]byte(cl.CACert))
	if err != nil {
		return "", nil, fmt.Errorf("fakekube: corrupt cluster CA in state: %w", err)
	}
	trusted, err := parseCertPEM(cc.ca)
	if err != nil || !trusted.Equal(caCert) {
		return "", nil, errUnknownAuthority
	}
	if cc.cert == nil {
		return "system:anonymous", []string{"system:unauthenticated"}, nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	if _, err := cc.cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", nil, errUnauthorized
	}
	return cc.cert.Subject.CommonName, cc.cert.Subject.Organization, nil
}

var errUnauthorized = errors.New("Unauthorized")

// isAdmin tells whether a client may manage secrets in kube-system: admin.conf's group
// (kubeadm:cluster-admins) or super-admin.conf's (system:masters).
func isAdmin(groups []string) bool {
	return slices.Contains(groups, "kubeadm:cluster-admins") || slices.Contains(groups, "system:masters")
}
