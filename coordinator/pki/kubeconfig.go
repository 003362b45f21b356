package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	adminUser = "deployme-admin"
	// kubeadm binds this group to cluster-admin through a ClusterRoleBinding it creates at
	// init, which, unlike system:masters, can be revoked without re-keying the cluster.
	adminGroup = "kubeadm:cluster-admins"
)

// AdminKubeconfig writes a kubeconfig for cluster clusterName whose server is server (e.g.
// https://10.0.0.5:6443), with the CA embedded and a fresh client certificate signed by the
// cluster CA: CN "deployme-admin", O "kubeadm:cluster-admins", client auth only, valid from
// now-5m to now+ttl. The context is "deployme-admin@<clusterName>", the user "deployme-admin".
// Certificates carry whole seconds, so NotAfter is now+ttl truncated to the second.
func AdminKubeconfig(p *ClusterPKI, clusterName, server string, ttl time.Duration, now time.Time) ([]byte, error) {
	if clusterName == "" {
		return nil, errors.New("admin kubeconfig: empty cluster name")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("admin kubeconfig: ttl %v is not positive", ttl)
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("admin kubeconfig: server %q is not an https URL", server)
	}
	caCert, caKey, err := parseCAPair(p.CACert, p.CAKey)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: cluster CA: %w", err)
	}
	notAfter := now.Add(ttl)
	// Beyond the CA's own lifetime the certificate would be issued fine and then rejected by
	// every API server, which is far harder to diagnose than refusing here.
	if notAfter.After(caCert.NotAfter) {
		return nil, fmt.Errorf("admin kubeconfig: ttl %v outlives the cluster CA (expires %v)", ttl, caCert.NotAfter)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: key: %w", err)
	}
	serial, err := newSerial128(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: adminUser, Organization: []string{adminGroup}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: certificate: %w", err)
	}
	keyPEM, err := encodeECKey(key)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: key: %w", err)
	}

	contextName := adminUser + "@" + clusterName
	cfg := clientcmdapi.NewConfig()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = server
	cluster.CertificateAuthorityData = append([]byte(nil), p.CACert...)
	cfg.Clusters[clusterName] = cluster
	user := clientcmdapi.NewAuthInfo()
	user.ClientCertificateData = pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: certDER})
	user.ClientKeyData = keyPEM
	cfg.AuthInfos[adminUser] = user
	kctx := clientcmdapi.NewContext()
	kctx.Cluster = clusterName
	kctx.AuthInfo = adminUser
	cfg.Contexts[contextName] = kctx
	cfg.CurrentContext = contextName

	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: encode: %w", err)
	}
	return out, nil
}
