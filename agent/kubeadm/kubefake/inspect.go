package kubefake

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// What tests of other packages may read of the fake clusters, beside Journal and
// Invocations. Each takes the endpoint the way a client would dial it: the cluster's
// control-plane endpoint ("10.0.0.10:6443"), another name its certificate carries with
// that port, or a control plane's own API endpoint.

// ErrNoCluster is returned when no fake cluster answers at the endpoint asked about (none
// was initialised there, or its last control plane was reset).
var ErrNoCluster = errors.New("kubefake: no cluster answers at this endpoint")

func viewCluster(stateDir, endpoint string, fn func(*cluster)) error {
	return store{dir: stateDir}.view(func(st *fakeState) error {
		cl := st.clusterAt(endpoint)
		if cl == nil {
			return fmt.Errorf("%w: %s", ErrNoCluster, endpoint)
		}
		fn(cl)
		return nil
	})
}

// EtcdMember is one member of a fake cluster's stacked etcd.
type EtcdMember struct {
	ID      uint64
	Name    string // the node that added it, known even before it started
	PeerURL string // https://<advertise address>:2380
	Learner bool   // added by a control-plane join and not (yet) promoted
	Started bool   // its etcd runs; a learner left by a failed join never has
}

// EtcdMembers lists the etcd members of the cluster at endpoint in the order they were
// added.
func EtcdMembers(stateDir, endpoint string) ([]EtcdMember, error) {
	var out []EtcdMember
	err := viewCluster(stateDir, endpoint, func(cl *cluster) {
		for _, m := range cl.Etcd {
			out = append(out, EtcdMember{ID: m.ID, Name: m.Name, PeerURL: m.PeerURL, Learner: m.Learner, Started: m.Started})
		}
	})
	return out, err
}

// SetMachineDown marks the machine of node's etcd member as off (down) or back: its etcd
// answers no health check and its Pods no kubectl exec, as when a control plane's host
// dies. Tests call it with stopping or starting that host's agent.
func SetMachineDown(stateDir, endpoint, node string, down bool) error {
	return store{dir: stateDir}.update(func(st *fakeState) error {
		cl := st.clusterAt(endpoint)
		if cl == nil {
			return fmt.Errorf("%w: %s", ErrNoCluster, endpoint)
		}
		i := cl.etcdMemberNamed(node)
		if i < 0 {
			return fmt.Errorf("fakekube: no etcd member of node %q", node)
		}
		cl.Etcd[i].Down = down
		return nil
	})
}

// NodeInfo is one registered node of a fake cluster.
type NodeInfo struct {
	Name                string
	ControlPlane        bool
	KubeletVersion      string // what the node's kubelet reports (see the package comment)
	ControlPlaneVersion string // the version of its static Pods; "" on a worker
	Cordoned            bool
}

// Nodes lists the nodes registered in the cluster at endpoint, by name.
func Nodes(stateDir, endpoint string) ([]NodeInfo, error) {
	var out []NodeInfo
	err := viewCluster(stateDir, endpoint, func(cl *cluster) {
		for name, n := range cl.Nodes {
			out = append(out, NodeInfo{
				Name: name, ControlPlane: n.ControlPlane, Cordoned: n.Cordoned,
				KubeletVersion: runningKubeletVersion(n, cl.Version), ControlPlaneVersion: n.controlPlaneVersion(cl.Version),
			})
		}
	})
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// ClusterVersion is the Kubernetes version of the cluster at endpoint: the one it was
// initialised with, or the last one kubeadm upgrade apply upgraded it to.
func ClusterVersion(stateDir, endpoint string) (string, error) {
	var v string
	err := viewCluster(stateDir, endpoint, func(cl *cluster) { v = cl.Version })
	return v, err
}
