package kubefake

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The state directory stands in for the API servers of every fake cluster. Processes and
// goroutines share it, so every read-modify-write holds an exclusive flock on a lock file
// and replaces state.json by an atomic rename; readers of the append-only invocation log
// take the same lock shared.
const (
	stateFile       = "state.json"
	lockFile        = "lock"
	invocationsFile = "invocations.log"
)

// fakeState is everything the fake clusters know.
type fakeState struct {
	// Clusters by control-plane endpoint (host:port): one "API server" each.
	Clusters map[string]*cluster `json:"clusters,omitempty"`
	// Kubeconfigs written by init and join, by absolute host path, so a later command
	// given one of them knows which node it runs on.
	Kubeconfigs map[string]kubeconfigOwner `json:"kubeconfigs,omitempty"`
	// Failures counts the invocations still to fail, by failureKey.
	Failures map[string]int `json:"failures,omitempty"`
	// Journal lists what the fake did to nodes, in order: see Journal.
	Journal []string `json:"journal,omitempty"`
}

type cluster struct {
	Endpoint string `json:"endpoint"`
	Name     string `json:"name"`
	CAHash   string `json:"caHash"`
	CACert   string `json:"caCert"`
	// CAKey is held by the cluster's certificate signer (kube-controller-manager), which
	// signs the kubelet client certificates of joining nodes.
	CAKey         string `json:"caKey"`
	Version       string `json:"version"`
	ServiceSubnet string `json:"serviceSubnet"`
	PodSubnet     string `json:"podSubnet,omitempty"`
	DNSDomain     string `json:"dnsDomain"`
	CertDir       string `json:"certificatesDir"`
	ImageRepo     string `json:"imageRepository"`
	EtcdDataDir   string `json:"etcdDataDir"`
	// SANEndpoints are the other names of the endpoint: the API server certificate's extra
	// SANs with the endpoint's port, such as a virtual IP in front of a DNS endpoint.
	SANEndpoints []string               `json:"sanEndpoints,omitempty"`
	Tokens       map[string]tokenRecord `json:"tokens,omitempty"`
	Nodes        map[string]nodeRecord  `json:"nodes,omitempty"`
	// CNIAppliedAt is when the first manifest was applied; nodes turn Ready after it.
	CNIAppliedAt time.Time `json:"cniAppliedAt,omitzero"`
	// Objects maps "<resource>/<namespace>/<name>" to the digest of the last applied
	// document, so a second apply can tell "unchanged" from "configured".
	Objects map[string]string `json:"objects,omitempty"`
	// Etcd is the stacked etcd cluster's member list, in the order members were added.
	Etcd []etcdMember `json:"etcd,omitempty"`
	// EtcdClusterID and EtcdRaftTerm are what etcd puts in its response headers.
	EtcdClusterID uint64 `json:"etcdClusterID,omitempty"`
	EtcdRaftTerm  uint64 `json:"etcdRaftTerm,omitempty"`
}

type tokenRecord struct {
	Secret      string    `json:"secret"`
	Expires     time.Time `json:"expires,omitzero"` // zero: never
	Usages      []string  `json:"usages,omitempty"`
	Groups      []string  `json:"groups,omitempty"`
	Description string    `json:"description,omitempty"`
}

// clusterAt finds the cluster answering at a host:port, as a client dialling it would: at
// its control-plane endpoint, at another name its certificate carries, or at a control
// plane's own API endpoint.
func (st *fakeState) clusterAt(endpoint string) *cluster {
	if cl := st.Clusters[endpoint]; cl != nil {
		return cl
	}
	for _, cl := range st.Clusters {
		if slices.Contains(cl.SANEndpoints, endpoint) {
			return cl
		}
		for _, n := range cl.Nodes {
			if n.ControlPlane && n.APIEndpoint == endpoint {
				return cl
			}
		}
	}
	return nil
}

// ca returns the cluster CA with its key.
func (cl *cluster) ca() (*keyPair, error) {
	cert, err := parseCertPEM([]byte(cl.CACert))
	if err != nil {
		return nil, fmt.Errorf("fakekube: corrupt cluster CA in state: %w", err)
	}
	key, err := parseKeyPEM([]byte(cl.CAKey))
	if err != nil {
		return nil, fmt.Errorf("fakekube: corrupt cluster CA key in state: %w", err)
	}
	return &keyPair{cert: cert, certPEM: []byte(cl.CACert), key: key}, nil
}

func (t tokenRecord) valid(now time.Time) bool {
	return t.Expires.IsZero() || now.Before(t.Expires)
}

type nodeRecord struct {
	ControlPlane bool      `json:"controlPlane,omitempty"`
	APIEndpoint  string    `json:"apiEndpoint,omitempty"` // a control plane's advertise address:port
	Root         string    `json:"root"`
	RegisteredAt time.Time `json:"registeredAt"`
	// Cordoned is spec.unschedulable, set by kubectl drain before it evicts anything;
	// Drained is set once drain has evicted every pod it had to. kubectl uncordon clears
	// both.
	Cordoned bool `json:"cordoned,omitempty"`
	Drained  bool `json:"drained,omitempty"`
	// KubeletVersion is status.nodeInfo.kubeletVersion; ControlPlaneVersion is the version
	// of a control plane's static Pods. Both start at the cluster's version and change
	// with kubeadm upgrade.
	KubeletVersion      string `json:"kubeletVersion,omitempty"`
	ControlPlaneVersion string `json:"controlPlaneVersion,omitempty"`
}

// kubeletVersion is the version the node's kubelet reports; records written before the
// fake tracked it report the cluster's.
func (n nodeRecord) kubeletVersion(clusterVersion string) string {
	if n.KubeletVersion != "" {
		return n.KubeletVersion
	}
	return clusterVersion
}

// controlPlaneVersion is the version of a control plane's static Pods, "" on a worker.
func (n nodeRecord) controlPlaneVersion(clusterVersion string) string {
	switch {
	case !n.ControlPlane:
		return ""
	case n.ControlPlaneVersion != "":
		return n.ControlPlaneVersion
	}
	return clusterVersion
}

type kubeconfigOwner struct {
	Endpoint string `json:"endpoint"`
	Node     string `json:"node"`
}

// store is a state directory.
type store struct{ dir string }

func (s store) lock(how int) (unlock func(), err error) {
	if s.dir == "" {
		return nil, errors.New("fakekube: no state directory configured")
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	// Closing the descriptor releases the lock.
	return func() { f.Close() }, nil
}

func (s store) load() (*fakeState, error) {
	st := &fakeState{}
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("fakekube: corrupt %s: %w", stateFile, err)
	}
	return st, nil
}

func (s store) save(st *fakeState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, stateFile+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(s.dir, stateFile))
}

// errUnchanged tells update that fn changed nothing, so there is nothing to save.
var errUnchanged = errors.New("unchanged")

// update runs fn on the current state under the exclusive lock and saves what it leaves,
// unless fn fails.
func (s store) update(fn func(*fakeState) error) error {
	unlock, err := s.lock(syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	switch err := fn(st); {
	case errors.Is(err, errUnchanged):
		return nil
	case err != nil:
		return err
	}
	return s.save(st)
}

// view runs fn on a consistent snapshot of the state.
func (s store) view(fn func(*fakeState) error) error {
	unlock, err := s.lock(syscall.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	return fn(st)
}

// Invocation is one recorded run of the fake kubeadm or kubectl.
type Invocation struct {
	Root string // the --rootfs given, "/" without one
	Tool string // "kubeadm" or "kubectl"
	Args []string
}

func (s store) appendInvocation(inv Invocation) error {
	unlock, err := s.lock(syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	f, err := os.OpenFile(filepath.Join(s.dir, invocationsFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fields := append([]string{inv.Root, inv.Tool}, inv.Args...)
	for i, f := range fields {
		fields[i] = quoteField(f)
	}
	if _, err := f.WriteString(strings.Join(fields, " ") + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Invocations reads the append-only log of every kubeadm/kubectl invocation in stateDir
// ("<rootfs> kubeadm init ..." per line), for tests.
func Invocations(stateDir string) ([]Invocation, error) {
	s := store{dir: stateDir}
	unlock, err := s.lock(syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := os.Open(filepath.Join(stateDir, invocationsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Invocation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		fields, err := splitFields(sc.Text())
		if err != nil || len(fields) < 2 {
			return nil, fmt.Errorf("%s line %d: malformed: %q", invocationsFile, n, sc.Text())
		}
		out = append(out, Invocation{Root: fields[0], Tool: fields[1], Args: fields[2:]})
	}
	return out, sc.Err()
}

var bareField = regexp.MustCompile(`^[A-Za-z0-9_./:=,@%+^-]+$`)

// quoteField leaves plain words readable and Go-quotes anything else (spaces, quotes,
// brackets of a jsonpath), so every line splits back into exactly its arguments.
func quoteField(s string) string {
	if bareField.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

func splitFields(line string) ([]string, error) {
	var out []string
	for line != "" {
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, err
			}
			v, err := strconv.Unquote(q)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			line = line[len(q):]
		} else {
			word, _, _ := strings.Cut(line, " ")
			out = append(out, word)
			line = line[len(word):]
		}
		if line != "" {
			if line[0] != ' ' {
				return nil, errors.New("no space between fields")
			}
			line = line[1:]
		}
	}
	return out, nil
}

// Subcommands FailNext knows: kubeadm's by their command path, kubectl's by verb, and
// "join-etcd" for the etcd phase of a control-plane join.
var failableSubcommands = []string{"init", "join", "join-etcd", "reset", "token create", "upgrade", "apply", "get", "drain", "delete", "uncordon"}

func failureKey(subcommand, node string) string { return subcommand + "@" + node }

// FailNext makes the next n invocations of subcommand ("init", "join", "join-etcd",
// "reset", "token create", "upgrade", or kubectl's "apply", "get", "drain", "delete" and
// "uncordon") for node nodeName fail like the real tool does, after printing its first
// phases. nodeName "" matches any node.
//
// The node of an invocation is the one it runs on: nodeRegistration.name for init and join,
// the node whose kubelet.conf reset and upgrade find, and for token create, apply and get
// the node that the kubeconfig they are given was written for. kubectl drain, delete node
// and uncordon instead match the node they act on (the NODE argument).
//
// An armed init fails pulling images in preflight and an armed join cannot reach the API
// server, both leaving the host untouched. "join-etcd" fails a control-plane join in its
// etcd phase, after its etcd member was added as a learner: the learner stays in the
// member list, never started, and the node is not registered (the host keeps what the join
// wrote before, kubelet.conf excepted), which is what a join that timed out waiting for
// its etcd member leaves behind. "upgrade" fails kubeadm upgrade apply and upgrade node
// reading the kubeadm-config ConfigMap, changing nothing. An armed drain cordons the node,
// then fails evicting a pod guarded by a PodDisruptionBudget (a drain with
// --disable-eviction deletes instead of evicting, so it neither fails nor uses up the
// count); an armed delete or uncordon finds the API server refusing connections.
//
// n == 0 clears the setting. Stored in stateDir, so it reaches fakes in other processes.
func FailNext(stateDir, subcommand, nodeName string, n int) error {
	if !slices.Contains(failableSubcommands, subcommand) {
		return fmt.Errorf("kubefake: cannot fail %q: known subcommands are %q", subcommand, failableSubcommands)
	}
	if n < 0 {
		return fmt.Errorf("kubefake: negative failure count %d", n)
	}
	return store{dir: stateDir}.update(func(st *fakeState) error {
		if st.Failures == nil {
			st.Failures = map[string]int{}
		}
		if n == 0 {
			delete(st.Failures, failureKey(subcommand, nodeName))
		} else {
			st.Failures[failureKey(subcommand, nodeName)] = n
		}
		return nil
	})
}

// consumeFailure reports whether this invocation is to fail, using up one count; a count
// for the exact node wins over one for any node.
func (s store) consumeFailure(subcommand, node string) (bool, error) {
	fail := false
	err := s.update(func(st *fakeState) error {
		if fail = st.takeFailure(subcommand, node); fail {
			return nil
		}
		return errUnchanged
	})
	return fail, err
}

// takeFailure is consumeFailure on a state already held under the lock.
func (st *fakeState) takeFailure(subcommand, node string) bool {
	for _, k := range []string{failureKey(subcommand, node), failureKey(subcommand, "")} {
		if st.Failures[k] > 0 {
			st.Failures[k]--
			if st.Failures[k] == 0 {
				delete(st.Failures, k)
			}
			return true
		}
	}
	return false
}

// record appends a line to the journal; the caller holds the lock through store.update, so
// the line lands together with the change it describes.
func (st *fakeState) record(fields ...string) {
	for i, f := range fields {
		fields[i] = quoteField(f)
	}
	st.Journal = append(st.Journal, strings.Join(fields, " "))
}

// Journal returns, oldest first, what the fakes in stateDir did to nodes, one line each:
//
//	drain <endpoint> <node>                     kubectl drain succeeded (the node is cordoned and empty)
//	uncordon <endpoint> <node>                  kubectl uncordon succeeded (the node is schedulable)
//	delete-node <endpoint> <node>               kubectl delete node removed the node from its cluster
//	reset <node>                                kubeadm reset cleaned a host whose kubelet.conf names <node>
//	reset <root>                                kubeadm reset cleaned a host that was no node (absolute root)
//	etcd-add <endpoint> <node> <id> learner     a control-plane join added its etcd member as a learner
//	etcd-promote <endpoint> <node> <id>         the join promoted it to a voting, started member
//	etcd-remove <endpoint> <id> reset           kubeadm reset removed its node's etcd member
//	etcd-remove <endpoint> <id> etcdctl         etcdctl member remove (through kubectl exec) removed it
//	upgrade-apply <endpoint> <node> <version>   kubeadm upgrade apply upgraded the cluster from <node>
//	upgrade-node <endpoint> <node> <version>    kubeadm upgrade node upgraded <node> to the cluster's version
//
// <endpoint> is the cluster's control-plane endpoint (host:port); <id> is an etcd member
// ID in hex, as etcdctl --hex prints it. Refused, failed and dry-run invocations leave no
// line (Invocations has every call), except that a control-plane join failing after its
// etcd-add leaves that line, as its learner stays; fields that are not plain words are
// Go-quoted. The journal lives in the state, so it is written under the same lock and in
// the same atomic replacement as the change it records.
func Journal(stateDir string) ([]string, error) {
	var out []string
	err := store{dir: stateDir}.view(func(st *fakeState) error {
		out = slices.Clone(st.Journal)
		return nil
	})
	return out, err
}
