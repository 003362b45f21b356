// Package lifecycle checks the cluster lifecycle end to end: a real replicated coordinator
// (coordinator/clustertest), real agents (coordclient and the step runner, in-process), and
// at the edge of each simulated machine the strict fake kubeadm/kubectl binary
// (test/fakekube), run as a process under each host's own --root.
package lifecycle

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/coordclient"
	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/agent/kubeadm"
	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	"github.com/deployme/deployme/agent/steps"
	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/internal/poll"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

func ptr[T any](v T) *T { return &v }

// fakeBin is the directory holding the fake kubeadm and kubectl (one binary, two names).
var fakeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deployme-fakekube-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "kubeadm"), "github.com/deployme/deployme/test/fakekube").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build fake kubeadm: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if err := os.Symlink("kubeadm", filepath.Join(dir, "kubectl")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fakeBin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seeded are the files a prepared host has before we touch it (what preflight looks for).
var seeded = map[string]string{
	"usr/bin/kubelet":                "#!/bin/sh\n",
	"run/containerd/containerd.sock": "",
	"proc/swaps":                     "Filename\tType\tSize\tUsed\tPriority\n",
}

// host is one simulated machine: a root, an agent state dir and an in-process agent.
type host struct {
	i        int
	name     string
	dir      string
	root     string
	stateDir string

	// cpus and mem are what its inventory reports.
	cpus int
	mem  int64

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
	exec   *steps.Executor
	vip    *fakeVIP
	// drop, when set, sees every update the agent sends and may swallow it (to kill the
	// agent right after a step finished, before anybody heard of it).
	drop func(*agentv1.StepUpdate) bool
}

// hookedSteps is the agent's step runner with the host's drop hook on its updates.
type hookedSteps struct {
	h  *host
	ex *steps.Executor
}

func (s hookedSteps) Handle(ctx context.Context, a *agentv1.StepAssignment, send func(*agentv1.StepUpdate)) {
	s.ex.Handle(ctx, a, func(u *agentv1.StepUpdate) {
		s.h.mu.Lock()
		drop := s.h.drop
		s.h.mu.Unlock()
		if drop != nil && drop(u) {
			return
		}
		send(u)
	})
}

func (s hookedSteps) Finished(n int) []*agentv1.StepUpdate { return s.ex.Finished(n) }

// onStepDone arranges for fn to run (in its own goroutine) when the host's agent finishes a
// step with that name: the update is swallowed, as if the agent died right after storing it.
// Hosts given the same once fire only one of them.
func (h *host) onStepDone(once *sync.Once, step string, fn func()) {
	h.mu.Lock()
	h.drop = func(u *agentv1.StepUpdate) bool {
		if u.GetName() != step || u.GetState() != "succeeded" {
			return false
		}
		fired := false
		once.Do(func() { fired = true; go fn() })
		return fired
	}
	h.mu.Unlock()
}

func (h *host) clearHook() {
	h.mu.Lock()
	h.drop = nil
	h.mu.Unlock()
}

// fleet is a coordinator cluster plus its hosts.
type fleet struct {
	t         *testing.T
	vip       bool
	c         *clustertest.Cluster
	fakeState string
	infraID   string
	joinToken string
	caHash    string
	hosts     []*host
}

// newFleet starts `replicas` coordinators with the reconciler on and `n` agents registered
// into one on-premise infra.
func newFleet(t *testing.T, replicas, n int) *fleet {
	t.Helper()
	return newFleetWith(t, replicas, n, nil)
}

// newFleetWith is newFleet with more configuration applied to every replica.
func newFleetWith(t *testing.T, replicas, n int, configure func(*server.Config)) *fleet {
	t.Helper()
	return newFleetOpts(t, fleetOptions{replicas: replicas, hosts: n, configure: configure})
}

// fleetOptions shape a fleet beyond its size.
type fleetOptions struct {
	replicas, hosts int
	configure       func(*server.Config)
	// size gives host i's CPUs and memory (default 4 CPUs, 8 GiB: "medium").
	size func(i int) (cpus int, mem int64)
	// vipPool gives the infra a VIP pool, so clusters get a VIP endpoint; the agents then
	// run fakeVIP, the edge stand-in for agent/vip.
	vipPool string
}

func newFleetOpts(t *testing.T, o fleetOptions) *fleet {
	t.Helper()
	replicas, n, configure := o.replicas, o.hosts, o.configure
	c := clustertest.Start(t, clustertest.Options{Replicas: replicas, Configure: func(cfg *server.Config) {
		cfg.NoReconciler = false
		cfg.AgentHeartbeat = 300 * time.Millisecond
		cfg.Scheduler.Policy.Backoff = 50 * time.Millisecond
		cfg.Scheduler.Policy.MaxBackoff = 200 * time.Millisecond
		cfg.Scheduler.Resync = 200 * time.Millisecond
		if configure != nil {
			configure(cfg)
		}
	}})
	f := &fleet{t: t, c: c, fakeState: t.TempDir(), vip: o.vipPool != ""}
	ctx := context.Background()
	ireq := v1.CreateInfraRequest{Name: ptr("dc1"), Kind: ptr("onpremise")}
	if o.vipPool != "" {
		ireq.VIPPool = ptr(o.vipPool)
	}
	infra, err := c.Client().CreateInfra(ctx, ireq)
	if err != nil {
		t.Fatal(err)
	}
	f.infraID = infra.ID
	jt, err := c.Client().CreateJoinToken(ctx, infra.ID, v1.CreateJoinTokenRequest{Expires: ptr("1h")})
	if err != nil {
		t.Fatal(err)
	}
	f.joinToken = jt.Secret
	waitFor(t, 20*time.Second, "the agent CA", func() bool { return c.Service().AgentCAFingerprint() != "" })
	f.caHash = "sha256:" + c.Service().AgentCAFingerprint()
	base := t.TempDir()
	for i := range n {
		h := &host{i: i, name: fmt.Sprintf("host-%d", i+1), dir: filepath.Join(base, fmt.Sprintf("h%d", i+1)), cpus: 4, mem: 8 << 30}
		if o.size != nil {
			h.cpus, h.mem = o.size(i)
		}
		h.root = filepath.Join(h.dir, "root")
		h.stateDir = filepath.Join(h.dir, "state")
		for p, content := range seeded {
			full := filepath.Join(h.root, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		f.hosts = append(f.hosts, h)
		f.start(h)
	}
	t.Cleanup(func() {
		for _, h := range f.hosts {
			f.stop(h)
		}
	})
	waitFor(t, 30*time.Second, fmt.Sprintf("%d hosts available", n), func() bool {
		l, err := c.Client().ListHosts(ctx, clientListHosts(f.infraID))
		if err != nil {
			return false
		}
		avail := 0
		for _, h := range l.Items {
			if h.State == v1.HostAvailable {
				avail++
			}
		}
		return avail == n
	})
	return f
}

func (f *fleet) addrs() []string {
	var out []string
	for _, r := range f.c.Replicas {
		out = append(out, r.GRPCAddr())
	}
	return out
}

// start runs a host's agent (again, after stop: same state dir, same identity).
func (f *fleet) start(h *host) {
	f.t.Helper()
	sc := steps.DefaultConfig()
	sc.Root = h.root
	sc.StateDir = h.stateDir
	sc.Kubeadm = filepath.Join(fakeBin, "kubeadm")
	sc.Kubectl = filepath.Join(fakeBin, "kubectl")
	sc.Runner = kubeadm.ExecRunner{}
	sc.Env = []string{"FAKEKUBE_STATE=" + f.fakeState}
	sc.ReadyPoll = 50 * time.Millisecond
	// Ten hosts share this machine's ports; preflight's port check has its own tests.
	sc.CheckPort = func(int) error { return nil }
	ex, err := steps.New(sc)
	if err != nil {
		f.t.Fatal(err)
	}
	cc := coordclient.DefaultConfig()
	cc.Coordinators = f.addrs()
	cc.JoinToken = f.joinToken
	cc.CAHash = f.caHash
	cc.StateDir = h.stateDir
	cc.Labels = map[string]string{"rack": fmt.Sprintf("r%d", h.i%3), "zone": fmt.Sprintf("z%d", h.i%2)}
	cc.Steps = hookedSteps{h: h, ex: ex}
	cc.BackoffMin, cc.BackoffMax = 20*time.Millisecond, 300*time.Millisecond
	cc.WelcomeTimeout, cc.DialTimeout = 3*time.Second, 3*time.Second
	i, name, cpus, mem := h.i, h.name, h.cpus, h.mem
	var vip *fakeVIP
	if f.vip {
		vip = newFakeVIP(h.root)
		cc.VIP = vip
	}
	cc.Inventory = func(context.Context) (*inventory.Inventory, error) {
		return &inventory.Inventory{
			Hostname: name, OSRelease: "Test Linux", Kernel: "6.1", CPUs: cpus, CPUModel: "test", MemoryBytes: mem,
			Disks:    []inventory.Disk{{Name: "vda", SizeBytes: 50 << 30}},
			NICs:     []inventory.NIC{{Name: "eth0", MAC: fmt.Sprintf("52:54:00:aa:00:%02x", i+1), Addresses: []string{fmt.Sprintf("10.77.0.%d/24", i+10)}, Up: true}},
			Versions: map[string]string{}, Labels: map[string]string{},
		}, nil
	}
	cl, err := coordclient.New(cc)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if vip != nil {
		go vip.run(ctx, cl)
	}
	go func() { done <- cl.Run(ctx) }()
	h.mu.Lock()
	h.cancel, h.done, h.exec, h.vip = cancel, done, ex, vip
	h.mu.Unlock()
}

// stop kills a host's agent: its stream and its running steps end.
func (f *fleet) stop(h *host) {
	h.mu.Lock()
	cancel, done, ex := h.cancel, h.done, h.exec
	h.cancel = nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		f.t.Errorf("agent %s did not stop", h.name)
	}
	ex.Wait()
}

func (f *fleet) hostByID(id string) *host {
	f.t.Helper()
	l, err := f.c.Client().ListHosts(context.Background(), clientListHosts(f.infraID))
	if err != nil {
		f.t.Fatal(err)
	}
	for _, h := range l.Items {
		if h.ID == id {
			for _, fh := range f.hosts {
				if fh.name == h.Hostname {
					return fh
				}
			}
		}
	}
	f.t.Fatalf("no host %s", id)
	return nil
}

// create asks for a cluster on the fleet's infra.
func (f *fleet) create(name string, cps, workers int) *v1.Cluster {
	f.t.Helper()
	c, err := f.c.Client().CreateCluster(context.Background(), v1.CreateClusterRequest{
		Name: ptr(name), ControlPlanes: ptr(cps), Workers: ptr(workers), NodeSize: ptr("small"),
		Phase: ptr("onpremise"), InfraID: ptr(f.infraID),
	})
	if err != nil {
		f.t.Fatalf("create cluster %s: %v", name, err)
	}
	return c
}

// waitStatus polls a cluster until it has the status; on timeout it prints its events.
func (f *fleet) waitStatus(id, status string, timeout time.Duration) *v1.Cluster {
	f.t.Helper()
	var last *v1.Cluster
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		c, err := f.anyClient().GetCluster(ctx, id)
		if err != nil {
			return false, nil
		}
		last = c
		return c.Status == status, nil
	})
	if err != nil {
		f.t.Fatalf("cluster %s never %s (last: %+v)\nevents:\n%s", id, status, last, f.eventLog(id))
	}
	return last
}

// waitGone polls until a deleted cluster answers 404; on timeout it prints its nodes and
// events.
// deleteCluster asks for the deletion until an answer is known. DELETE is idempotent, so a
// 503 "outcome unknown" (leadership moved mid-write, as happens on a loaded machine) is
// simply asked again.
func (f *fleet) deleteCluster(id string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last error
	err := poll.Until(ctx, 100*time.Millisecond, func() (bool, error) {
		last = f.anyClient().DeleteCluster(ctx, id)
		switch client.Code(last) {
		case "", v1.CodeNotFound:
			return true, nil
		case v1.CodeUnavailable:
			return false, nil
		}
		return false, last
	})
	if err != nil {
		f.t.Fatalf("delete cluster %s: %v (last answer: %v)", id, err, last)
	}
}

func (f *fleet) waitGone(id string, timeout time.Duration) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		_, err := f.anyClient().GetCluster(ctx, id)
		return client.Code(err) == v1.CodeNotFound, nil
	})
	if err != nil {
		nodes, _ := f.anyClient().ClusterNodes(context.Background(), id)
		f.t.Fatalf("cluster %s not gone after %v; nodes: %+v\nevents:\n%s", id, timeout, nodes, f.eventLog(id))
	}
}

// anyClient talks to some running replica (the first one may be stopped).
func (f *fleet) anyClient() *apiClient {
	for _, r := range f.c.Replicas {
		if r.Running() {
			return r.Client()
		}
	}
	return f.c.Client()
}

func (f *fleet) events(id string) []v1.Event {
	l, err := f.anyClient().ClusterEvents(context.Background(), id, 0)
	if err != nil {
		return nil
	}
	return l.Items
}

func (f *fleet) eventLog(id string) string {
	var b strings.Builder
	for _, e := range f.events(id) {
		fmt.Fprintf(&b, "  %d %s %s %s\n", e.Seq, e.HostID, e.Type, e.Message)
	}
	return b.String()
}

// initRuns counts `kubeadm init` runs (not version probes) on every host since the start.
func (f *fleet) initRuns(t *testing.T) map[string]int {
	t.Helper()
	inv, err := kubefake.Invocations(f.fakeState)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, i := range inv {
		if i.Tool == "kubeadm" && len(i.Args) > 0 && i.Args[0] == "init" {
			out[i.Root]++
		}
	}
	return out
}

// leftovers lists what is under a host's root beyond what it had before we came.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		// The Kubernetes binaries a node installs are host software, as a package would
		// be: they stay, and the next node on the host installs its own version over them.
		installed := []string{"usr/bin/kubeadm", "usr/bin/kubectl", "usr/bin/kubelet"}
		if d.IsDir() || seeded[rel] != "" || slices.Contains([]string{"run/containerd/containerd.sock"}, rel) || slices.Contains(installed, rel) {
			return nil
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

type apiClient = client.Client

func clientListHosts(infraID string) client.ListOptions {
	return client.ListOptions{InfraID: infraID, PerPage: 100}
}

// fakeVIP stands in for agent/vip at the edge of the machine (no kernel address, no ARP):
// it takes the VIP whenever the coordinators say so, and reports its API server ready while
// the host's kube-apiserver static pod manifest exists, as the real one's readyz would.
// It reports only changes, like the real one.
type fakeVIP struct {
	manifest string
	mu       sync.Mutex
	assigned map[string]*agentv1.VIPAssignment
	sent     map[string]*agentv1.VIPStatus
	poke     chan struct{}
}

func newFakeVIP(root string) *fakeVIP {
	return &fakeVIP{manifest: filepath.Join(root, "etc/kubernetes/manifests/kube-apiserver.yaml"),
		assigned: map[string]*agentv1.VIPAssignment{}, sent: map[string]*agentv1.VIPStatus{}, poke: make(chan struct{}, 1)}
}

func (v *fakeVIP) SetVIP(a *agentv1.VIPAssignment) {
	v.mu.Lock()
	if old := v.assigned[a.GetClusterId()]; old == nil || a.GetEpoch() >= old.GetEpoch() {
		v.assigned[a.GetClusterId()] = a
	}
	v.mu.Unlock()
	select {
	case v.poke <- struct{}{}:
	default:
	}
}

func (v *fakeVIP) run(ctx context.Context, cl *coordclient.Client) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-v.poke:
		}
		_, err := os.Stat(v.manifest)
		ready := err == nil
		v.mu.Lock()
		for id, a := range v.assigned {
			st := &agentv1.VIPStatus{ClusterId: id, Epoch: a.GetEpoch(), Holding: a.GetHolder(), Ready: ready}
			if old := v.sent[id]; old == nil || old.GetEpoch() != st.GetEpoch() || old.GetHolding() != st.GetHolding() || old.GetReady() != st.GetReady() {
				v.sent[id] = st
				cl.ReportVIP(st)
			}
		}
		v.mu.Unlock()
	}
}
