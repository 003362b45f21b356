package steps

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	"github.com/deployme/deployme/internal/poll"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// cluster is a first control plane and workers sharing one fake kubeadm state.
type cluster struct {
	fake    string
	cp      *host
	workers []*host
	pki     []*agentv1.File
}

func newCluster(t *testing.T, workers int, opts ...hostOption) *cluster {
	t.Helper()
	c := &cluster{fake: t.TempDir(), pki: clusterPKIFiles(t)}
	c.cp = newHost(t, "cp1", c.fake, opts...)
	for i := range workers {
		c.workers = append(c.workers, newHost(t, fmt.Sprintf("w%d", i+1), c.fake, opts...))
	}
	return c
}

func (c *cluster) cpParams() map[string]string {
	return with(common(roleInit, "cp1"),
		"advertise_address", "10.0.0.10",
		"control_plane_endpoint", testEndpoint,
		"pod_subnet", "10.244.0.0/16",
		"service_subnet", "10.96.0.0/12",
		"cert_sans", "k8s.example.com, 10.0.0.10")
}

// caHash is the pin of the cluster CA, as kubeadm computes it: SHA-256 of its public key info.
func (c *cluster) caHash(t *testing.T) string {
	t.Helper()
	for _, f := range c.pki {
		if f.GetPath() != "/etc/kubernetes/pki/ca.crt" {
			continue
		}
		b, _ := pem.Decode(f.GetContent())
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("sha256:%x", sha256.Sum256(cert.RawSubjectPublicKeyInfo))
	}
	t.Fatal("no ca.crt")
	return ""
}

// initControlPlane runs the first control plane's steps up to cni.
func (c *cluster) initControlPlane(t *testing.T) {
	t.Helper()
	p := c.cpParams()
	c.cp.mustSucceed(t, assign("cp1.preflight.1", "preflight", p))
	c.cp.mustSucceed(t, assign("cp1.prepare.1", "prepare", p))
	c.cp.mustSucceed(t, assign("cp1.pki.1", "pki", p, c.pki...))
	c.cp.mustSucceed(t, assign("cp1.init.1", "init", p))
	c.cp.mustSucceed(t, assign("cp1.cni.1", "cni", p, cniManifest()))
}

func workerToken(i int) string { return fmt.Sprintf("abcde%d.0123456789abcdef", i) }

// joinWorker runs worker i's steps (credentials on the control plane), ready included.
func (c *cluster) joinWorker(t *testing.T, i int) {
	t.Helper()
	w := c.workers[i]
	p := common(roleWorker, w.name)
	w.mustSucceed(t, assign(w.name+".preflight.1", "preflight", p))
	w.mustSucceed(t, assign(w.name+".prepare.1", "prepare", p))
	c.cp.mustSucceed(t, assign(w.name+".credentials.1", "credentials",
		with(common(roleControlPlane, "cp1"), "token", workerToken(i), "ttl", "15m0s", "for_node", w.name)))
	w.mustSucceed(t, assign(w.name+".join.1", "join", with(p,
		"token", workerToken(i), "ca_cert_hash", c.caHash(t), "control_plane_endpoint", testEndpoint)))
	w.mustSucceed(t, assign(w.name+".ready.1", "ready", with(p, "timeout", "30s")))
}

func TestClusterFlow(t *testing.T) {
	c := newCluster(t, 2)
	c.initControlPlane(t)
	for i := range c.workers {
		c.joinWorker(t, i)
	}
	c.cp.mustSucceed(t, assign("cp1.ready.1", "ready", with(c.cpParams(), "timeout", "30s")))

	cp, w1, w2 := "<cp1>", "<w1>", "<w2>"
	want := []string{
		"kubeadm version -o short --rootfs " + cp,
		"kubeadm init --config /etc/deployme/kubeadm-init.yaml --skip-token-print --rootfs " + cp,
		"kubectl --kubeconfig " + cp + "/etc/kubernetes/admin.conf apply -f " + cp + "/etc/deployme/cni.yaml",
		"kubeadm version -o short --rootfs " + w1,
		"kubeadm token create " + workerToken(0) + " --ttl 15m0s --kubeconfig " + cp + "/etc/kubernetes/admin.conf",
		"kubeadm join --config /etc/deployme/kubeadm-join.yaml --rootfs " + w1,
		"kubectl --kubeconfig " + w1 + `/etc/kubernetes/kubelet.conf get node w1 -o jsonpath={.status.conditions[?(@.type=="Ready")].status}`,
		"kubeadm version -o short --rootfs " + w2,
		"kubeadm token create " + workerToken(1) + " --ttl 15m0s --kubeconfig " + cp + "/etc/kubernetes/admin.conf",
		"kubeadm join --config /etc/deployme/kubeadm-join.yaml --rootfs " + w2,
		"kubectl --kubeconfig " + w2 + `/etc/kubernetes/kubelet.conf get node w2 -o jsonpath={.status.conditions[?(@.type=="Ready")].status}`,
		"kubectl --kubeconfig " + cp + `/etc/kubernetes/kubelet.conf get node cp1 -o jsonpath={.status.conditions[?(@.type=="Ready")].status}`,
	}
	got := invocations(t, c.fake, c.cp, c.workers[0], c.workers[1])
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("invocations (-want +got):\n%s", diff)
	}
	// Every finished step is listed for Hello, newest first.
	fin := c.cp.e.Finished(100)
	if len(fin) != 8 || fin[0].GetStepId() != "cp1.ready.1" || fin[len(fin)-1].GetStepId() != "cp1.preflight.1" {
		var ids []string
		for _, u := range fin {
			ids = append(ids, u.GetStepId())
		}
		t.Errorf("Finished(100) = %v", ids)
	}
	if n := len(c.cp.e.Finished(2)); n != 2 {
		t.Errorf("Finished(2) returned %d updates", n)
	}
}

func TestInitUpdates(t *testing.T) {
	c := newCluster(t, 0)
	p := c.cpParams()
	c.cp.mustSucceed(t, assign("cp1.pki.1", "pki", p, c.pki...))
	final, updates := c.cp.run(t, assign("cp1.init.1", "init", p))
	if final.GetState() != stateSucceeded || final.GetOutputTail() == "" {
		t.Fatalf("final update %v: want succeeded with an output tail", final)
	}
	seen := map[string]bool{}
	var phases int
	for _, u := range updates[:len(updates)-1] {
		if u.GetState() != stateRunning {
			t.Fatalf("update before the last is %s", u.GetState())
		}
		if seen[u.GetMessage()] {
			t.Errorf("message %q sent twice", u.GetMessage())
		}
		seen[u.GetMessage()] = true
		if strings.HasPrefix(u.GetMessage(), "[") {
			phases++
		}
	}
	if !seen["[certs]"] || phases < 3 {
		t.Errorf("running updates %v: want kubeadm's phases, [certs] among them", seen)
	}
	// The bootstrap token is ours, random and short-lived; the file is private.
	fi, err := os.Stat(filepath.Join(c.cp.root, initConfigPath))
	if err != nil || fi.Mode().Perm() != configFileMode {
		t.Fatalf("init config: %v, mode %v", err, fi.Mode())
	}
}

func TestRepeatAnswersFromRecord(t *testing.T) {
	c := newCluster(t, 0)
	c.initControlPlane(t)
	before := invocations(t, c.fake)

	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			if restart {
				c.cp.restart(t)
			}
			final, updates := c.cp.run(t, assign("cp1.init.1", "init", c.cpParams()))
			if len(updates) != 1 || final.GetState() != stateSucceeded || final.GetMessage() != "initialised" {
				t.Fatalf("repeat: updates %v, want the stored final update alone", updates)
			}
			if diff := cmp.Diff(before, invocations(t, c.fake)); diff != "" {
				t.Errorf("a repeat ran commands (-before +after):\n%s", diff)
			}
			if n := len(c.cp.e.Finished(100)); n != 5 {
				t.Errorf("Finished lists %d steps, want the 5 that ran", n)
			}
		})
	}
	// A failed step is answered from its record too, not retried.
	final, _ := c.cp.run(t, assign("cp1.bogus.1", "bogus", nil))
	again, _ := c.cp.run(t, assign("cp1.bogus.1", "bogus", nil))
	if diff := cmp.Diff(final, again, protocmp.Transform()); diff != "" {
		t.Errorf("repeat of a failed step (-first +repeat):\n%s", diff)
	}
}

func TestInterruptedInitIsNotRepeated(t *testing.T) {
	c := newCluster(t, 0)
	c.initControlPlane(t)
	// The agent was killed after kubeadm init had finished and marked so, but before the
	// result was stored: the record is gone, the host's files are there.
	if err := os.Remove(filepath.Join(c.cp.stateDir, "steps", "cp1.init.1.json")); err != nil {
		t.Fatal(err)
	}
	c.cp.restart(t)
	final := c.cp.mustSucceed(t, assign("cp1.init.1", "init", c.cpParams()))
	if final.GetMessage() != "already initialised" {
		t.Errorf("message %q, want %q", final.GetMessage(), "already initialised")
	}
	if n := count(invocations(t, c.fake), "kubeadm init"); n != 1 {
		t.Errorf("kubeadm init ran %d times, want 1", n)
	}
}

// An init that was killed before kubeadm returned (its early files written, no marker) is
// undone with kubeadm reset, the cluster CAs are put back, and init runs again to its end.
func TestUnfinishedInitIsRedone(t *testing.T) {
	c := newCluster(t, 0)
	c.initControlPlane(t)
	caBefore, err := os.ReadFile(filepath.Join(c.cp.root, "etc/kubernetes/pki/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(c.cp.stateDir, "steps", "cp1.init.1.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(c.cp.root, "etc/deployme/init-done")); err != nil {
		t.Fatal(err)
	}
	c.cp.restart(t)
	final := c.cp.mustSucceed(t, assign("cp1.init.1", "init", c.cpParams()))
	if final.GetMessage() != "initialised" {
		t.Errorf("message %q, want %q", final.GetMessage(), "initialised")
	}
	inv := invocations(t, c.fake)
	if n := count(inv, "kubeadm init"); n != 2 {
		t.Errorf("kubeadm init ran %d times, want 2 (the unfinished one, then again)", n)
	}
	if n := count(inv, "kubeadm reset"); n != 1 {
		t.Errorf("kubeadm reset ran %d times, want 1 before the new init", n)
	}
	caAfter, err := os.ReadFile(filepath.Join(c.cp.root, "etc/kubernetes/pki/ca.crt"))
	if err != nil || string(caAfter) != string(caBefore) {
		t.Errorf("the cluster CA was not put back after the reset (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(c.cp.root, "etc/deployme/init-done")); err != nil {
		t.Errorf("no init marker after the redone init: %v", err)
	}
}

func TestJoinFailure(t *testing.T) {
	c := newCluster(t, 1)
	c.initControlPlane(t)
	if err := kubefake.FailNext(c.fake, "join", "w1", 1); err != nil {
		t.Fatal(err)
	}
	w := c.workers[0]
	p := with(common(roleWorker, "w1"), "token", workerToken(0), "ca_cert_hash", c.caHash(t), "control_plane_endpoint", testEndpoint)
	c.cp.mustSucceed(t, assign("w1.credentials.1", "credentials",
		with(common(roleControlPlane, "cp1"), "token", workerToken(0), "ttl", "15m0s", "for_node", "w1")))
	final, _ := w.run(t, assign("w1.join.1", "join", p))
	if final.GetState() != stateFailed || final.GetReason() != "kubeadm.exit_1" || final.GetOutputTail() == "" {
		t.Fatalf("join: %v; want failed, kubeadm.exit_1, an output tail", final)
	}
	// The retry is a new attempt, and it works.
	w.mustSucceed(t, assign("w1.join.2", "join", p))
}

func TestCredentialsAlreadyExists(t *testing.T) {
	c := newCluster(t, 0)
	c.initControlPlane(t)
	p := with(common(roleControlPlane, "cp1"), "token", workerToken(0), "ttl", "15m0s", "for_node", "w1")
	c.cp.mustSucceed(t, assign("w1.credentials.1", "credentials", p))
	// The same token again, under a new id: the agent died after kubeadm had created it.
	final := c.cp.mustSucceed(t, assign("w1.credentials.2", "credentials", p))
	if !strings.Contains(final.GetMessage(), "already exists") {
		t.Errorf("message %q, want it to say the token already exists", final.GetMessage())
	}
}

func TestReady(t *testing.T) {
	tests := []struct {
		name      string
		cni       bool
		join      bool
		readyIn   time.Duration
		timeout   string
		wantState string
		reason    string
		minPolls  int
	}{
		{name: "ready at once", cni: true, join: true, timeout: "30s", wantState: stateSucceeded, minPolls: 1},
		{name: "ready after polling", cni: true, join: true, readyIn: 100 * time.Millisecond, timeout: "30s", wantState: stateSucceeded, minPolls: 2},
		{name: "no CNI", join: true, timeout: "100ms", wantState: stateFailed, reason: reasonTimeout, minPolls: 2},
		{name: "never joined", cni: true, timeout: "30s", wantState: stateFailed, reason: reasonIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := t.TempDir()
			delay := func(c *Config) {
				c.Runner = kubefake.Runner{Options: kubefake.Options{StateDir: fake, Delay: func(phase string) time.Duration {
					if phase == "node-ready" {
						return tt.readyIn
					}
					return 0
				}}}
			}
			c := &cluster{fake: fake, pki: clusterPKIFiles(t)}
			c.cp = newHost(t, "cp1", fake, delay)
			w := newHost(t, "w1", fake, delay)
			p := c.cpParams()
			c.cp.mustSucceed(t, assign("cp1.pki.1", "pki", p, c.pki...))
			c.cp.mustSucceed(t, assign("cp1.init.1", "init", p))
			if tt.cni {
				c.cp.mustSucceed(t, assign("cp1.cni.1", "cni", p, cniManifest()))
			}
			if tt.join {
				c.cp.mustSucceed(t, assign("w1.credentials.1", "credentials",
					with(p, "token", workerToken(0), "ttl", "15m0s", "for_node", "w1")))
				w.mustSucceed(t, assign("w1.join.1", "join", with(common(roleWorker, "w1"),
					"token", workerToken(0), "ca_cert_hash", c.caHash(t), "control_plane_endpoint", testEndpoint)))
			}
			final, _ := w.run(t, assign("w1.ready.1", "ready", with(common(roleWorker, "w1"), "timeout", tt.timeout)))
			if final.GetState() != tt.wantState || final.GetReason() != tt.reason {
				t.Fatalf("ready: %v; want %s with reason %q", final, tt.wantState, tt.reason)
			}
			if n := count(invocations(t, fake), "kubectl --kubeconfig "+w.root+"/etc/kubernetes/kubelet.conf get node w1"); n < tt.minPolls {
				t.Errorf("kubectl get node ran %d times, want at least %d", n, tt.minPolls)
			}
		})
	}
}

func TestControlPlaneJoin(t *testing.T) {
	c := newCluster(t, 0)
	c.initControlPlane(t)
	cp2 := newHost(t, "cp2", c.fake)
	p := with(common(roleControlPlane, "cp2"), "advertise_address", "10.0.0.11",
		"token", workerToken(2), "ca_cert_hash", c.caHash(t), "control_plane_endpoint", testEndpoint)
	cp2.mustSucceed(t, assign("cp2.preflight.1", "preflight", p))
	cp2.mustSucceed(t, assign("cp2.prepare.1", "prepare", p))
	c.cp.mustSucceed(t, assign("cp2.credentials.1", "credentials",
		with(common(roleInit, "cp1"), "token", workerToken(2), "ttl", "15m0s", "for_node", "cp2")))

	// Without the cluster CAs kubeadm would make its own: the step refuses to start.
	final, _ := cp2.run(t, assign("cp2.join.1", "join", p))
	if final.GetState() != stateFailed || final.GetReason() != reasonIO || !strings.Contains(final.GetMessage(), "pki") {
		t.Fatalf("join without pki: %v; want failed, io, naming the pki step", final)
	}
	cp2.mustSucceed(t, assign("cp2.pki.1", "pki", p, c.pki...))
	cp2.mustSucceed(t, assign("cp2.join.2", "join", p))
	cp2.mustSucceed(t, assign("cp2.ready.1", "ready", with(p, "timeout", "30s")))

	// Killed after kubeadm join returned, before the record: re-sent, it does not join twice.
	if err := os.Remove(filepath.Join(cp2.stateDir, "steps", "cp2.join.2.json")); err != nil {
		t.Fatal(err)
	}
	cp2.restart(t)
	final = cp2.mustSucceed(t, assign("cp2.join.2", "join", p))
	if final.GetMessage() != "already joined" {
		t.Errorf("message %q, want %q", final.GetMessage(), "already joined")
	}
	if n := count(invocations(t, c.fake), "kubeadm join"); n != 1 {
		t.Errorf("kubeadm join ran %d times, want 1", n)
	}
}

// TestCancelStopsPromptly interrupts a kubeadm init: the step stops at once, stores nothing,
// ignores a repeat of its id while it runs, and runs again when re-sent afterwards.
func TestCancelStopsPromptly(t *testing.T) {
	fake := t.TempDir()
	var slow atomic.Bool
	slow.Store(true)
	h := newHost(t, "cp1", fake, func(c *Config) {
		c.Runner = kubefake.Runner{Options: kubefake.Options{StateDir: fake, Delay: func(phase string) time.Duration {
			if slow.Load() && phase == "init/certs" {
				return time.Hour
			}
			return 0
		}}}
	})
	c := &cluster{fake: fake, cp: h, pki: clusterPKIFiles(t)}
	h.mustSucceed(t, assign("cp1.pki.1", "pki", c.cpParams(), c.pki...))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	h.e.Handle(ctx, assign("cp1.init.1", "init", c.cpParams()), rec.send)
	// kubeadm prints "[certs] ..." and then sleeps in the phase.
	err := poll.Until(ctx, time.Millisecond, func() (bool, error) {
		for _, u := range rec.of("cp1.init.1") {
			if u.GetMessage() == "[certs]" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	repeat := newRecorder()
	h.e.Handle(context.Background(), assign("cp1.init.1", "init", c.cpParams()), repeat.send)

	start := time.Now()
	cancel()
	h.e.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Wait returned %s after the cancellation", d)
	}
	if got := repeat.of("cp1.init.1"); len(got) != 0 {
		t.Errorf("a repeat of a running id was answered: %v", got)
	}
	for _, u := range rec.of("cp1.init.1") {
		if u.GetState() != stateRunning {
			t.Errorf("an interrupted step sent a final update: %v", u)
		}
	}
	if _, err := os.Stat(filepath.Join(h.stateDir, "steps", "cp1.init.1.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted step left a record: %v", err)
	}
	if len(h.e.Finished(10)) != 1 {
		t.Errorf("Finished lists the interrupted step: %v", h.e.Finished(10))
	}

	// Re-sent, the same id runs again, to the end this time.
	slow.Store(false)
	final := h.mustSucceed(t, assign("cp1.init.1", "init", c.cpParams()))
	if final.GetMessage() != "initialised" {
		t.Errorf("message %q", final.GetMessage())
	}
	if n := count(invocations(t, fake), "kubeadm init"); n != 2 {
		t.Errorf("kubeadm init ran %d times, want 2", n)
	}
}

func TestSimulatedPrefix(t *testing.T) {
	c := newCluster(t, 0)
	p := with(c.cpParams(), "simulated", "true")
	c.cp.mustSucceed(t, assign("cp1.pki.1", "pki", p, c.pki...))
	_, updates := c.cp.run(t, assign("cp1.init.1", "init", p))
	final, _ := c.cp.run(t, assign("cp1.bogus.1", "bogus", with(p)))
	for _, u := range append(updates, final) {
		if !strings.HasPrefix(u.GetMessage(), simulatedPrefix) {
			t.Errorf("message %q lacks the %q prefix", u.GetMessage(), simulatedPrefix)
		}
	}
}

func TestInvalidStepIDIsNotStored(t *testing.T) {
	h := newHost(t, "w1", t.TempDir())
	for _, id := range []string{"", "../escape", ".hidden", "a/b", strings.Repeat("x", 300)} {
		final, _ := h.run(t, assign(id, "prepare", common(roleWorker, "w1")))
		if final.GetReason() != reasonInvalidParams {
			t.Errorf("id %q: %v, want invalid_params", id, final)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(h.stateDir, "steps"))
	if len(entries) != 0 {
		t.Errorf("records were stored for invalid ids: %v", entries)
	}
}

func TestNilAssignmentAndSend(t *testing.T) {
	h := newHost(t, "w1", t.TempDir())
	h.e.Handle(context.Background(), nil, nil)
	// An id shaped as the coordinator makes them (docs/steps.md).
	h.e.Handle(context.Background(), assign("host_3kq9x.lq2w8f1c0.prepare.1", "prepare", common(roleWorker, "w1")), nil)
	h.e.Wait()
	got := h.e.Finished(1)
	if len(got) != 1 || got[0].GetState() != stateSucceeded || got[0].GetStepId() != "host_3kq9x.lq2w8f1c0.prepare.1" {
		t.Fatalf("Finished = %v", got)
	}
}

func TestUnreadableRecordsAreSkipped(t *testing.T) {
	h := newHost(t, "w1", t.TempDir())
	h.mustSucceed(t, assign("w1.prepare.1", "prepare", common(roleWorker, "w1")))
	dir := filepath.Join(h.stateDir, "steps")
	for name, content := range map[string]string{
		"w1.preflight.1.json":     "{not json",
		"w1.join.1.json":          `{"step_id": "w1.other.1", "state": "succeeded"}`,
		"w1.ready.1.json":         `{"step_id": "w1.ready.1", "state": "running"}`,
		".w1.init.1.json.123.tmp": "half a record",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.restart(t)
	var ids []string
	for _, u := range h.e.Finished(10) {
		ids = append(ids, u.GetStepId())
	}
	if diff := cmp.Diff([]string{"w1.prepare.1"}, ids); diff != "" {
		t.Errorf("Finished (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, ".w1.init.1.json.123.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a leftover temporary record survived: %v", err)
	}
	// A step whose record is unreadable runs again.
	final := h.mustSucceed(t, assign("w1.preflight.1", "preflight", common(roleWorker, "w1")))
	if final.GetMessage() != "preflight checks passed" {
		t.Errorf("message %q", final.GetMessage())
	}
}
