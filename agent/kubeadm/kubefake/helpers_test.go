package kubefake

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a cluster's shared PKI as the coordinator's pki step places it: three CAs
// and the service-account key pair, keyed by path inside the root.
type testPKI struct {
	files  map[string][]byte
	caHash string
}

func newCA(t *testing.T, cn string) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), cert
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	p := testPKI{files: map[string][]byte{}}
	for _, base := range []string{"ca", "front-proxy-ca", "etcd/ca"} {
		c, k, cert := newCA(t, "test-"+base)
		p.files["/etc/kubernetes/pki/"+base+".crt"] = c
		p.files["/etc/kubernetes/pki/"+base+".key"] = k
		if base == "ca" {
			sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
			p.caHash = "sha256:" + hex.EncodeToString(sum[:])
		}
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, _ := x509.MarshalECPrivateKey(sa)
	pubDER, _ := x509.MarshalPKIXPublicKey(sa.Public())
	p.files["/etc/kubernetes/pki/sa.key"] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})
	p.files["/etc/kubernetes/pki/sa.pub"] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	return p
}

// place writes the PKI into a host root, keys 0600 as the pki step does.
func (p testPKI) place(t *testing.T, root string) {
	t.Helper()
	for name, b := range p.files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		writeFile(t, root, name, string(b), mode)
	}
}

func writeFile(t *testing.T, root, name, content string, mode os.FileMode) {
	t.Helper()
	full := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

const (
	testEndpoint = "10.0.0.10:6443"
	testToken    = "abcdef.0123456789abcdef"
	initPath     = "/etc/deployme/kubeadm-init.yaml"
	joinPath     = "/etc/deployme/kubeadm-join.yaml"
	cniPath      = "/etc/deployme/cni.yaml"
)

// initConfigYAML is an init configuration like the agent renders, with the node's name
// and address; edit can change the text to break it.
func initConfigYAML(node, address string) string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: %s
  ttl: 10m0s
localAPIEndpoint:
  advertiseAddress: %s
  bindPort: 6443
nodeRegistration:
  criSocket: unix:///run/containerd/containerd.sock
  name: %s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
apiServer:
  certSANs:
  - api.test.example.com
  - 10.0.0.10
certificatesDir: /etc/kubernetes/pki
clusterName: test
controlPlaneEndpoint: %s
encryptionAlgorithm: ECDSA-P256
kubernetesVersion: v1.37.2
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
`, testToken, address, node, testEndpoint)
}

// joinConfigYAML is a join configuration; address != "" makes it a control-plane join.
func joinConfigYAML(node, token, caHash, address string) string {
	cp := ""
	if address != "" {
		cp = fmt.Sprintf("controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: %s\n    bindPort: 6443\n", address)
	}
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
%sdiscovery:
  bootstrapToken:
    apiServerEndpoint: %s
    caCertHashes:
    - %s
    token: %s
nodeRegistration:
  criSocket: unix:///run/containerd/containerd.sock
  name: %s
timeouts:
  discovery: 5m0s
`, cp, testEndpoint, caHash, token, node)
}

const cniManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: kube-flannel
---
# a comment-only document is skipped, as kubectl skips it
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-flannel-ds
  namespace: kube-flannel
spec:
  selector:
    matchLabels:
      app: flannel
`

// env is one fake "world": a state directory shared by any number of host roots.
type env struct {
	t     *testing.T
	state string
	pki   testPKI
	delay func(string) time.Duration
}

func newEnv(t *testing.T) *env {
	return &env{t: t, state: t.TempDir(), pki: newPKI(t)}
}

func (e *env) options(out *bytes.Buffer) Options {
	return Options{StateDir: e.state, Stdout: out, Delay: e.delay}
}

// kubeadm runs the fake kubeadm and returns its exit code and combined output.
func (e *env) kubeadm(args ...string) (int, string) {
	var out bytes.Buffer
	code := Kubeadm(context.Background(), args, e.options(&out))
	return code, out.String()
}

func (e *env) kubectl(args ...string) (int, string) {
	var out bytes.Buffer
	code := Kubectl(context.Background(), args, e.options(&out))
	return code, out.String()
}

// must fails the test unless the command succeeded.
func (e *env) must(code int, out string) string {
	e.t.Helper()
	if code != 0 {
		e.t.Fatalf("exit %d:\n%s", code, out)
	}
	return out
}

// host is a fresh root with what the coordinator puts there before kubeadm runs.
func (e *env) host(withPKI bool) string {
	root := e.t.TempDir()
	writeFile(e.t, root, "/etc/deployme/simulated-host.txt", "seeded\n", 0o644)
	if withPKI {
		e.pki.place(e.t, root)
	}
	return root
}

// initCluster runs init on a new control plane and returns its root.
func (e *env) initCluster(node, address string) string {
	e.t.Helper()
	root := e.host(true)
	writeFile(e.t, root, initPath, initConfigYAML(node, address), 0o600)
	e.must(e.kubeadm("init", "--config", initPath, "--rootfs", root, "--skip-token-print"))
	return root
}

// listFiles returns every regular file under root, relative, sorted.
func listFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, "/"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertContains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}
