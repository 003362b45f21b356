package kubefake

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// kubeadm dispatches a kubeadm command line.
func (r *run) kubeadm(args []string) int {
	if err := r.logInvocation("kubeadm", args); err != nil {
		fmt.Fprintf(r.errOut, "fakekube: %v\n", err)
		return exitError
	}
	words, rest, bad := splitCommand(args, kubeadmCommands, kubeadmRootFlags)
	if bad != "" {
		_, err := parseFlags(&command{tool: "kubeadm"}, kubeadmRootFlags, kubeadmRootUnsimulated, []string{bad})
		return r.finishKubeadm(err)
	}
	name := strings.Join(words, " ")
	var cmd *command
	for _, c := range kubeadmCommands {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		return r.finishKubeadm(unknownKubeadmCommand(words))
	}
	p, err := parseFlags(cmd, kubeadmRootFlags, kubeadmRootUnsimulated, rest)
	if err != nil {
		return r.finishKubeadm(err)
	}
	if len(p.args) > cmd.maxArgs {
		return r.finishKubeadm(fmt.Errorf("unknown command %q for %q", p.args[cmd.maxArgs], cmd.path()))
	}
	// kubeadm chroots into --rootfs before any subcommand runs, version included.
	if p.has("rootfs") {
		if err := checkChroot(r.abs(p.str("rootfs")), p.str("rootfs")); err != nil {
			return r.finishKubeadm(err)
		}
		// The kubeadm that runs is the host's: when the root has a fake-kube-binary
		// artifact at /usr/bin/kubeadm (installed from the coordinators' artifact store),
		// the fake is that version.
		if h, err := openHostFS(r.abs(p.str("rootfs"))); err == nil {
			if v, err := installedVersion(h, kubeadmBinary, "kubeadm"); err == nil {
				r.version = v
			}
			h.Close()
		}
	}
	switch cmd.name {
	case "init":
		err = r.init(p)
	case "join":
		err = r.join(p)
	case "reset":
		err = r.reset(p)
	case "token create":
		err = r.tokenCreate(p)
	case "version":
		err = r.kubeadmVersion(p)
	case "upgrade apply":
		err = r.upgradeApply(p)
	case "upgrade node":
		err = r.upgradeNode(p)
	}
	return r.finishKubeadm(err)
}

func unknownKubeadmCommand(words []string) error {
	name := strings.Join(words, " ")
	switch {
	case len(words) == 0:
		return notSimulated("kubeadm without a subcommand")
	case slices.Contains(kubeadmUnsimulatedCommands, name), slices.Contains(kubeadmUnsimulatedCommands, words[0]):
		return notSimulated("kubeadm " + name)
	case slices.Contains(kubeadmCommandGroups, name):
		return fmt.Errorf("missing subcommand; %q is not meant to be run on its own", name)
	case slices.Contains(kubeadmCommandGroups, words[0]):
		return fmt.Errorf("unknown command %q for %q", words[1], "kubeadm "+words[0])
	}
	return fmt.Errorf("unknown command %q for %q", words[0], "kubeadm")
}

// versionInfo is kubeadm's version.Info as `kubeadm version` prints it.
type versionInfo struct {
	Major        string `json:"major"`
	Minor        string `json:"minor"`
	GitVersion   string `json:"gitVersion"`
	GitCommit    string `json:"gitCommit"`
	GitTreeState string `json:"gitTreeState"`
	BuildDate    string `json:"buildDate"`
	GoVersion    string `json:"goVersion"`
	Compiler     string `json:"compiler"`
	Platform     string `json:"platform"`
}

func (r *run) kubeadmVersion(p parsed) error {
	v, _ := parseVersion(r.version)
	info := versionInfo{
		Major: fmt.Sprint(v.major), Minor: fmt.Sprint(v.minor), GitVersion: r.version,
		GitCommit: "0000000000000000000000000000000000000000", GitTreeState: "clean",
		BuildDate: "1970-01-01T00:00:00Z", GoVersion: runtime.Version(), Compiler: runtime.Compiler,
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	switch o := p.str("output"); o {
	case "short":
		r.println(r.version)
	case "":
		r.printf("kubeadm version: &version.Info{Major:%q, Minor:%q, GitVersion:%q, GitCommit:%q, GitTreeState:%q, BuildDate:%q, GoVersion:%q, Compiler:%q, Platform:%q}\n",
			info.Major, info.Minor, info.GitVersion, info.GitCommit, info.GitTreeState, info.BuildDate, info.GoVersion, info.Compiler, info.Platform)
	case "json":
		b, _ := json.MarshalIndent(map[string]versionInfo{"clientVersion": info}, "", "  ")
		r.println(string(b))
	case "yaml":
		b, _ := yaml.Marshal(map[string]versionInfo{"clientVersion": info})
		r.printf("%s", b)
	default:
		return fmt.Errorf("invalid output format: %s", o)
	}
	return nil
}

// openRoot opens the filesystem kubeadm works on: the --rootfs, or the real "/" only when
// the fake was explicitly allowed to touch it.
func (r *run) openRoot(p parsed) (*hostFS, error) {
	root := p.str("rootfs")
	if root == "" {
		if !r.o.AllowHostRoot {
			return nil, errors.New("fakekube: refusing to work on the real host root without --rootfs (Options.AllowHostRoot, FAKEKUBE_ALLOW_HOST_ROOT=1, allows it)")
		}
		root = "/"
	}
	root = r.abs(root)
	h, err := openHostFS(root)
	if err != nil {
		// kubeadm's Chroot fails the same way on a missing directory.
		return nil, fmt.Errorf("unable to chroot to %s: %w", root, unwrapPathErr(err))
	}
	return h, nil
}

func checkChroot(abs, given string) error {
	fi, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("unable to chroot to %s: %w", given, unwrapPathErr(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("unable to chroot to %s: not a directory", given)
	}
	return nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readConfig reads --config inside the root: kubeadm has chrooted and changed directory to
// "/" before it opens the file, so a relative path is relative to the root.
func (r *run) readConfig(h *hostFS, p parsed) ([]byte, error) {
	cfg := p.str("config")
	b, err := h.readFile(path.Join("/", cfg))
	if err != nil {
		return nil, fmt.Errorf("unable to read config from %q : %w", cfg, err)
	}
	return b, nil
}

// ignoredChecks is the validated --ignore-preflight-errors set, with the config's
// nodeRegistration.ignorePreflightErrors, lowercased as kubeadm compares them.
func ignoredChecks(fromFlag, fromConfig []string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, s := range append(append([]string(nil), fromConfig...), fromFlag...) {
		set[strings.ToLower(s)] = true
	}
	if set["all"] && len(set) > 1 {
		keys := make([]string, 0, len(set))
		for k := range set {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return nil, fmt.Errorf("ignore-preflight-errors: Invalid value: %q: don't specify individual checks if 'all' is used", strings.Join(keys, ","))
	}
	return set, nil
}

// finding is one failed preflight check.
type finding struct{ name, msg string }

// runChecks reports preflight findings as kubeadm's RunChecks does: ignored ones become
// warnings, the rest fail the phase after being listed on stderr.
func (r *run) runChecks(findings []finding, ignore map[string]bool) error {
	var fatal []finding
	for _, f := range findings {
		if ignore["all"] || ignore[strings.ToLower(f.name)] {
			fmt.Fprintf(r.errOut, "\t[WARNING %s]: %s\n", f.name, f.msg)
			continue
		}
		fatal = append(fatal, f)
	}
	if len(fatal) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("[preflight] Some fatal errors occurred:\n")
	for _, f := range fatal {
		fmt.Fprintf(&b, "\t[ERROR %s]: %s\n", f.name, f.msg)
	}
	b.WriteString("[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n")
	fmt.Fprint(r.errOut, b.String())
	return errors.New("preflight checks failed")
}

// controlPlaneFindings are kubeadm's init-node checks that see an existing control plane.
func controlPlaneFindings(h *hostFS, etcdDataDir string) []finding {
	var out []finding
	for _, c := range controlPlaneComponents {
		if p := manifestPath(c); h.exists(p) {
			out = append(out, finding{fileAvailableName(p), p + " already exists"})
		}
	}
	if h.dirNotEmpty(etcdDataDir) {
		out = append(out, finding{dirAvailableName(etcdDataDir), etcdDataDir + " is not empty"})
	}
	return out
}

func (r *run) pullImages() {
	r.println("[preflight] Pulling images required for setting up a Kubernetes cluster")
	r.println("[preflight] This might take a minute or two, depending on the speed of your internet connection")
	r.println("[preflight] You can also perform this action beforehand using 'kubeadm config images pull'")
}

// imagePullFailure is the preflight failure FailNext injects into init and control-plane
// joins: a registry that cannot be reached, the commonest real reason, which leaves the
// host untouched so a retry needs no reset.
func (r *run) imagePullFailure(ns nodeSetup) error {
	img := ns.image("kube-apiserver")
	return r.runChecks([]finding{{"ImagePull", fmt.Sprintf("failed to pull image %s: failed to pull image %s: rpc error: code = Unavailable desc = failed to pull and unpack image %q: failed to resolve reference %q: failed to do request: Head \"https://%s/v2/\": dial tcp: lookup %s: i/o timeout",
		img, img, img, img, ns.imageRepo, ns.imageRepo)}}, nil)
}

// confSpec is one kubeconfig kubeadm writes for a component.
type confSpec struct {
	file  string
	user  string
	orgs  []string
	local bool // talks to this node's API server, not the control-plane endpoint
}

func adminConfs() []confSpec {
	return []confSpec{
		{file: adminConf, user: "kubernetes-admin", orgs: []string{"kubeadm:cluster-admins"}},
		{file: superAdminConf, user: "kubernetes-super-admin", orgs: []string{"system:masters"}},
	}
}

func kubeletConfSpec(node string) confSpec {
	return confSpec{file: kubeletConf, user: "system:node:" + node, orgs: []string{"system:nodes"}}
}

func componentConfs() []confSpec {
	return []confSpec{
		{file: controllerConf, user: "system:kube-controller-manager", local: true},
		{file: schedulerConf, user: "system:kube-scheduler", local: true},
	}
}

// writeKubeconfig issues a client certificate from the cluster CA and writes the file.
func (r *run) writeKubeconfig(h *hostFS, ca *keyPair, clusterName, endpoint string, ns nodeSetup, c confSpec) error {
	server := "https://" + endpoint
	if c.local {
		server = fmt.Sprintf("https://%s", joinHostPort(ns.advertise, ns.bindPort))
	}
	kp, keyPEM, err := issue(ca, c.user, c.orgs, clientAuth, nil, nil)
	if err != nil {
		return err
	}
	b, err := renderKubeconfig(clusterName, server, ca.certPEM, c.user, kp.certPEM, keyPEM)
	if err != nil {
		return err
	}
	return r.write(h, c.file, b, 0o600)
}

// write writes a host file unless this is a dry run, in which kubeadm changes nothing.
func (r *run) write(h *hostFS, p string, data []byte, perm os.FileMode) error {
	if r.dryRun {
		return nil
	}
	return h.writeFile(p, data, perm)
}

func (r *run) mkdir(h *hostFS, p string) error {
	if r.dryRun {
		return nil
	}
	return h.mkdirAll(p, 0o700)
}
