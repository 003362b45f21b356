package steps

import (
	"context"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/deployme/deployme/agent/artifacts"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Upgrades (docs/steps.md): the binaries of the target version come from the coordinators'
// artifact store, by hash, never from the internet. kubeadm is replaced before it runs (the
// new kubeadm upgrades the control plane or the node's configuration); kubelet and kubectl
// after, and then the kubelet restarts on the new binary.

// upgradeBinaries are installed in this order.
var upgradeBinaries = []string{"kubeadm", "kubelet", "kubectl"}

// binDir is where the binaries live on a host (kubeadm's packages put them there too).
const binDir = "/usr/bin"

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

type upgradeStep struct {
	apply    bool // kubeadm upgrade apply (the first control plane) or kubeadm upgrade node
	version  string
	binaries map[string]artifacts.Want
	urls     []string
}

func parseUpgradeApply(p params, files []*agentv1.File) (step, error) {
	return parseUpgrade(p, files, true)
}

func parseUpgradeNode(p params, files []*agentv1.File) (step, error) {
	return parseUpgrade(p, files, false)
}

func parseUpgrade(p params, files []*agentv1.File, apply bool) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	s := &upgradeStep{apply: apply, binaries: map[string]artifacts.Want{}}
	var err error
	if s.version, err = p.version("kubernetes_version"); err != nil {
		return nil, err
	}
	if apply {
		if r, err := p.role(); err != nil {
			return nil, err
		} else if r == roleWorker {
			return nil, invalidf("kubeadm upgrade apply runs on a control plane, not a worker")
		}
	}
	if s.binaries, s.urls, err = parseArtifacts(p); err != nil {
		return nil, err
	}
	return s, nil
}

// done: kubeadm upgrade apply and node are idempotent at a version already reached, and
// installing a binary already in place downloads nothing.
func (s *upgradeStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

func (s *upgradeStep) run(ctx context.Context, j *job) (string, error) {
	if !exists(j.e.files, kubeletConf) {
		return "", failf(reasonIO, "%s is missing: this host is not a node", kubeletConf)
	}
	if err := install(ctx, j, s.binaries, s.urls, "kubeadm", s.version); err != nil {
		return "", err
	}
	args := []string{"upgrade", "node"}
	if s.apply {
		args = []string{"upgrade", "apply", s.version, "--yes"}
	}
	if _, err := j.mustRun(ctx, toolKubeadm, append(args, j.rootfs()...)...); err != nil {
		return "", err
	}
	for _, name := range upgradeBinaries[1:] {
		if err := install(ctx, j, s.binaries, s.urls, name, s.version); err != nil {
			return "", err
		}
	}
	if err := j.e.cfg.RestartKubelet(ctx); err != nil {
		return "", wrapf(reasonIO, err, "restarting the kubelet")
	}
	if s.apply {
		return "control plane upgraded to " + s.version + " (kubeadm upgrade apply)", nil
	}
	return "node upgraded to " + s.version + " (kubeadm upgrade node)", nil
}

// parseArtifacts reads the binaries to install (artifacts: name=sha256:size, comma-separated)
// and the coordinators to get them from (artifact_urls).
func parseArtifacts(p params) (map[string]artifacts.Want, []string, error) {
	binaries := map[string]artifacts.Want{}
	var urls []string
	list, err := p.required("artifacts")
	if err != nil {
		return nil, nil, err
	}
	for _, item := range strings.Split(list, ",") {
		name, rest, ok1 := strings.Cut(item, "=")
		sum, size, ok2 := strings.Cut(rest, ":")
		n, err := strconv.ParseInt(size, 10, 64)
		if !ok1 || !ok2 || err != nil || n <= 0 || !sha256Hex.MatchString(sum) || !slices.Contains(upgradeBinaries, name) {
			return nil, nil, invalidf("artifacts item %q is not <kubeadm|kubelet|kubectl>=<sha256>:<size>", item)
		}
		if _, dup := binaries[name]; dup {
			return nil, nil, invalidf("artifacts name %s twice", name)
		}
		binaries[name] = artifacts.Want{Name: name, SHA256: sum, Size: n}
	}
	for _, name := range upgradeBinaries {
		if _, ok := binaries[name]; !ok {
			return nil, nil, invalidf("artifacts has no %s", name)
		}
	}
	raw, err := p.required("artifact_urls")
	if err != nil {
		return nil, nil, err
	}
	for _, u := range strings.Split(raw, ",") {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil || pu.RawQuery != "" || strings.Trim(pu.Path, "/") != "" {
			return nil, nil, invalidf("artifact_urls item %q is not http(s)://host:port", u)
		}
		urls = append(urls, strings.TrimSuffix(u, "/"))
	}
	return binaries, urls, nil
}

// install puts one binary in place from the coordinators, checked by hash.
func install(ctx context.Context, j *job, binaries map[string]artifacts.Want, urls []string, name, version string) error {
	f := artifacts.Fetcher{Client: j.e.cfg.HTTPClient, BaseURLs: urls}
	changed, err := f.Install(ctx, binaries[name], j.hostPath(binDir+"/"+name))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return wrapf(reasonArtifact, err, "installing %s %s", name, version)
	}
	if changed {
		j.progress("installed " + name + " " + version)
	}
	return nil
}

// ---- install ----

// installStep puts a cluster's Kubernetes binaries on a node before its preflight: a node
// that joins a cluster after an upgrade gets the version the cluster runs.
type installStep struct {
	version  string
	binaries map[string]artifacts.Want
	urls     []string
}

func parseInstall(p params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	s := &installStep{}
	var err error
	if s.version, err = p.version("kubernetes_version"); err != nil {
		return nil, err
	}
	if s.binaries, s.urls, err = parseArtifacts(p); err != nil {
		return nil, err
	}
	return s, nil
}

// done: installing a binary already in place downloads nothing.
func (s *installStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

func (s *installStep) run(ctx context.Context, j *job) (string, error) {
	for _, name := range upgradeBinaries {
		if err := install(ctx, j, s.binaries, s.urls, name, s.version); err != nil {
			return "", err
		}
	}
	return "kubeadm, kubelet and kubectl " + s.version + " in place", nil
}
