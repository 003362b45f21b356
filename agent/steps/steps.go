package steps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// step is one named step of docs/steps.md, its parameters already checked.
type step interface {
	// done is the "needs to run?" check: whether the step's work is already in place, and
	// then the message it succeeds with. Steps whose action is itself idempotent and cheap
	// say no and always act.
	done(ctx context.Context, j *job) (msg string, ok bool, err error)
	// run does the work and returns the message the step succeeds with.
	run(ctx context.Context, j *job) (string, error)
}

// parseFunc checks an assignment's parameters and files and returns its step. Every error
// is reason invalid_params: nothing has touched the host yet.
type parseFunc func(p params, files []*agentv1.File) (step, error)

// stepTable maps step names to their parsers. The names are part of the contract.
var stepTable = map[string]parseFunc{
	"preflight":    parsePreflight,
	"prepare":      parsePrepare,
	"pki":          parsePKI,
	"init":         parseInit,
	"cni":          parseCNI,
	"credentials":  parseCredentials,
	"join":         parseJoin,
	"ready":        parseReady,
	"drain":        parseDrain,
	"delete-node":  parseDeleteNode,
	"reset":        parseReset,
	"etcd-check":   parseEtcdCheck,
	"etcd-cleanup": parseEtcdCleanup,
	"etcd-remove":  parseEtcdRemove,
	// An upgrade's drain is a drain: only its place in the plan differs.
	"upgrade-drain": parseDrain,
	"upgrade-apply": parseUpgradeApply,
	"upgrade-node":  parseUpgradeNode,
	"uncordon":      parseUncordon,
	"install":       parseInstall,
}

// Host paths of docs/steps.md ("Files on the host").
const (
	deploymeDir    = "/etc/deployme"
	initConfigPath = "/etc/deployme/kubeadm-init.yaml"
	// initDoneMarker is written when kubeadm init has returned success on this host.
	initDoneMarker  = "/etc/deployme/init-done"
	joinConfigPath  = "/etc/deployme/kubeadm-join.yaml"
	cniManifestPath = "/etc/deployme/cni.yaml"

	kubernetesDir     = "/etc/kubernetes"
	pkiDir            = "/etc/kubernetes/pki"
	adminConf         = "/etc/kubernetes/admin.conf"
	kubeletConf       = "/etc/kubernetes/kubelet.conf"
	apiServerManifest = "/etc/kubernetes/manifests/kube-apiserver.yaml"
	etcdManifest      = "/etc/kubernetes/manifests/etcd.yaml"
	// bootstrapKubeletConf and kubeletConfig are written by a join before kubelet.conf.
	bootstrapKubeletConf = "/etc/kubernetes/bootstrap-kubelet.conf"
	kubeletConfig        = "/var/lib/kubelet/config.yaml"
	kubeletDataDir       = "/var/lib/kubelet"
	etcdDataDir          = "/var/lib/etcd"

	modulesConf    = "/etc/modules-load.d/deployme-k8s.conf"
	sysctlConf     = "/etc/sysctl.d/99-deployme-k8s.conf"
	containerdConf = "/etc/containerd/conf.d/deployme.toml"
	// cniConf is written on each node by the CNI DaemonSet the coordinator installs.
	cniConf = "/etc/cni/net.d/10-deployme.conflist"

	kubeletBinary    = "/usr/bin/kubelet"
	containerdSocket = "/run/containerd/containerd.sock"
	procSwaps        = "/proc/swaps"
)

// clusterPKI is what the pki step must receive: the CAs shared by every control plane and the
// service-account key pair. Without them kubeadm would mint its own, and the cluster would not
// trust anything the coordinator signs.
var clusterPKI = []string{
	pkiDir + "/ca.crt", pkiDir + "/ca.key",
	pkiDir + "/front-proxy-ca.crt", pkiDir + "/front-proxy-ca.key",
	pkiDir + "/etcd/ca.crt", pkiDir + "/etcd/ca.key",
	pkiDir + "/sa.key", pkiDir + "/sa.pub",
}

// Our files outside the trees kubeadm owns; reset removes exactly these, and the trees.
var (
	ourFiles = []string{
		initConfigPath, initDoneMarker, joinConfigPath, cniManifestPath,
		modulesConf, sysctlConf, containerdConf, cniConf,
	}
	kubeadmTrees = []string{kubernetesDir, kubeletDataDir, etcdDataDir}
)

// takesNoFiles is the file check of steps that have none.
func takesNoFiles(files []*agentv1.File) error {
	if len(files) > 0 {
		return invalidf("this step takes no files, got %d", len(files))
	}
	return nil
}

// ---- preflight ----

// Ports kubeadm's components bind: API server, kubelet, controller manager, scheduler, etcd.
var (
	controlPlanePorts = []int{6443, 10250, 10257, 10259, 2379, 2380}
	workerPorts       = []int{10250}
)

type preflightStep struct {
	version string
	ports   []int
}

func parsePreflight(p params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	role, err := p.role()
	if err != nil {
		return nil, err
	}
	version, err := p.version("kubernetes_version")
	if err != nil {
		return nil, err
	}
	s := &preflightStep{version: version, ports: controlPlanePorts}
	if role == roleWorker {
		s.ports = workerPorts
	}
	return s, nil
}

// done: the checks are cheap and their answer can change at any time.
func (s *preflightStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

// run makes the checks in the order of docs/steps.md; the first failure is the reason.
func (s *preflightStep) run(ctx context.Context, j *job) (string, error) {
	// With --rootfs, the kubeadm that answers is the root's (an upgraded host's new one).
	res, err := j.command(ctx, toolKubeadm, append([]string{"version", "-o", "short"}, j.rootfs()...)...)
	switch {
	case err != nil && ctx.Err() != nil:
		return "", err
	case err != nil:
		return "", wrapf(reasonKubeadmMissing, err, "kubeadm cannot be run")
	case res.ExitCode != 0:
		return "", failf(reasonKubeadmVersion, "kubeadm version exited with status %d: %s", res.ExitCode, errorLine(res.Tail))
	}
	if got := lastLine(res.Tail); got != s.version {
		return "", failf(reasonKubeadmVersion, "kubeadm is %q, the cluster needs %s", got, s.version)
	}
	files := j.e.files
	if fi, err := files.Stat(kubeletBinary); err != nil || fi.IsDir() {
		return "", failf(reasonKubeletMissing, "no kubelet at %s", kubeletBinary)
	}
	// Existence is enough: the socket is created by containerd and removed when it stops
	// cleanly, and a fake host in a test directory cannot hold a real one.
	if fi, err := files.Stat(containerdSocket); err != nil || fi.IsDir() {
		return "", failf(reasonContainerRuntime, "no container runtime socket at %s", containerdSocket)
	}
	swaps, err := activeSwaps(files)
	if err != nil {
		return "", wrapf(reasonIO, err, "reading %s", procSwaps)
	}
	if len(swaps) > 0 {
		return "", failf(reasonSwap, "swap is on (%s); the kubelet refuses to run with swap", strings.Join(swaps, ", "))
	}
	for _, port := range s.ports {
		if err := j.e.cfg.CheckPort(port); err != nil {
			return "", wrapf(reasonPortPrefix+strconv.Itoa(port), err, "port %d is in use", port)
		}
	}
	return "preflight checks passed", nil
}

// activeSwaps lists the swap areas of /proc/swaps (a header line, then one line per area). A
// kernel without swap support has no /proc/swaps, hence no swap.
func activeSwaps(files hostFiles) ([]string, error) {
	b, err := files.ReadFile(procSwaps)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var swaps []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for first := true; sc.Scan(); first = false {
		fields := strings.Fields(sc.Text())
		if first || len(fields) == 0 {
			continue
		}
		swaps = append(swaps, fields[0])
	}
	return swaps, sc.Err()
}

// ---- prepare ----

// What kubeadm's own preflight wants of the kernel and the container runtime.
var (
	kernelModules = []string{"overlay", "br_netfilter"}
	prepareFiles  = []struct {
		path    string
		content string
	}{
		{modulesConf, "# Written by the deployme agent; removed by reset.\noverlay\nbr_netfilter\n"},
		{sysctlConf, "# Written by the deployme agent; removed by reset.\n" +
			"net.bridge.bridge-nf-call-iptables = 1\n" +
			"net.bridge.bridge-nf-call-ip6tables = 1\n" +
			"net.ipv4.ip_forward = 1\n"},
		// The kubelet defaults to the systemd cgroup driver; runc must use the same one.
		{containerdConf, "# Written by the deployme agent; removed by reset.\n" +
			"version = 3\n\n" +
			"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n" +
			"  SystemdCgroup = true\n"},
	}
)

type prepareStep struct{}

func parsePrepare(_ params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	return prepareStep{}, nil
}

// done: rewriting equal files is skipped in run, and loading modules or applying sysctls
// again is harmless; an agent killed between writing the files and loading the modules must
// still load them when re-sent.
func (prepareStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

func (prepareStep) run(ctx context.Context, j *job) (string, error) {
	for _, f := range prepareFiles {
		if sameFile(j.e.files, f.path, []byte(f.content), defaultFileMode) {
			continue
		}
		if err := j.write(f.path, []byte(f.content), defaultFileMode); err != nil {
			return "", err
		}
	}
	if err := j.e.kernel.LoadModules(ctx, kernelModules); err != nil {
		return "", wrapf(reasonIO, err, "loading kernel modules")
	}
	if err := j.e.kernel.ApplySysctls(ctx, sysctlConf); err != nil {
		return "", wrapf(reasonIO, err, "applying %s", sysctlConf)
	}
	return "host prepared", nil
}

// ---- pki ----

type pkiStep struct{ files []hostFile }

func parsePKI(_ params, in []*agentv1.File) (step, error) {
	files, err := validateFiles(in, func(p string) bool { return strings.HasPrefix(p, pkiDir+"/") })
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for _, f := range files {
		got[f.path] = true
	}
	for _, p := range clusterPKI {
		if !got[p] {
			return nil, invalidf("file %s is missing", p)
		}
	}
	return &pkiStep{files: files}, nil
}

func (s *pkiStep) done(_ context.Context, j *job) (string, bool, error) {
	for _, f := range s.files {
		if !sameFile(j.e.files, f.path, f.content, f.mode) {
			return "", false, nil
		}
	}
	return "cluster certificates already in place", true, nil
}

func (s *pkiStep) run(_ context.Context, j *job) (string, error) {
	for _, f := range s.files {
		if err := j.write(f.path, f.content, f.mode); err != nil {
			return "", err
		}
	}
	return "cluster certificates written", nil
}

// checkPKI stops init and control-plane joins that would otherwise let kubeadm generate CAs
// of its own.
func checkPKI(j *job) error {
	for _, p := range clusterPKI {
		if !exists(j.e.files, p) {
			return failf(reasonIO, "%s is missing: the pki step must run first", p)
		}
	}
	return nil
}

// ---- reset ----

type resetStep struct{}

func parseReset(_ params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	return resetStep{}, nil
}

func (resetStep) done(_ context.Context, j *job) (string, bool, error) {
	for _, p := range append(slices.Clone(ourFiles), kubeadmTrees...) {
		if exists(j.e.files, p) {
			return "", false, nil
		}
	}
	if emptyDir(j.e.files, deploymeDir) {
		return "", false, nil
	}
	return "nothing to reset", true, nil
}

func (resetStep) run(ctx context.Context, j *job) (string, error) {
	installed, err := kubeadmRan(j.e.files)
	if err != nil {
		return "", wrapf(reasonIO, err, "reading %s", kubernetesDir)
	}
	// kubeadm reset stops the kubelet and static pods, leaves etcd and cleans up iptables and
	// IPVS; none of which exists if kubeadm never ran, when it would only fail.
	if installed {
		if _, err := j.mustRun(ctx, toolKubeadm, append([]string{"reset", "--force"}, j.rootfs()...)...); err != nil {
			return "", err
		}
	}
	for _, p := range ourFiles {
		if err := j.e.files.Remove(p); err != nil {
			return "", wrapf(reasonIO, err, "removing %s", p)
		}
	}
	for _, p := range kubeadmTrees {
		if err := j.e.files.RemoveAll(p); err != nil {
			return "", wrapf(reasonIO, err, "removing %s", p)
		}
	}
	// /etc/deployme is ours, but someone may keep other files there: only an empty one goes.
	if emptyDir(j.e.files, deploymeDir) {
		if err := j.e.files.Remove(deploymeDir); err != nil {
			return "", wrapf(reasonIO, err, "removing %s", deploymeDir)
		}
	}
	if installed {
		return "reset", nil
	}
	return "reset (kubeadm never ran)", nil
}

func emptyDir(files hostFiles, name string) bool {
	entries, err := files.ReadDir(name)
	return err == nil && len(entries) == 0
}

// kubeadmRan reports whether kubeadm wrote anything: /etc/kubernetes holding more than the
// pki step's certificates, or a kubelet or etcd data directory.
func kubeadmRan(files hostFiles) (bool, error) {
	if exists(files, kubeletDataDir) || exists(files, etcdDataDir) {
		return true, nil
	}
	entries, err := files.ReadDir(kubernetesDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Name() != "pki" {
			return true, nil
		}
	}
	return false, nil
}
