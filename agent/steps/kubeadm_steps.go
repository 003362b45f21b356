package steps

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/deployme/deployme/agent/kubeadm"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// configFileMode keeps the rendered kubeadm configs private: they hold bootstrap tokens.
const configFileMode = 0o600

// paramNames maps the renderers' field names back to ours, so that an invalid_params message
// names the parameter the coordinator sent.
var paramNames = map[string]string{
	"ClusterName":          "cluster_name",
	"KubernetesVersion":    "kubernetes_version",
	"NodeName":             "node_name",
	"AdvertiseAddress":     "advertise_address",
	"ControlPlaneEndpoint": "control_plane_endpoint",
	"PodSubnet":            "pod_subnet",
	"ServiceSubnet":        "service_subnet",
	"CertSANs":             "cert_sans",
	"Token":                "token",
	"CACertHash":           "ca_cert_hash",
}

// renderError turns a renderer's error into invalid_params.
func renderError(err error) error {
	var pe *kubeadm.ParamError
	if !errors.As(err, &pe) {
		return wrapf(reasonIO, err, "rendering the kubeadm configuration")
	}
	name, ok := paramNames[pe.Field]
	if !ok {
		name = pe.Field
	}
	return invalidf("invalid %s: %s", name, pe.Message)
}

// ---- init ----

// initTokenTTL is short: the init token is only a fallback, every join gets its own token from
// a credentials step.
const initTokenTTL = 10 * time.Minute

type initStep struct{ config []byte }

func parseInit(p params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	cfg, err := kubeadm.RenderInit(kubeadm.InitParams{
		ClusterName:          p["cluster_name"],
		KubernetesVersion:    p["kubernetes_version"],
		NodeName:             p["node_name"],
		AdvertiseAddress:     p["advertise_address"],
		ControlPlaneEndpoint: p["control_plane_endpoint"],
		PodSubnet:            p["pod_subnet"],
		ServiceSubnet:        p["service_subnet"],
		CertSANs:             p.list("cert_sans"),
		BootstrapToken:       newBootstrapToken(),
		BootstrapTokenTTL:    initTokenTTL,
		CertificatesDir:      pkiDir,
		CRISocket:            kubeadm.DefaultCRISocket,
	})
	if err != nil {
		return nil, renderError(err)
	}
	return &initStep{config: cfg}, nil
}

// done is true once a kubeadm init on this host ran to its end: the marker is written right
// after kubeadm returns success. The files kubeadm writes early (admin.conf, the API server
// manifest) are not enough: an init killed after them but before its last phases (config
// upload, bootstrap-token RBAC) would pass for a finished one, and no node could join.
func (s *initStep) done(_ context.Context, j *job) (string, bool, error) {
	if exists(j.e.files, initDoneMarker) {
		return "already initialised", true, nil
	}
	return "", false, nil
}

func (s *initStep) run(ctx context.Context, j *job) (string, error) {
	if err := checkPKI(j); err != nil {
		return "", err
	}
	if exists(j.e.files, adminConf) || exists(j.e.files, apiServerManifest) {
		// An init that did not reach its end: undo it first, or kubeadm's preflight refuses
		// to run over its files. The coordinator has not recorded an init for this cluster
		// (it would not have sent the step again), so no other node depends on it.
		if err := undoPartial(ctx, j, "undoing an init that did not finish", true); err != nil {
			return "", err
		}
	}
	if err := j.write(initConfigPath, s.config, configFileMode); err != nil {
		return "", err
	}
	args := append([]string{"init", "--config", initConfigPath, "--skip-token-print"}, j.rootfs()...)
	if _, err := j.mustRun(ctx, toolKubeadm, args...); err != nil {
		return "", err
	}
	if err := j.write(initDoneMarker, []byte("kubeadm init finished\n"), configFileMode); err != nil {
		return "", err
	}
	return "initialised", nil
}

// undoPartial runs kubeadm reset over an init or join that did not finish, and puts the
// cluster's CAs back on a control plane (kubeadm reset empties the certificates directory,
// and the coordinator sends them only once, with the pki step).
func undoPartial(ctx context.Context, j *job, why string, keepPKI bool) error {
	keep := map[string]saved{}
	if keepPKI {
		var err error
		if keep, err = savePKI(j); err != nil {
			return err
		}
	}
	j.progress(why)
	args := append([]string{"reset", "--force"}, j.rootfs()...)
	if _, err := j.mustRun(ctx, toolKubeadm, args...); err != nil {
		return err
	}
	for p, f := range keep {
		if err := j.write(p, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

type saved struct {
	data []byte
	mode os.FileMode
}

// savePKI reads the cluster CAs the pki step wrote.
func savePKI(j *job) (map[string]saved, error) {
	keep := map[string]saved{}
	for _, p := range clusterPKI {
		b, err := j.e.files.ReadFile(p)
		if err != nil {
			return nil, wrapf(reasonIO, err, "reading %s", p)
		}
		fi, err := j.e.files.Stat(p)
		if err != nil {
			return nil, wrapf(reasonIO, err, "reading %s", p)
		}
		keep[p] = saved{b, fi.Mode().Perm()}
	}
	return keep, nil
}

// partialJoinFiles are what a kubeadm join writes before it is done (kubelet.conf): any of
// them means an earlier join stopped half-way, and kubeadm's preflight refuses to run over
// them.
var partialJoinFiles = []string{
	apiServerManifest, etcdManifest, adminConf, bootstrapKubeletConf, kubeletConfig,
}

// tokenAlphabet is that of kubeadm bootstrap tokens.
const tokenAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// newBootstrapToken returns a random [a-z0-9]{6}.[a-z0-9]{16}. Bytes at or above the largest
// multiple of 36 are drawn again, so that every character is equally likely.
func newBootstrapToken() string {
	const limit = 256 - 256%len(tokenAlphabet)
	chars := make([]byte, 0, 6+16)
	buf := make([]byte, 32)
	for len(chars) < cap(chars) {
		rand.Read(buf) // never fails (crypto/rand, Go 1.24+)
		for _, b := range buf {
			if int(b) < limit && len(chars) < cap(chars) {
				chars = append(chars, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return string(chars[:6]) + "." + string(chars[6:])
}

// ---- cni ----

type cniStep struct{ manifest hostFile }

func parseCNI(_ params, in []*agentv1.File) (step, error) {
	files, err := validateFiles(in, func(p string) bool { return p == cniManifestPath })
	if err != nil {
		return nil, err
	}
	if len(files) != 1 {
		return nil, invalidf("file %s is missing", cniManifestPath)
	}
	return &cniStep{manifest: files[0]}, nil
}

// done: kubectl apply is declarative; applying the same manifest again changes nothing.
func (s *cniStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

func (s *cniStep) run(ctx context.Context, j *job) (string, error) {
	if err := j.write(s.manifest.path, s.manifest.content, s.manifest.mode); err != nil {
		return "", err
	}
	_, err := j.mustRun(ctx, toolKubectl,
		"--kubeconfig", j.hostPath(adminConf), "apply", "-f", j.hostPath(cniManifestPath))
	if err != nil {
		return "", err
	}
	return "CNI manifest applied", nil
}

// ---- credentials ----

type credentialsStep struct {
	token   string
	ttl     time.Duration
	forNode string
}

func parseCredentials(p params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	var s credentialsStep
	var err error
	if s.token, err = p.token("token"); err != nil {
		return nil, err
	}
	if s.ttl, err = p.duration("ttl"); err != nil {
		return nil, err
	}
	if s.forNode, err = p.nodeName("for_node"); err != nil {
		return nil, err
	}
	return &s, nil
}

// done: there is no cheaper check than creating the token, which is idempotent once an
// existing token counts as success (see run).
func (s *credentialsStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

func (s *credentialsStep) run(ctx context.Context, j *job) (string, error) {
	res, err := j.command(ctx, toolKubeadm, "token", "create", s.token,
		"--ttl", s.ttl.String(), "--kubeconfig", j.hostPath(adminConf))
	switch {
	case err != nil && ctx.Err() != nil:
		return "", err
	case err != nil:
		return "", wrapf(reasonIO, err, "kubeadm cannot be run")
	case res.ExitCode == 0:
		return "bootstrap token created for " + s.forNode, nil
	// kubeadm has no exit status of its own for a duplicate token; its message is the only
	// signal, and docs/steps.md makes it part of the contract. An earlier run of this very
	// step (the agent killed after kubeadm returned) is the usual cause.
	case strings.Contains(strings.Join(res.Tail, "\n"), "already exists"):
		return "bootstrap token for " + s.forNode + " already exists", nil
	default:
		return "", exitError(toolKubeadm, res.ExitCode, res.Tail)
	}
}

// ---- join ----

type joinStep struct {
	config       []byte
	controlPlane bool
}

func parseJoin(p params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	role, err := p.role()
	if err != nil {
		return nil, err
	}
	if role == roleInit {
		return nil, invalidf("the first control plane initialises its cluster; it does not join")
	}
	cp := role == roleControlPlane
	jp := kubeadm.JoinParams{
		NodeName:             p["node_name"],
		ControlPlaneEndpoint: p["control_plane_endpoint"],
		Token:                p["token"],
		CACertHash:           p["ca_cert_hash"],
		ControlPlane:         cp,
		CRISocket:            kubeadm.DefaultCRISocket,
	}
	if cp {
		// Workers may be sent one too; it means nothing to them.
		jp.AdvertiseAddress = p["advertise_address"]
	}
	cfg, err := kubeadm.RenderJoin(jp)
	if err != nil {
		return nil, renderError(err)
	}
	return &joinStep{config: cfg, controlPlane: cp}, nil
}

// done: kubeadm join writes kubelet.conf once the node's credentials are in place (the
// TLS bootstrap has finished); a join interrupted after that needs nothing more from us.
func (s *joinStep) done(_ context.Context, j *job) (string, bool, error) {
	if exists(j.e.files, kubeletConf) {
		return "already joined", true, nil
	}
	return "", false, nil
}

func (s *joinStep) run(ctx context.Context, j *job) (string, error) {
	if s.controlPlane {
		if err := checkPKI(j); err != nil {
			return "", err
		}
	}
	for _, p := range partialJoinFiles {
		if exists(j.e.files, p) {
			// A join that failed or was killed half-way (a control plane's etcd phase,
			// say). The coordinator removed any etcd member it added (etcd-cleanup) before
			// sending this attempt; the node's own files are undone here.
			if err := undoPartial(ctx, j, "undoing a join that did not finish", s.controlPlane); err != nil {
				return "", err
			}
			break
		}
	}
	if err := j.write(joinConfigPath, s.config, configFileMode); err != nil {
		return "", err
	}
	args := append([]string{"join", "--config", joinConfigPath}, j.rootfs()...)
	if _, err := j.mustRun(ctx, toolKubeadm, args...); err != nil {
		return "", err
	}
	return "joined", nil
}

// ---- ready ----

type readyStep struct {
	node    string
	timeout time.Duration
}

func parseReady(p params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	var s readyStep
	var err error
	if s.node, err = p.nodeName("node_name"); err != nil {
		return nil, err
	}
	if s.timeout, err = p.duration("timeout"); err != nil {
		return nil, err
	}
	return &s, nil
}

// done: asking for the condition is the step itself.
func (s *readyStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

// readyJSONPath prints the status of the node's Ready condition: True, False or Unknown.
const readyJSONPath = `jsonpath={.status.conditions[?(@.type=="Ready")].status}`

func (s *readyStep) run(ctx context.Context, j *job) (string, error) {
	// Without kubelet.conf the node never joined: waiting cannot help.
	if !exists(j.e.files, kubeletConf) {
		return "", failf(reasonIO, "%s is missing: the node has not joined", kubeletConf)
	}
	j.progress(fmt.Sprintf("waiting for node %s to be Ready", s.node))
	wait, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tick := time.NewTicker(j.e.cfg.ReadyPoll)
	defer tick.Stop()
	timedOut := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return failf(reasonTimeout, "node %s is not Ready after %s", s.node, s.timeout)
	}
	for {
		// Until the node registers and its CNI is up, kubectl exits non-zero or prints
		// False; both mean "not yet".
		res, err := j.command(wait, toolKubectl,
			"--kubeconfig", j.hostPath(kubeletConf), "get", "node", s.node, "-o", readyJSONPath)
		switch {
		case err != nil && wait.Err() != nil:
			return "", timedOut()
		case err != nil:
			return "", wrapf(reasonIO, err, "kubectl cannot be run")
		case res.ExitCode == 0 && lastLine(res.Tail) == "True":
			return "node " + s.node + " is Ready", nil
		}
		select {
		case <-wait.Done():
			return "", timedOut()
		case <-tick.C:
		}
	}
}

// ---- drain, delete-node ----
//
// Both run on a joined control plane for the worker leaving (node_name), with the control
// plane's admin kubeconfig: the leaving host may already be gone. Both are idempotent: a
// node that is no longer in the cluster has nothing left to drain or delete.

// notInCluster tells whether kubectl's output says the node does not exist.
func notInCluster(tail []string, node string) bool {
	return strings.Contains(strings.Join(tail, "\n"), `nodes "`+node+`" not found`)
}

type drainStep struct {
	node    string
	timeout time.Duration
}

func parseDrain(p params, files []*agentv1.File) (step, error) {
	if err := takesNoFiles(files); err != nil {
		return nil, err
	}
	var s drainStep
	var err error
	if s.node, err = p.nodeName("node_name"); err != nil {
		return nil, err
	}
	if s.timeout, err = p.duration("timeout"); err != nil {
		return nil, err
	}
	return &s, nil
}

// done: draining again is cheap and kubectl's own answer is the check.
func (s *drainStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

func (s *drainStep) run(ctx context.Context, j *job) (string, error) {
	if !exists(j.e.files, adminConf) {
		return "", failf(reasonIO, "%s is missing: this host is not a control plane", adminConf)
	}
	j.progress("cordoning and draining node " + s.node)
	// kubectl drain cordons, then evicts through the eviction API, so PodDisruptionBudgets
	// are honoured; a blocked eviction fails at --timeout with kubectl's reason.
	res, err := j.command(ctx, toolKubectl, "--kubeconfig", j.hostPath(adminConf), "drain", s.node,
		"--ignore-daemonsets", "--delete-emptydir-data", "--timeout="+s.timeout.String())
	switch {
	case err != nil && ctx.Err() != nil:
		return "", err
	case err != nil:
		return "", wrapf(reasonIO, err, "kubectl cannot be run")
	case res.ExitCode == 0:
		return "node " + s.node + " cordoned and drained", nil
	case notInCluster(res.Tail, s.node):
		return "node " + s.node + " is not in the cluster: nothing to drain", nil
	default:
		return "", exitError(toolKubectl, res.ExitCode, res.Tail)
	}
}

// nodeKubectlStep runs one kubectl command about a node (delete-node, uncordon) with this
// control plane's admin kubeconfig.
type nodeKubectlStep struct {
	node string
	args []string // after the kubeconfig; the node name is filled in
	did  string   // what the success message says was done
}

func nodeKubectl(did string, args ...string) parseFunc {
	return func(p params, files []*agentv1.File) (step, error) {
		if err := takesNoFiles(files); err != nil {
			return nil, err
		}
		node, err := p.nodeName("node_name")
		if err != nil {
			return nil, err
		}
		return &nodeKubectlStep{node: node, args: args, did: did}, nil
	}
}

var (
	parseDeleteNode = nodeKubectl("deleted", "delete", "node", nodeArg, "--ignore-not-found")
	parseUncordon   = nodeKubectl("uncordoned", "uncordon", nodeArg)
)

// nodeArg stands for the node's name in nodeKubectl's arguments.
const nodeArg = "{node}"

func (s *nodeKubectlStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

func (s *nodeKubectlStep) run(ctx context.Context, j *job) (string, error) {
	if !exists(j.e.files, adminConf) {
		return "", failf(reasonIO, "%s is missing: this host is not a control plane", adminConf)
	}
	args := []string{"--kubeconfig", j.hostPath(adminConf)}
	for _, a := range s.args {
		if a == nodeArg {
			a = s.node
		}
		args = append(args, a)
	}
	res, err := j.command(ctx, toolKubectl, args...)
	switch {
	case err != nil && ctx.Err() != nil:
		return "", err
	case err != nil:
		return "", wrapf(reasonIO, err, "kubectl cannot be run")
	case res.ExitCode == 0:
		return "node " + s.node + " " + s.did, nil
	default:
		return "", exitError(toolKubectl, res.ExitCode, res.Tail)
	}
}
