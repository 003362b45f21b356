package steps

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/agent/kubeadm"
	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

func TestPreflightFailures(t *testing.T) {
	tests := []struct {
		name   string
		role   string
		opt    hostOption
		change func(t *testing.T, root string)
		reason string
	}{
		{name: "passes", role: roleInit, reason: ""},
		{
			name: "kubeadm missing", role: roleWorker, reason: "preflight.kubeadm_missing",
			opt: func(c *Config) { c.Runner = failingRunner{Runner: c.Runner, tool: "kubeadm"} },
		},
		{
			name: "kubeadm version", role: roleWorker, reason: "preflight.kubeadm_version",
			opt: func(c *Config) {
				r := c.Runner.(kubefake.Runner)
				r.Version = "v1.36.0"
				c.Runner = r
			},
		},
		{
			name: "kubelet missing", role: roleWorker, reason: "preflight.kubelet_missing",
			change: func(t *testing.T, root string) { remove(t, root, kubeletBinary) },
		},
		{
			name: "no container runtime", role: roleWorker, reason: "preflight.container_runtime",
			change: func(t *testing.T, root string) { remove(t, root, containerdSocket) },
		},
		{
			name: "swap on", role: roleWorker, reason: "preflight.swap",
			change: func(t *testing.T, root string) {
				writeHostFile(t, root, procSwaps, fixtures[procSwaps]+"/swapfile  file  4194300  0  -2\n", 0o444)
			},
		},
		{
			name: "apiserver port busy", role: roleControlPlane, reason: "preflight.port_6443",
			opt: busyPort(6443),
		},
		{
			name: "etcd port busy", role: roleInit, reason: "preflight.port_2380",
			opt: busyPort(2380),
		},
		{
			name: "kubelet port busy on a worker", role: roleWorker, reason: "preflight.port_10250",
			opt: busyPort(10250),
		},
		{
			name: "control-plane port free to workers", role: roleWorker, reason: "",
			opt: busyPort(6443),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []hostOption
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			h := newHost(t, "n1", t.TempDir(), opts...)
			if tt.change != nil {
				tt.change(t, h.root)
			}
			final, _ := h.run(t, assign("n1.preflight.1", "preflight", common(tt.role, "n1")))
			if final.GetReason() != tt.reason {
				t.Fatalf("reason %q (%s), want %q", final.GetReason(), final.GetMessage(), tt.reason)
			}
			wantState := stateFailed
			if tt.reason == "" {
				wantState = stateSucceeded
			}
			if final.GetState() != wantState {
				t.Fatalf("state %s, want %s", final.GetState(), wantState)
			}
		})
	}
}

func busyPort(port int) hostOption {
	return func(c *Config) {
		c.CheckPort = func(p int) error {
			if p == port {
				return errors.New("address already in use")
			}
			return nil
		}
	}
}

func remove(t *testing.T, root, p string) {
	t.Helper()
	if err := os.Remove(filepath.Join(root, p)); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidParams(t *testing.T) {
	pki := clusterPKIFiles(t)
	cp := with(common(roleInit, "cp1"),
		"advertise_address", "10.0.0.10", "control_plane_endpoint", testEndpoint)
	worker := with(common(roleWorker, "w1"),
		"token", workerToken(0), "ca_cert_hash", "sha256:"+strings.Repeat("ab", 32), "control_plane_endpoint", testEndpoint)
	creds := with(common(roleControlPlane, "cp1"), "token", workerToken(0), "ttl", "15m", "for_node", "w1")
	file := func(p string, mode uint32) *agentv1.File {
		return &agentv1.File{Path: p, Mode: mode, Content: []byte("x")}
	}
	tests := []struct {
		name   string
		step   string
		params map[string]string
		files  []*agentv1.File
	}{
		{"unknown step", "format-disk", cp, nil},
		{"no step name", "", cp, nil},
		{"simulated typo", "prepare", with(cp, "simulated", "yes"), nil},
		{"preflight without role", "preflight", with(cp, "role", ""), nil},
		{"preflight bad role", "preflight", with(cp, "role", "master"), nil},
		{"preflight bad version", "preflight", with(cp, "kubernetes_version", "1.37"), nil},
		{"prepare with files", "prepare", cp, []*agentv1.File{cniManifest()}},
		{"pki missing a CA", "pki", cp, pki[1:]},
		{"pki escaping file", "pki", cp, append(slices.Clone(pki), file("/etc/kubernetes/pki/../admin.conf", 0o600))},
		{"pki file outside", "pki", cp, append(slices.Clone(pki), file("/etc/shadow", 0o600))},
		{"pki relative file", "pki", cp, append(slices.Clone(pki), file("etc/kubernetes/pki/x.crt", 0o644))},
		{"pki setuid mode", "pki", cp, append(slices.Clone(pki), file("/etc/kubernetes/pki/x.crt", 0o4755))},
		{"pki cni file", "pki", cp, append(slices.Clone(pki), cniManifest())},
		{"init bad pod subnet", "init", with(cp, "pod_subnet", "10.244.0.0"), nil},
		{"init no endpoint", "init", with(cp, "control_plane_endpoint", ""), nil},
		{"init bad SAN", "init", with(cp, "cert_sans", "-bad-"), nil},
		{"init with files", "init", cp, pki},
		{"cni without manifest", "cni", cp, nil},
		{"cni other file", "cni", cp, []*agentv1.File{file("/etc/deployme/other.yaml", 0o644)}},
		{"cni manifest twice", "cni", cp, []*agentv1.File{cniManifest(), cniManifest()}},
		{"credentials flag as token", "credentials", with(creds, "token", "--help"), nil},
		{"credentials bad ttl", "credentials", with(creds, "ttl", "forever"), nil},
		{"credentials negative ttl", "credentials", with(creds, "ttl", "-1m"), nil},
		{"credentials no for_node", "credentials", with(creds, "for_node", ""), nil},
		{"join as the first control plane", "join", with(worker, "role", roleInit), nil},
		{"join bad hash", "join", with(worker, "ca_cert_hash", "md5:00"), nil},
		{"join control plane without address", "join", with(worker, "role", roleControlPlane), nil},
		{"ready no timeout", "ready", with(worker), nil},
		{"ready node name flag", "ready", with(worker, "node_name", "-oyaml", "timeout", "1m"), nil},
		{"reset with files", "reset", worker, []*agentv1.File{cniManifest()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := t.TempDir()
			h := newHost(t, "n1", fake)
			final, updates := h.run(t, assign("n1."+tt.step+".1", tt.step, tt.params, tt.files...))
			if final.GetState() != stateFailed || final.GetReason() != reasonInvalidParams {
				t.Fatalf("%v; want failed with reason invalid_params", final)
			}
			if len(updates) != 1 {
				t.Errorf("sent %d updates; an invalid step must fail before it starts", len(updates))
			}
			if got := invocations(t, fake); len(got) != 0 {
				t.Errorf("commands ran: %v", got)
			}
			if diff := cmp.Diff(fixtureTree(), walk(t, h.root)); diff != "" {
				t.Errorf("the host changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPKIFiles(t *testing.T) {
	h := newHost(t, "cp1", t.TempDir())
	pki := clusterPKIFiles(t)
	// A key sent world-readable is still written 0600.
	pki[1].Mode = 0o644
	h.mustSucceed(t, assign("cp1.pki.1", "pki", common(roleInit, "cp1"), pki...))
	for _, f := range pki {
		fi, err := os.Stat(filepath.Join(h.root, f.GetPath()))
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o644)
		if strings.HasSuffix(f.GetPath(), ".key") {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", f.GetPath(), fi.Mode().Perm(), want)
		}
	}
	final := h.mustSucceed(t, assign("cp1.pki.2", "pki", common(roleInit, "cp1"), pki...))
	if !strings.Contains(final.GetMessage(), "already") {
		t.Errorf("second pki: %q, want it to find the files in place", final.GetMessage())
	}
}

// failingFiles is a host whose file system refuses writes.
type failingFiles struct{ hostFiles }

func (failingFiles) WriteFile(string, []byte, fs.FileMode) error {
	return &fs.PathError{Op: "write", Path: "x", Err: errors.New("no space left on device")}
}

func TestWriteFailureIsIO(t *testing.T) {
	h := newHost(t, "w1", t.TempDir())
	h.e.files = failingFiles{h.e.files}
	final, _ := h.run(t, assign("w1.prepare.1", "prepare", common(roleWorker, "w1")))
	if final.GetState() != stateFailed || final.GetReason() != reasonIO {
		t.Fatalf("%v; want failed with reason io", final)
	}
}

// kernelRecorder is a hostKernel that remembers what it was asked.
type kernelRecorder struct{ calls []string }

func (k *kernelRecorder) LoadModules(_ context.Context, m []string) error {
	k.calls = append(k.calls, "modprobe "+strings.Join(m, " "))
	return nil
}

func (k *kernelRecorder) ApplySysctls(_ context.Context, f string) error {
	k.calls = append(k.calls, "sysctl -p "+f)
	return nil
}

func TestPrepare(t *testing.T) {
	h := newHost(t, "w1", t.TempDir())
	if _, ok := h.e.kernel.(noKernel); !ok {
		t.Fatalf("an executor on root %s has kernel %T, want noKernel", h.root, h.e.kernel)
	}
	k := &kernelRecorder{}
	h.e.kernel = k
	h.mustSucceed(t, assign("w1.prepare.1", "prepare", common(roleWorker, "w1")))
	h.mustSucceed(t, assign("w1.prepare.2", "prepare", common(roleWorker, "w1")))
	want := []string{
		"modprobe overlay br_netfilter", "sysctl -p " + sysctlConf,
		"modprobe overlay br_netfilter", "sysctl -p " + sysctlConf,
	}
	if diff := cmp.Diff(want, k.calls); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
	for _, p := range []string{modulesConf, sysctlConf, containerdConf} {
		if _, err := os.Stat(filepath.Join(h.root, p)); err != nil {
			t.Error(err)
		}
	}

	e, err := New(Config{Root: "/", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.kernel.(commandKernel); !ok {
		t.Errorf("an executor on / has kernel %T, want commandKernel", e.kernel)
	}
}

func TestReset(t *testing.T) {
	c := newCluster(t, 1)
	c.initControlPlane(t)
	c.joinWorker(t, 0)
	// Files that are not ours must survive.
	bystanders := []string{"/etc/sysctl.d/10-admin.conf", "/etc/deployme/agent.yaml", "/var/lib/other/data"}
	for _, h := range []*host{c.cp, c.workers[0]} {
		for _, p := range bystanders {
			writeHostFile(t, h.root, p, "keep\n", 0o644)
		}
	}
	wantTree := fixtureTree()
	for _, p := range bystanders {
		wantTree[p] = "file"
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			wantTree[d] = "dir"
		}
	}
	for _, d := range []string{"/etc/modules-load.d", "/etc/sysctl.d", "/etc/containerd", "/etc/containerd/conf.d", "/var/lib"} {
		wantTree[d] = "dir" // system directories prepare may have created; empty now
	}

	for _, h := range []*host{c.cp, c.workers[0]} {
		final := h.mustSucceed(t, assign(h.name+".reset.1", "reset", common(roleWorker, h.name)))
		if final.GetMessage() != "reset" {
			t.Errorf("%s: message %q", h.name, final.GetMessage())
		}
		if diff := cmp.Diff(wantTree, walk(t, h.root)); diff != "" {
			t.Errorf("%s: tree after reset (-want +got):\n%s", h.name, diff)
		}
		// Idempotent: a second reset finds nothing and runs nothing.
		before := invocations(t, c.fake, h)
		final = h.mustSucceed(t, assign(h.name+".reset.2", "reset", common(roleWorker, h.name)))
		if final.GetMessage() != "nothing to reset" {
			t.Errorf("%s: second reset: %q", h.name, final.GetMessage())
		}
		if diff := cmp.Diff(before, invocations(t, c.fake, h)); diff != "" {
			t.Errorf("%s: second reset ran commands:\n%s", h.name, diff)
		}
		if n := count(before, "kubeadm reset --force --rootfs <"+h.name+">"); n != 1 {
			t.Errorf("%s: kubeadm reset ran %d times, want 1", h.name, n)
		}
	}
}

func TestResetOfPreparedHostSkipsKubeadm(t *testing.T) {
	fake := t.TempDir()
	h := newHost(t, "cp1", fake)
	h.mustSucceed(t, assign("cp1.prepare.1", "prepare", common(roleInit, "cp1")))
	h.mustSucceed(t, assign("cp1.pki.1", "pki", common(roleInit, "cp1"), clusterPKIFiles(t)...))
	final := h.mustSucceed(t, assign("cp1.reset.1", "reset", common(roleInit, "cp1")))
	if !strings.Contains(final.GetMessage(), "kubeadm never ran") {
		t.Errorf("message %q", final.GetMessage())
	}
	if got := invocations(t, fake); len(got) != 0 {
		t.Errorf("commands ran: %v", got)
	}
	for _, p := range []string{kubernetesDir, deploymeDir, modulesConf, sysctlConf, containerdConf} {
		if _, err := os.Stat(filepath.Join(h.root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived the reset: %v", p, err)
		}
	}
}

func TestResetOfEmptyHost(t *testing.T) {
	fake := t.TempDir()
	h := newHost(t, "w1", fake)
	final := h.mustSucceed(t, assign("w1.reset.1", "reset", common(roleWorker, "w1")))
	if final.GetMessage() != "nothing to reset" {
		t.Errorf("message %q", final.GetMessage())
	}
	if got := invocations(t, fake); len(got) != 0 {
		t.Errorf("commands ran: %v", got)
	}
	if diff := cmp.Diff(fixtureTree(), walk(t, h.root)); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}

// fixtureTree is the tree of a host the agent never touched.
func fixtureTree() map[string]string {
	tree := map[string]string{}
	for p := range fixtures {
		tree[p] = "file"
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			tree[d] = "dir"
		}
	}
	return tree
}

// walk lists everything under root as host path → "file" or "dir".
func walk(t *testing.T, root string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		kind := "file"
		if d.IsDir() {
			kind = "dir"
		}
		tree["/"+filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))] = kind
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// commandLog is a kubeadm.Runner that records each command line and exits with exitCode.
type commandLog struct {
	calls    []string
	exitCode int
}

func (l *commandLog) Run(_ context.Context, cmd kubeadm.Command, _ func(string)) (kubeadm.Result, error) {
	l.calls = append(l.calls, cmd.Path+" "+strings.Join(cmd.Args, " "))
	return kubeadm.Result{ExitCode: l.exitCode, Tail: []string{"modprobe: FATAL: Module x not found"}}, nil
}

// prepareFile is the content prepare writes at p.
func prepareFile(t *testing.T, p string) string {
	t.Helper()
	for _, f := range prepareFiles {
		if f.path == p {
			return f.content
		}
	}
	t.Fatalf("prepare writes no %s", p)
	return ""
}

func TestKernelWritesSysctlsThroughProcfs(t *testing.T) {
	root, procSys := t.TempDir(), t.TempDir()
	writeHostFile(t, root, sysctlConf, prepareFile(t, sysctlConf), 0o644)
	// procSys stands for /proc/sys. bridge-nf-call-ip6tables already holds the value, with
	// no newline: a write would add one, so the content tells whether it was written.
	writeHostFile(t, procSys, "net/bridge/bridge-nf-call-iptables", "0\n", 0o644)
	writeHostFile(t, procSys, "net/bridge/bridge-nf-call-ip6tables", "1", 0o644)
	writeHostFile(t, procSys, "net/ipv4/ip_forward", "0\n", 0o644)
	log := &commandLog{}
	k := commandKernel{runner: log, files: rootFiles{root: root}, procSys: procSys}
	for range 2 { // the second time finds every value set and writes nothing
		if err := k.ApplySysctls(context.Background(), sysctlConf); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"/net/bridge/bridge-nf-call-iptables":  "1\n",
			"/net/bridge/bridge-nf-call-ip6tables": "1",
			"/net/ipv4/ip_forward":                 "1\n",
		}
		for p, content := range want {
			b, err := os.ReadFile(filepath.Join(procSys, p))
			if err != nil || string(b) != content {
				t.Errorf("%s: %q, %v; want %q", p, b, err, content)
			}
		}
	}
	if len(log.calls) != 0 {
		t.Errorf("commands ran: %q", log.calls)
	}

	// A key the kernel lacks (br_netfilter not loaded) is an error naming it; the other keys
	// are still written.
	if err := os.RemoveAll(filepath.Join(procSys, "net/bridge")); err != nil {
		t.Fatal(err)
	}
	writeHostFile(t, procSys, "net/ipv4/ip_forward", "0\n", 0o644)
	err := k.ApplySysctls(context.Background(), sysctlConf)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "net.bridge.bridge-nf-call-iptables") {
		t.Errorf("ApplySysctls = %v, want a not-exist error naming the key", err)
	}
	if b, _ := os.ReadFile(filepath.Join(procSys, "net/ipv4/ip_forward")); string(b) != "1\n" {
		t.Errorf("ip_forward %q after an error on another key, want 1", b)
	}
	if _, err := os.Stat(filepath.Join(procSys, "net/bridge/bridge-nf-call-iptables")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing key was created: %v", err)
	}
}

func TestParseSysctls(t *testing.T) {
	in := "# comment\n; also a comment\n\n" +
		"net.ipv4.ip_forward = 1\n" +
		"  net.ipv4.conf.eth0/100.rp_filter=2  \n" +
		"net/ipv4/conf/eth0.100/accept_ra = 0\n" +
		"-net.bridge.bridge-nf-call-iptables = 1\n" +
		"net.ipv4.ip_local_port_range = 32768 60999\n"
	got, err := parseSysctls([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []sysctl{
		{key: "net.ipv4.ip_forward", path: "net/ipv4/ip_forward", value: "1"},
		{key: "net.ipv4.conf.eth0/100.rp_filter", path: "net/ipv4/conf/eth0.100/rp_filter", value: "2"},
		{key: "net/ipv4/conf/eth0.100/accept_ra", path: "net/ipv4/conf/eth0.100/accept_ra", value: "0"},
		{key: "net.bridge.bridge-nf-call-iptables", path: "net/bridge/bridge-nf-call-iptables", value: "1", optional: true},
		{key: "net.ipv4.ip_local_port_range", path: "net/ipv4/ip_local_port_range", value: "32768 60999"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(sysctl{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"net.ipv4.ip_forward 1", "../../etc/shadow = x", "net..ipv4 = 1", "/net/ipv4 = 1", "net.ipv4.conf.*.rp_filter = 1", "= 1"} {
		if _, err := parseSysctls([]byte(bad + "\n")); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestKernelLoadsOnlyMissingModules(t *testing.T) {
	sysModule := t.TempDir()
	if err := os.Mkdir(filepath.Join(sysModule, "overlay"), 0o755); err != nil {
		t.Fatal(err)
	}
	log := &commandLog{}
	k := commandKernel{runner: log, sysModule: sysModule}
	if err := k.LoadModules(context.Background(), kernelModules); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"modprobe br_netfilter"}, log.calls); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	// Loaded now; a module named with '-' is found under its '_' name.
	if err := os.Mkdir(filepath.Join(sysModule, "br_netfilter"), 0o755); err != nil {
		t.Fatal(err)
	}
	log.calls = nil
	if err := k.LoadModules(context.Background(), []string{"overlay", "br_netfilter", "br-netfilter"}); err != nil {
		t.Fatal(err)
	}
	if len(log.calls) != 0 {
		t.Errorf("commands ran for loaded modules: %q", log.calls)
	}
	log.exitCode = 1
	if err := k.LoadModules(context.Background(), []string{"nf_conntrack"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("LoadModules with a failing modprobe = %v, want its error", err)
	}
	if err := k.LoadModules(context.Background(), []string{"../../etc"}); err == nil {
		t.Error("a module name with a path was accepted")
	}
}
