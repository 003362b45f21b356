package kubefake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// etcdctl exists in the fake only inside the etcd static Pods, reached with kubectl exec,
// which is how deployme talks to a cluster's etcd: the API server is the only way in, and
// the etcd container holds the etcd client certificates.

// etcdctl's exit codes (go.etcd.io/etcd/pkg/cobrautl).
const (
	etcdctlExitError      = 1
	etcdctlExitBadFeature = 4
	etcdctlExitBadArgs    = 128
	// runc's exit code for a command it cannot start.
	execNotFoundExit = 126
)

// etcdctlLocalEndpoint is the only endpoint the fake etcdctl dials: the member of the Pod
// it runs in, as kubeadm's own etcd health probes do.
const etcdctlLocalEndpoint = "https://127.0.0.1:2379"

// etcdctl v3.6's global flags (a selection) and the commands the fake runs.
var (
	etcdctlRootFlags = []flagSpec{
		{name: "endpoints", kind: sliceFlag},
		{name: "cacert", kind: stringFlag},
		{name: "cert", kind: stringFlag},
		{name: "key", kind: stringFlag},
		{name: "write-out", short: "w", kind: stringFlag},
		{name: "hex", kind: boolFlag},
	}
	etcdctlRootUnsimulated = []string{
		"dial-timeout", "command-timeout", "keepalive-time", "keepalive-timeout",
		"insecure-transport", "insecure-skip-tls-verify", "insecure-discovery", "user", "password",
		"discovery-srv/d", "discovery-srv-name", "debug", "max-request-bytes", "max-recv-bytes",
		"auth-jwt-token", "help/h",
	}
	etcdctlCommands = []*command{
		{tool: "etcdctl", name: "member list", unsimulated: []string{"consistency"}},
		{tool: "etcdctl", name: "member remove", maxArgs: 1 << 10},
		{tool: "etcdctl", name: "endpoint health", flags: []flagSpec{{name: "cluster", kind: boolFlag}}},
	}
	etcdctlGroups              = []string{"member", "endpoint"}
	etcdctlUnsimulatedCommands = []string{
		"get", "put", "del", "txn", "compaction", "alarm", "defrag", "move-leader", "watch",
		"version", "lease", "snapshot", "make-mirror", "lock", "elect", "auth", "user", "role",
		"check", "downgrade", "completion", "help", "options",
	}
)

// etcdctlFormats are etcdctl's output formats; the fake prints json only.
var etcdctlFormats = []string{"simple", "json", "fields", "protobuf", "table"}

// exec runs `kubectl --kubeconfig K -n kube-system exec etcd-NODE -- etcdctl ...`.
func (r *run) exec(p parsed) error {
	switch {
	case len(p.args) == 0 || p.dash == 0:
		return errors.New("pod, type/name or --filename must be specified")
	case p.dash < 0 && len(p.args) > 1:
		return notSimulated(`kubectl exec POD COMMAND (the deprecated form without "--")`)
	case p.dash > 1:
		return notSimulated(`kubectl exec with arguments between POD and "--"`)
	case len(p.args) == 1:
		return errors.New("you must specify at least one command for the container")
	}
	pod, argv := p.args[0], p.args[1:]
	if strings.Contains(pod, "/") {
		return notSimulated("kubectl exec TYPE/NAME")
	}
	if !strings.HasPrefix(pod, "etcd-") {
		return notSimulated("kubectl exec into " + pod + " (only into etcd-NODE)")
	}
	c, err := r.kubectlClient(p)
	if err != nil {
		return err
	}
	namespace := p.str("namespace")
	if namespace == "" {
		namespace = "default" // admin.conf's context names none
	}
	if err := r.phase("kubectl/exec"); err != nil {
		return err
	}
	var out, errOut strings.Builder
	code := 0
	err = r.store.update(func(st *fakeState) error {
		cl, groups, user, err := authorize(st, c)
		if err != nil {
			return err
		}
		if !isAdmin(groups) {
			return &kubectlError{fmt.Sprintf("Error from server (Forbidden): pods %q is forbidden: User %q cannot get resource \"pods\" in API group \"\" in the namespace %q", pod, user, namespace)}
		}
		self, err := etcdPod(cl, namespace, pod)
		if err != nil {
			return err
		}
		e := &etcdctl{cl: cl, self: self, out: &out, errOut: &errOut}
		code = e.run(argv)
		if e.removed == 0 {
			return errUnchanged
		}
		st.record("etcd-remove", cl.Endpoint, hexID(e.removed), "etcdctl")
		return nil
	})
	if err != nil {
		return err
	}
	r.printf("%s", out.String())
	fmt.Fprint(r.errOut, errOut.String())
	if code != 0 {
		return &remoteExit{code: code}
	}
	return nil
}

// etcdPod finds the etcd static Pod of a control-plane node: it exists while the node is
// registered and its manifest is in place, except that an etcd member which never started
// leaves its Pod crash-looping, which the fake shows as absent. It returns the member the
// Pod runs, or nil when that member was removed: its etcd has stopped serving.
func etcdPod(cl *cluster, namespace, pod string) (*etcdMember, error) {
	notFound := &kubectlError{fmt.Sprintf("Error from server (NotFound): pods %q not found", pod)}
	node := strings.TrimPrefix(pod, "etcd-")
	n, ok := cl.Nodes[node]
	if namespace != "kube-system" || !ok || !n.ControlPlane {
		return nil, notFound
	}
	h, err := openHostFS(n.Root)
	if err != nil {
		return nil, notFound
	}
	defer h.Close()
	if !h.exists(manifestPath("etcd")) {
		return nil, notFound
	}
	i := cl.etcdMemberNamed(node)
	switch {
	case i < 0:
		return nil, nil
	case !cl.Etcd[i].Started:
		return nil, notFound
	case cl.Etcd[i].Down:
		// The API server reaches a Pod through its node's kubelet, which is off.
		return nil, &kubectlError{fmt.Sprintf("Error from server: error dialing backend: dial tcp %s: connect: no route to host",
			net.JoinHostPort(peerHost(cl.Etcd[i]), "10250"))}
	}
	m := cl.Etcd[i]
	return &m, nil
}

// etcdctl is one etcdctl run inside the etcd container of member self. Its output is
// collected while the state is locked and printed after.
type etcdctl struct {
	cl          *cluster
	self        *etcdMember // nil: this member was removed and its etcd has stopped
	out, errOut io.Writer
	removed     uint64 // the member that member remove removed
}

// fail prints an error as etcdctl's ExitWithError does and returns the exit code.
func (e *etcdctl) fail(code int, err error) int {
	fmt.Fprintf(e.errOut, "Error: %v\n", err)
	return code
}

func (e *etcdctl) run(argv []string) int {
	switch argv[0] {
	case "etcdctl":
	case "etcd", "etcdutl":
		return e.fail(etcdctlExitError, notSimulated(argv[0]+" in the etcd container"))
	default:
		// The etcd image has no shell and nothing else to run.
		fmt.Fprintf(e.errOut, "OCI runtime exec failed: exec failed: unable to start container process: exec: %q: executable file not found in $PATH: unknown\n", argv[0])
		return execNotFoundExit
	}
	words, rest, bad := splitCommand(argv[1:], etcdctlCommands, etcdctlRootFlags)
	if bad != "" {
		_, err := parseFlags(&command{tool: "etcdctl"}, etcdctlRootFlags, etcdctlRootUnsimulated, []string{bad})
		return e.fail(etcdctlExitError, err)
	}
	name := strings.Join(words, " ")
	i := slices.IndexFunc(etcdctlCommands, func(c *command) bool { return c.name == name })
	switch {
	case i >= 0:
	case len(words) == 0:
		return e.fail(etcdctlExitError, notSimulated("etcdctl without a command"))
	case slices.Contains(etcdctlUnsimulatedCommands, words[0]), slices.Contains(etcdctlGroups, words[0]):
		return e.fail(etcdctlExitError, notSimulated("etcdctl "+name))
	default:
		return e.fail(etcdctlExitError, fmt.Errorf("unknown command %q for %q", words[0], "etcdctl"))
	}
	cmd := etcdctlCommands[i]
	p, err := parseFlags(cmd, etcdctlRootFlags, etcdctlRootUnsimulated, rest)
	if err != nil {
		return e.fail(etcdctlExitError, err)
	}
	if code := e.checkFormat(cmd, p); code != 0 {
		return code
	}
	// member remove checks its argument before it connects.
	var id uint64
	if cmd.name == "member remove" {
		if len(p.args) != 1 {
			return e.fail(etcdctlExitBadArgs, errors.New("member ID is not provided"))
		}
		if id, err = strconv.ParseUint(p.args[0], 16, 64); err != nil {
			return e.fail(etcdctlExitBadArgs, fmt.Errorf("bad member ID arg (%v), expecting ID in Hex", err))
		}
	}
	if code := e.connect(p); code != 0 {
		return code
	}
	switch cmd.name {
	case "member list":
		return e.memberList()
	case "member remove":
		return e.memberRemove(id)
	default:
		return e.endpointHealth(p.boolean("cluster"))
	}
}

// checkFormat accepts the output each command is simulated with: json for the listings
// (member list with --hex IDs), the default for member remove.
func (e *etcdctl) checkFormat(cmd *command, p parsed) int {
	w := p.str("write-out")
	if w == "" {
		w = "simple"
	}
	if !slices.Contains(etcdctlFormats, w) {
		return e.fail(etcdctlExitBadFeature, errors.New("unsupported output format"))
	}
	want := "json"
	if cmd.name == "member remove" {
		want = "simple"
	}
	switch {
	case w != want:
		return e.fail(etcdctlExitError, notSimulated(fmt.Sprintf("%s -w %s (only -w %s is)", cmd.path(), w, want)))
	case cmd.name == "member list" && !p.boolean("hex"):
		return e.fail(etcdctlExitError, notSimulated("etcdctl member list without --hex"))
	case cmd.name != "member remove" && len(p.args) > 0:
		return e.fail(etcdctlExitError, notSimulated(cmd.path()+" with arguments"))
	}
	return 0
}

// connect is the client's TLS set-up and dial: the files are the ones the etcd container
// mounts from the host's <certificatesDir>/etcd, at the same path.
func (e *etcdctl) connect(p parsed) int {
	if eps := p.slice("endpoints"); !slices.Equal(eps, []string{etcdctlLocalEndpoint}) {
		return e.fail(etcdctlExitError, notSimulated(fmt.Sprintf("etcdctl --endpoints=%s (only --endpoints=%s is)", strings.Join(eps, ","), etcdctlLocalEndpoint)))
	}
	cert, key := p.str("cert"), p.str("key")
	if (cert == "") != (key == "") {
		return e.fail(etcdctlExitError, fmt.Errorf("KeyFile and CertFile must both be present[key: %v, cert: %v]", key, cert))
	}
	dir := e.cl.CertDir + "/etcd/"
	var mounted []string
	for _, base := range []string{"ca", "server", "peer", "healthcheck-client"} {
		mounted = append(mounted, dir+base+".crt", dir+base+".key")
	}
	for _, f := range []struct{ flag, want string }{{"cacert", dir + "ca.crt"}, {"cert", dir + "server.crt"}, {"key", dir + "server.key"}} {
		got := p.str(f.flag)
		switch {
		case got == "":
		case !slices.Contains(mounted, got):
			return e.fail(etcdctlExitError, fmt.Errorf("open %s: no such file or directory", got))
		case got != f.want:
			return e.fail(etcdctlExitError, notSimulated(fmt.Sprintf("etcdctl --%s=%s (only --%s=%s is)", f.flag, got, f.flag, f.want)))
		}
	}
	// Without the CA the server is not trusted, without a client certificate it hangs up
	// (client-cert-auth), and a removed member has stopped: all end in the dial timeout.
	if p.str("cacert") == "" || cert == "" || e.self == nil {
		return e.fail(etcdctlExitError, errors.New("context deadline exceeded"))
	}
	return 0
}

// byID is the member list in etcd's order.
func (e *etcdctl) byID() []etcdMember {
	ms := slices.Clone(e.cl.Etcd)
	slices.SortFunc(ms, func(a, b etcdMember) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return ms
}

// memberList prints `member list -w json --hex`: IDs as hex strings, a member that never
// started without name or client URLs, isLearner only when true.
func (e *etcdctl) memberList() int {
	type member struct {
		ID         string   `json:"ID"`
		Name       string   `json:"name"`
		PeerURLs   []string `json:"peerURLs"`
		ClientURLs []string `json:"clientURLs,omitempty"`
		IsLearner  bool     `json:"isLearner,omitempty"`
	}
	var resp struct {
		Header struct {
			ClusterID string `json:"cluster_id"`
			MemberID  string `json:"member_id"`
			RaftTerm  uint64 `json:"raft_term"`
		} `json:"header"`
		Members []member `json:"members"`
	}
	resp.Header.ClusterID, resp.Header.MemberID, resp.Header.RaftTerm = hexID(e.cl.EtcdClusterID), hexID(e.self.ID), e.cl.EtcdRaftTerm
	for _, m := range e.byID() {
		j := member{ID: hexID(m.ID), PeerURLs: []string{m.PeerURL}, IsLearner: m.Learner}
		if m.Started {
			j.Name, j.ClientURLs = m.Name, []string{m.ClientURL}
		}
		resp.Members = append(resp.Members, j)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return e.fail(etcdctlExitError, err)
	}
	fmt.Fprintf(e.out, "%s\n", b)
	return 0
}

// memberRemove runs `member remove <hex ID>`.
func (e *etcdctl) memberRemove(id uint64) int {
	if err := e.cl.removeEtcdMember(id); err != nil {
		return e.fail(etcdctlExitError, err)
	}
	e.removed = id
	fmt.Fprintf(e.out, "Member %16x removed from cluster %16x\n", id, e.cl.EtcdClusterID)
	return 0
}

// endpointHealth runs `endpoint health [--cluster] -w json`. With --cluster it checks
// every member at its client URL; a member that never started has none, and is shown at
// its peer address with the client port, where nothing answers.
func (e *etcdctl) endpointHealth(cluster bool) int {
	type health struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
		Took     string `json:"took"`
		Error    string `json:"error,omitempty"`
	}
	var report []health
	if !cluster {
		report = append(report, health{Endpoint: etcdctlLocalEndpoint, Health: true, Took: tookFor(0)})
	} else {
		for i, m := range e.byID() {
			h := health{Endpoint: "https://" + net.JoinHostPort(peerHost(m), "2379"), Health: m.Started && !m.Down, Took: tookFor(i)}
			if !h.Health {
				// etcdctl's --command-timeout is 5s.
				h.Took, h.Error = (5*time.Second + time.Duration(i+1)*1234567).String(), "context deadline exceeded"
			}
			report = append(report, h)
		}
	}
	b, err := json.Marshal(report)
	if err != nil {
		return e.fail(etcdctlExitError, err)
	}
	fmt.Fprintf(e.out, "%s\n", b)
	if slices.ContainsFunc(report, func(h health) bool { return !h.Health }) {
		return e.fail(etcdctlExitError, errors.New("unhealthy cluster"))
	}
	return 0
}

// tookFor is a plausible time for the i-th health check to commit its proposal.
func tookFor(i int) string { return (time.Millisecond + time.Duration(i+1)*234567).String() }
