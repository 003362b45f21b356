package steps

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/kubeadm"
	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

const (
	testVersion  = "v1.37.2"
	testEndpoint = "10.0.0.10:6443"
)

// clusterPKIFiles generates what the coordinator's pki step sends: ECDSA P-256 CAs for the
// cluster, the front proxy and etcd, and a service-account key pair.
func clusterPKIFiles(t *testing.T) []*agentv1.File {
	t.Helper()
	var files []*agentv1.File
	for _, ca := range []struct{ path, cn string }{
		{"/etc/kubernetes/pki/ca", "kubernetes"},
		{"/etc/kubernetes/pki/front-proxy-ca", "front-proxy-ca"},
		{"/etc/kubernetes/pki/etcd/ca", "etcd-ca"},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: ca.cn},
			NotBefore:             time.Now().Add(-time.Minute),
			NotAfter:              time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files,
			&agentv1.File{Path: ca.path + ".crt", Mode: 0o644, Content: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
			&agentv1.File{Path: ca.path + ".key", Mode: 0o600, Content: ecKeyPEM(t, key)},
		)
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return append(files,
		&agentv1.File{Path: "/etc/kubernetes/pki/sa.key", Mode: 0o600, Content: ecKeyPEM(t, sa)},
		&agentv1.File{Path: "/etc/kubernetes/pki/sa.pub", Mode: 0o644, Content: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})},
	)
}

func ecKeyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// fixtures are the files a host provides before the agent does anything: kubelet, a
// container runtime socket and /proc/swaps without swap.
var fixtures = map[string]string{
	"/usr/bin/kubelet":                "#!/bin/true\n",
	"/run/containerd/containerd.sock": "",
	"/proc/swaps":                     "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
}

// host is one simulated machine: a root directory, an agent state directory and an executor.
type host struct {
	name     string
	root     string
	stateDir string
	cfg      Config
	e        *Executor
}

// hostOption changes a host's Config before its executor is made.
type hostOption func(*Config)

// newHost makes a host whose kubeadm and kubectl are the fake sharing fakeState.
func newHost(t *testing.T, name, fakeState string, opts ...hostOption) *host {
	t.Helper()
	h := &host{name: name, root: t.TempDir(), stateDir: t.TempDir()}
	for p, content := range fixtures {
		writeHostFile(t, h.root, p, content, 0o755)
	}
	cfg := DefaultConfig()
	cfg.Root = h.root
	cfg.StateDir = h.stateDir
	cfg.Runner = kubefake.Runner{Options: kubefake.Options{StateDir: fakeState}}
	cfg.ReadyPoll = 5 * time.Millisecond
	cfg.CheckPort = func(int) error { return nil }
	cfg.Logger = testLogger(t)
	for _, o := range opts {
		o(&cfg)
	}
	h.cfg = cfg
	h.restart(t)
	return h
}

// restart replaces the host's executor by a new one on the same state directory, as an
// agent restart does.
func (h *host) restart(t *testing.T) {
	t.Helper()
	e, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
}

func writeHostFile(t *testing.T, root, p, content string, mode fs.FileMode) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// recorder collects the updates sent for steps.
type recorder struct {
	mu      sync.Mutex
	updates []*agentv1.StepUpdate
	final   chan *agentv1.StepUpdate
}

func newRecorder() *recorder {
	return &recorder{final: make(chan *agentv1.StepUpdate, 64)}
}

func (r *recorder) send(u *agentv1.StepUpdate) {
	r.mu.Lock()
	r.updates = append(r.updates, u)
	r.mu.Unlock()
	if u.GetState() != stateRunning {
		r.final <- u
	}
}

// of returns the updates sent for one step id, in order.
func (r *recorder) of(id string) []*agentv1.StepUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*agentv1.StepUpdate
	for _, u := range r.updates {
		if u.GetStepId() == id {
			out = append(out, u)
		}
	}
	return out
}

// waitFinal waits for the next final update.
func (r *recorder) waitFinal(t *testing.T) *agentv1.StepUpdate {
	t.Helper()
	select {
	case u := <-r.final:
		return u
	case <-time.After(30 * time.Second):
		t.Fatal("no final update within 30s")
		return nil
	}
}

// common are the parameters every assignment carries.
func common(role, node string) map[string]string {
	return map[string]string{
		"cluster_id":         "c-1",
		"cluster_name":       "prod",
		"role":               role,
		"node_name":          node,
		"kubernetes_version": testVersion,
	}
}

// with returns a copy of p with kv (key, value, key, value...) set.
func with(p map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range p {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func assign(id, name string, params map[string]string, files ...*agentv1.File) *agentv1.StepAssignment {
	return &agentv1.StepAssignment{StepId: id, Name: name, Params: params, Files: files}
}

// run hands the assignment to h and returns its final update and every update it sent.
func (h *host) run(t *testing.T, a *agentv1.StepAssignment) (*agentv1.StepUpdate, []*agentv1.StepUpdate) {
	t.Helper()
	rec := newRecorder()
	h.e.Handle(context.Background(), a, rec.send)
	final := rec.waitFinal(t)
	h.e.Wait()
	return final, rec.of(a.GetStepId())
}

// mustSucceed runs the assignment and fails the test unless it succeeds.
func (h *host) mustSucceed(t *testing.T, a *agentv1.StepAssignment) *agentv1.StepUpdate {
	t.Helper()
	final, _ := h.run(t, a)
	if final.GetState() != stateSucceeded {
		t.Fatalf("%s on %s: %s (%s): %s\n%s", a.GetName(), h.name, final.GetState(), final.GetReason(), final.GetMessage(), final.GetOutputTail())
	}
	return final
}

func cniManifest() *agentv1.File {
	return &agentv1.File{Path: "/etc/deployme/cni.yaml", Mode: 0o644, Content: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cni\n")}
}

// invocations returns what the fake ran, one "tool args..." line per call, each host's root
// written as <name> so that the lines read the same in every run.
func invocations(t *testing.T, fakeState string, hosts ...*host) []string {
	t.Helper()
	invs, err := kubefake.Invocations(fakeState)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, inv := range invs {
		line := inv.Tool + " " + strings.Join(inv.Args, " ")
		for _, h := range hosts {
			line = strings.ReplaceAll(line, h.root, "<"+h.name+">")
		}
		out = append(out, line)
	}
	return out
}

// count returns how many lines start with prefix.
func count(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// failingRunner stands for a host without the named tool.
type failingRunner struct {
	kubeadm.Runner
	tool string
}

func (r failingRunner) Run(ctx context.Context, cmd kubeadm.Command, line func(string)) (kubeadm.Result, error) {
	if filepath.Base(cmd.Path) == r.tool {
		return kubeadm.Result{ExitCode: -1}, fmt.Errorf("start %s: %w", cmd.Path, fs.ErrNotExist)
	}
	return r.Runner.Run(ctx, cmd, line)
}
