package kubeadm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/deployme/deployme/agent/kubeadm"
	"github.com/deployme/deployme/coordinator/pki"
)

const (
	k8sVersion = "v1.37.2"
	// advertiseIP lives only inside the test's network namespace.
	advertiseIP = "10.250.0.10"
	// kubeadmTimeout bounds one kubeadm run. The dry run can spend ~10 s in its Hostname
	// check's DNS lookup when a resolver route exists; everything else takes about a second.
	kubeadmTimeout = 2 * time.Minute
)

// kubeadmBinary returns the kubeadm to test against: $DEPLOYME_KUBEADM, or tools/bin/kubeadm
// of this repository as built by `make kubeadm`.
func kubeadmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DEPLOYME_KUBEADM"); p != "" {
		// An explicit path that does not work is a broken setup, not a reason to skip.
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("DEPLOYME_KUBEADM: %v", err)
		}
		return p
	}
	p := filepath.Join(repoRoot(t), "tools", "bin", "kubeadm")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no kubeadm at %s: run `make kubeadm` (or set DEPLOYME_KUBEADM) to run this test", p)
	}
	return p
}

// repoRoot walks up from the package directory to the main module's go.mod; the nested
// tools/kubeadm module has its own module path and is not mistaken for it.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(mod, []byte("module github.com/deployme/deployme\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("main module's go.mod not found above the working directory")
		}
		dir = parent
	}
}

// runKubeadm runs kubeadm with args (prefixed by prefix, e.g. `ip netns exec NS`) and returns
// its combined output and error.
func runKubeadm(t *testing.T, env []string, prefix []string, bin string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kubeadmTimeout)
	defer cancel()
	argv := append(slices.Clone(prefix), bin)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("kubeadm %s: %v in %s", strings.Join(args, " "), exitDescription(err), time.Since(start).Round(time.Millisecond))
	return out, err
}

func exitDescription(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// tail keeps failure messages readable: the dry run prints over a thousand lines.
func tail(b []byte, lines int) string {
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// renderedConfigs are realistic renderings of the three configurations the agent writes.
type renderedConfigs struct {
	init, joinControlPlane, joinWorker []byte
}

func renderAll(t *testing.T, certificatesDir string) (renderedConfigs, *pki.ClusterPKI) {
	t.Helper()
	cluster, err := pki.NewClusterPKI("lab", time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := pki.CACertHash(cluster.CACert)
	if err != nil {
		t.Fatal(err)
	}
	initToken, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	joinToken, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	var rc renderedConfigs
	rc.init, err = kubeadm.RenderInit(kubeadm.InitParams{
		ClusterName:          "lab",
		KubernetesVersion:    k8sVersion,
		NodeName:             "cp1",
		AdvertiseAddress:     advertiseIP,
		ControlPlaneEndpoint: advertiseIP + ":6443",
		CertSANs:             []string{"api.lab.example.test", "10.250.0.100"},
		BootstrapToken:       initToken,
		BootstrapTokenTTL:    15 * time.Minute,
		CertificatesDir:      certificatesDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	rc.joinControlPlane, err = kubeadm.RenderJoin(kubeadm.JoinParams{
		NodeName:             "cp2",
		ControlPlaneEndpoint: advertiseIP + ":6443",
		Token:                joinToken,
		CACertHash:           hash,
		ControlPlane:         true,
		AdvertiseAddress:     "10.250.0.11",
	})
	if err != nil {
		t.Fatal(err)
	}
	rc.joinWorker, err = kubeadm.RenderJoin(kubeadm.JoinParams{
		NodeName:             "worker-1.lab.example.test",
		ControlPlaneEndpoint: "api.lab.example.test:6443",
		Token:                joinToken,
		CACertHash:           hash,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rc, cluster
}

// mutateDoc decodes the documents of a rendered file, lets change edit the one of the given
// kind, and encodes them again.
func mutateDoc(t *testing.T, rendered []byte, kind string, change func(doc map[string]any)) []byte {
	t.Helper()
	var out bytes.Buffer
	found := false
	for i, part := range strings.Split(string(rendered), "---\n") {
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(part), &doc); err != nil {
			t.Fatal(err)
		}
		if doc["kind"] == kind {
			change(doc)
			found = true
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	if !found {
		t.Fatalf("no %s document in\n%s", kind, rendered)
	}
	return out.Bytes()
}

func child(doc map[string]any, key string) map[string]any {
	return doc[key].(map[string]any)
}

// TestRealKubeadmValidatesRenderedConfigs runs `kubeadm config validate`, which decodes
// strictly (an unknown or misplaced field is an error, where init and join only warn) and
// applies kubeadm's own validation. It opens no sockets, so it runs outside a namespace and
// without root.
func TestRealKubeadmValidatesRenderedConfigs(t *testing.T) {
	bin := kubeadmBinary(t)
	if out, err := runKubeadm(t, nil, nil, bin, "version", "-o", "short"); err != nil {
		t.Fatalf("kubeadm version: %v\n%s", err, out)
	} else {
		t.Logf("kubeadm version %s", bytes.TrimSpace(out))
	}
	rc, _ := renderAll(t, kubeadm.DefaultCertificatesDir)
	dir := t.TempDir()

	valid := []struct {
		name string
		data []byte
	}{
		{"init control plane", rc.init},
		{"join control plane", rc.joinControlPlane},
		{"join worker", rc.joinWorker},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "-")+".yaml", tt.data)
			if out, err := runKubeadm(t, nil, nil, bin, "config", "validate", "--config", f); err != nil {
				t.Errorf("kubeadm rejected our config: %v\n%s\nconfig:\n%s", err, out, tt.data)
			}
		})
	}

	// The same files, broken on purpose, must be rejected: otherwise the passes above prove
	// nothing. Each failure has to name the broken field, so that a rejection for some other
	// reason (a missing file, a bad flag) does not count.
	broken := []struct {
		name    string
		base    []byte
		kind    string
		change  func(map[string]any)
		mention string
	}{
		{
			name: "discovery timeout where v1beta3 had it",
			base: rc.joinWorker, kind: "JoinConfiguration",
			change:  func(d map[string]any) { child(d, "discovery")["timeout"] = "5m0s" },
			mention: "discovery.timeout",
		},
		{
			name: "unknown top-level field",
			base: rc.init, kind: "ClusterConfiguration",
			change:  func(d map[string]any) { d["certificateDir"] = "/etc/kubernetes/pki" },
			mention: "certificateDir",
		},
		{
			name: "bind port of the wrong type",
			base: rc.init, kind: "InitConfiguration",
			change:  func(d map[string]any) { child(d, "localAPIEndpoint")["bindPort"] = "https" },
			mention: "bindPort",
		},
		{
			name: "unsupported encryption algorithm",
			base: rc.init, kind: "ClusterConfiguration",
			change:  func(d map[string]any) { d["encryptionAlgorithm"] = "ECDSA-P521" },
			mention: "encryptionAlgorithm",
		},
		{
			name: "control plane join with a certificate key that is not one",
			base: rc.joinControlPlane, kind: "JoinConfiguration",
			change:  func(d map[string]any) { child(d, "controlPlane")["certificateKey"] = "not-hex" },
			mention: "certificateKey",
		},
	}
	for _, tt := range broken {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			data := mutateDoc(t, tt.base, tt.kind, tt.change)
			f := writeFile(t, dir, "broken.yaml", data)
			out, err := runKubeadm(t, nil, nil, bin, "config", "validate", "--config", f)
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("kubeadm accepted a broken config (err %v):\n%s\noutput:\n%s", err, data, out)
			}
			if !strings.Contains(string(out), tt.mention) {
				t.Errorf("kubeadm failed without naming %q:\n%s", tt.mention, out)
			}
		})
	}
}

// netns is a network namespace owned by one test.
type netns struct{ name string }

func (n netns) ip(t *testing.T, args ...string) error {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetns creates a namespace with lo up and addr on an interface of its own, deleted when
// the test ends; it skips when the machine cannot do that.
func newNetns(t *testing.T, addr string) netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: kubeadm init --dry-run runs in a network namespace of its own")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs `ip` (iproute2) for network namespaces")
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	n := netns{name: "deployme-kubeadm-" + hex.EncodeToString(suffix[:])}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Deleting the namespace also deletes every interface created inside it.
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	if err := n.ip(t, "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	// A dummy interface is the simplest home for the address, but some kernels lack the
	// module; a veth pair with both ends inside the namespace works the same for us.
	dev := "kadm0"
	if err := n.ip(t, "link", "add", dev, "type", "dummy"); err != nil {
		t.Logf("no dummy interface (%v); using a veth pair", err)
		if err := n.ip(t, "link", "add", dev, "type", "veth", "peer", "name", "kadm1"); err != nil {
			t.Fatal(err)
		}
		if err := n.ip(t, "link", "set", "kadm1", "up"); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.ip(t, "addr", "add", addr, "dev", dev); err != nil {
		t.Fatal(err)
	}
	if err := n.ip(t, "link", "set", dev, "up"); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n netns) exec() []string { return []string{"ip", "netns", "exec", n.name} }

// writePKI places the control-plane files of cluster under dir, as the agent's pki step would
// under /etc/kubernetes/pki.
func writePKI(t *testing.T, cluster *pki.ClusterPKI, dir string) {
	t.Helper()
	files := cluster.Files(true)
	if len(files) == 0 {
		t.Fatal("the cluster PKI has no control-plane files")
	}
	for _, f := range files {
		rel, ok := strings.CutPrefix(f.Path, kubeadm.DefaultCertificatesDir+"/")
		if !ok {
			t.Fatalf("PKI file %s is outside %s", f.Path, kubeadm.DefaultCertificatesDir)
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Content, fs.FileMode(f.Mode)); err != nil {
			t.Fatal(err)
		}
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate:\n%s", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseCert(t, b)
}

// findFile returns the one file called name below root: where kubeadm puts things in a dry
// run is its business, what it generated is ours to check.
func findFile(t *testing.T, root, name string) string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == name {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("want one %s under %s, found %v", name, root, found)
	}
	return found[0]
}

// checkIssuedBy verifies that the leaf at path chains to ca for usage and carries a P-256
// key, as encryptionAlgorithm: ECDSA-P256 asks.
func checkIssuedBy(t *testing.T, path string, ca *x509.Certificate, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	leaf := readCert(t, path)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("%s does not chain to our %q CA: %v", path, ca.Subject.CommonName, err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("%s has a %T key, want ECDSA P-256", path, leaf.PublicKey)
	}
	return leaf
}

// sameKey reports whether two certificates carry the same public key.
func sameKey(a, b *x509.Certificate) bool {
	pa, ok := a.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pa.Equal(b.PublicKey)
}

// snapshot records the content of every file below dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[strings.TrimPrefix(p, dir)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestRealKubeadmInitDryRunWithOurPKI gives kubeadm init the coordinator's CAs, as the pki
// step places them, and checks that kubeadm builds the control plane's certificates on top
// of them instead of replacing them.
func TestRealKubeadmInitDryRunWithOurPKI(t *testing.T) {
	bin := kubeadmBinary(t)
	ns := newNetns(t, advertiseIP+"/24")

	certDir := filepath.Join(t.TempDir(), "pki")
	rc, cluster := renderAll(t, certDir)
	writePKI(t, cluster, certDir)
	before := snapshot(t, certDir)
	config := writeFile(t, t.TempDir(), "init.yaml", rc.init)

	// Left alone, a dry run writes into a new /etc/kubernetes/tmp/kubeadm-init-dryrun*
	// directory. kubeadm's KUBEADM_INIT_DRYRUN_DIR points it at a directory this test owns
	// instead, so the host's /etc is never touched and parallel runs cannot collide.
	dryRunDir := t.TempDir()
	out, err := runKubeadm(t, []string{"KUBEADM_INIT_DRYRUN_DIR=" + dryRunDir}, ns.exec(), bin,
		"init", "--config", config, "--dry-run", "--ignore-preflight-errors=all")
	if err != nil {
		t.Fatalf("kubeadm init --dry-run: %v\n%s", err, tail(out, 40))
	}

	caCert := parseCert(t, cluster.CACert)
	frontProxyCA := parseCert(t, cluster.FrontProxyCACert)
	etcdCA := parseCert(t, cluster.EtcdCACert)

	t.Run("keeps our CAs", func(t *testing.T) {
		for _, c := range []struct {
			file string
			ours *x509.Certificate
		}{
			{"ca.crt", caCert},
			{"front-proxy-ca.crt", frontProxyCA},
			{filepath.Join("etcd", "ca.crt"), etcdCA},
		} {
			used := readCert(t, filepath.Join(dryRunDir, c.file))
			if !sameKey(used, c.ours) {
				t.Errorf("the dry run's %s is not our CA (subject %q); kubeadm replaced it", c.file, used.Subject)
			}
		}
		after := snapshot(t, certDir)
		if len(after) != len(before) {
			t.Errorf("the dry run changed the file set of our certificatesDir: %d files before, %d after", len(before), len(after))
		}
		for name, content := range before {
			if after[name] != content {
				t.Errorf("the dry run modified %s in our certificatesDir", name)
			}
		}
	})

	t.Run("apiserver certificate", func(t *testing.T) {
		leaf := checkIssuedBy(t, findFile(t, dryRunDir, "apiserver.crt"), caCert, x509.ExtKeyUsageServerAuth)
		for _, name := range []string{"api.lab.example.test", "cp1", "kubernetes.default.svc"} {
			if !slices.Contains(leaf.DNSNames, name) {
				t.Errorf("apiserver certificate lacks DNS name %q; has %v", name, leaf.DNSNames)
			}
		}
		// Our extra SAN, the advertise address, and the first service IP of 10.96.0.0/12.
		for _, ip := range []string{"10.250.0.100", advertiseIP, "10.96.0.1"} {
			if !slices.ContainsFunc(leaf.IPAddresses, func(a net.IP) bool { return a.Equal(net.ParseIP(ip)) }) {
				t.Errorf("apiserver certificate lacks IP %s; has %v", ip, leaf.IPAddresses)
			}
		}
	})

	t.Run("other leaves", func(t *testing.T) {
		checkIssuedBy(t, findFile(t, dryRunDir, "apiserver-kubelet-client.crt"), caCert, x509.ExtKeyUsageClientAuth)
		checkIssuedBy(t, findFile(t, dryRunDir, "front-proxy-client.crt"), frontProxyCA, x509.ExtKeyUsageClientAuth)
		checkIssuedBy(t, findFile(t, filepath.Join(dryRunDir, "etcd"), "server.crt"), etcdCA, x509.ExtKeyUsageServerAuth)
		checkIssuedBy(t, findFile(t, dryRunDir, "apiserver-etcd-client.crt"), etcdCA, x509.ExtKeyUsageClientAuth)
	})

	// A dry run copies only the CAs into its directory, so it always generates a fresh
	// service-account key there and says nothing about ours. The certs phase of a real init
	// writes into certificatesDir itself: it must keep our key pair and CAs and add the leaves.
	t.Run("certs phase keeps our service-account key", func(t *testing.T) {
		out, err := runKubeadm(t, nil, ns.exec(), bin, "init", "phase", "certs", "all", "--config", config)
		if err != nil {
			t.Fatalf("kubeadm init phase certs all: %v\n%s", err, tail(out, 40))
		}
		after := snapshot(t, certDir)
		for name, content := range before {
			if after[name] != content {
				t.Errorf("the certs phase replaced our %s", name)
			}
		}
		checkIssuedBy(t, filepath.Join(certDir, "apiserver.crt"), caCert, x509.ExtKeyUsageServerAuth)
	})
}
