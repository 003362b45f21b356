package kubefake

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// What the fake's nodes run. kubeadm init's kube-proxy addon and every applied DaemonSet
// (the CNI) have a pod on every node; nothing else runs anywhere, except the one workload
// pod guarded by a PodDisruptionBudget that an armed drain (FailNext "drain") runs into.
const (
	pdbNamespace = "default"
	pdbPodPrefix = "web-6d4cf56db6-"
)

func notFoundNode(name string) error {
	return &kubectlError{fmt.Sprintf("Error from server (NotFound): nodes %q not found", name)}
}

func forbiddenNode(verb, user, name string) string {
	return fmt.Sprintf("nodes %q is forbidden: User %q cannot %s resource \"nodes\" in API group \"\" at the cluster scope", name, user, verb)
}

// drain runs `kubectl --kubeconfig K drain NODE --ignore-daemonsets [--delete-emptydir-data]
// [--timeout D] [--force] [--grace-period N] [--disable-eviction] [--pod-selector S]
// [--skip-wait-for-delete-timeout N]`: it cordons the node, then evicts what runs there.
// Like kubectl, it cordons before it looks at the pods, so a drain refused for its
// DaemonSet pods leaves the node cordoned.
func (r *run) drain(p parsed) error {
	switch len(p.args) {
	case 0:
		return errors.New("USAGE: drain NODE [flags]\nSee 'kubectl drain -h' for help and examples")
	case 1:
	default:
		return notSimulated("kubectl drain with more than one node")
	}
	name := p.args[0]
	c, err := r.kubectlClient(p)
	if err != nil {
		return err
	}
	var already bool
	var dsPods []string
	err = r.store.update(func(st *fakeState) error {
		cl, groups, user, err := authorize(st, c)
		if err != nil {
			return err
		}
		n, ok := cl.Nodes[name]
		if !ok {
			return notFoundNode(name)
		}
		if !isAdmin(groups) {
			// kubectl prints the failed cordon and carries on; the fake stops there.
			return &kubectlError{fmt.Sprintf("error: unable to cordon node %q: %s", name, forbiddenNode("patch", user, name))}
		}
		dsPods = daemonSetPods(cl, name)
		if already = n.Cordoned; already {
			return errUnchanged
		}
		n.Cordoned = true
		cl.Nodes[name] = n
		return nil
	})
	if err != nil {
		return err
	}
	if already {
		r.println("node/" + name + " already cordoned")
	} else {
		r.println("node/" + name + " cordoned")
	}
	if !p.boolean("ignore-daemonsets") {
		return r.drainFailed(name, "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "+strings.Join(dsPods, ", "))
	}
	fmt.Fprintf(r.errOut, "Warning: ignoring DaemonSet-managed Pods: %s\n", strings.Join(dsPods, ", "))
	if err := r.phase("kubectl/drain"); err != nil {
		return err
	}
	blocked := false
	err = r.store.update(func(st *fakeState) error {
		cl, _, _, err := authorize(st, c)
		if err != nil {
			return err
		}
		n, ok := cl.Nodes[name]
		if !ok {
			return notFoundNode(name)
		}
		if !p.boolean("disable-eviction") && st.takeFailure("drain", name) {
			blocked = true
			return nil
		}
		n.Drained = true
		cl.Nodes[name] = n
		st.record("drain", cl.Endpoint, name)
		return nil
	})
	if err != nil {
		return err
	}
	if blocked {
		pod := pdbPodPrefix + podSuffix(name, pdbNamespace+"/"+pdbPodPrefix)
		r.printf("evicting pod %s/%s\n", pdbNamespace, pod)
		evictErr := fmt.Sprintf("error when evicting pods/%q -n %q: Cannot evict pod as it would violate the pod's disruption budget.", pod, pdbNamespace)
		fmt.Fprintf(r.errOut, "There are pending pods in node %q when an error occurred: %s\npod/%s\n", name, evictErr, pod)
		return r.drainFailed(name, evictErr)
	}
	r.println("node/" + name + " drained")
	return nil
}

// drainFailed prints what kubectl drain prints for a node it could not drain and returns
// the error kubectl exits with.
func (r *run) drainFailed(name, msg string) error {
	fmt.Fprintf(r.errOut, "error: unable to drain node %q due to error: %s, continuing command...\n", name, msg)
	fmt.Fprintf(r.errOut, "There are pending nodes to be drained:\n %s\n", name)
	return errors.New(msg)
}

// daemonSetPods names the DaemonSet pods on a node as kubectl lists them, "ns/name" sorted:
// kube-proxy (kubeadm's addon) and one per applied DaemonSet.
func daemonSetPods(cl *cluster, node string) []string {
	sets := []string{"kube-system/kube-proxy"}
	for key := range cl.Objects {
		if rest, ok := strings.CutPrefix(key, "daemonset.apps/"); ok {
			ns, ds, _ := strings.Cut(rest, "/")
			if ns == "" {
				ns = "default"
			}
			sets = append(sets, ns+"/"+ds)
		}
	}
	var pods []string
	for _, s := range sets {
		pods = append(pods, s+"-"+podSuffix(node, s))
	}
	slices.Sort(pods)
	return slices.Compact(pods)
}

// podSuffix is a stable stand-in for the random suffix of a controller's pod name.
func podSuffix(node, owner string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789" // k8s.io/apimachinery/pkg/util/rand
	sum := sha256.Sum256([]byte(owner + "@" + node))
	b := make([]byte, 5)
	for i := range b {
		b[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	return string(b)
}

// deleteNode runs `kubectl --kubeconfig K delete node NODE [--ignore-not-found]
// [--timeout D] [--wait]`; deleting anything but one node is not simulated.
func (r *run) deleteNode(p parsed) error {
	if len(p.args) == 0 {
		return errors.New("You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'")
	}
	switch kind := p.args[0]; {
	case strings.Contains(kind, "/"):
		return notSimulated("kubectl delete TYPE/NAME (only kubectl delete node NAME is)")
	case kind != "node" && kind != "nodes" && kind != "no":
		return notSimulated("kubectl delete " + kind)
	case len(p.args) < 2:
		return errors.New("resource(s) were provided, but no name was specified")
	case len(p.args) > 2:
		return notSimulated("kubectl delete node with more than one name")
	}
	name := p.args[1]
	c, err := r.kubectlClient(p)
	if err != nil {
		return err
	}
	fail, err := r.store.consumeFailure("delete", name)
	if err != nil {
		return err
	}
	if err := r.phase("kubectl/delete"); err != nil {
		return err
	}
	if fail {
		return refused(c.cc.endpoint)
	}
	deleted := false
	err = r.store.update(func(st *fakeState) error {
		cl, groups, user, err := authorize(st, c)
		if err != nil {
			return err
		}
		if !isAdmin(groups) {
			return &kubectlError{"Error from server (Forbidden): " + forbiddenNode("delete", user, name)}
		}
		if _, ok := cl.Nodes[name]; !ok {
			if p.boolean("ignore-not-found") {
				return errUnchanged
			}
			return notFoundNode(name)
		}
		delete(cl.Nodes, name)
		st.record("delete-node", cl.Endpoint, name)
		deleted = true
		return nil
	})
	if err != nil {
		return err
	}
	if deleted {
		r.printf("node %q deleted\n", name)
	}
	return nil
}

// uncordon runs `kubectl --kubeconfig K uncordon NODE`: the node is schedulable again, and
// no longer counts as drained.
func (r *run) uncordon(p parsed) error {
	switch len(p.args) {
	case 0:
		return errors.New("USAGE: uncordon NODE [flags]\nSee 'kubectl uncordon -h' for help and examples")
	case 1:
	default:
		return notSimulated("kubectl uncordon with more than one node")
	}
	name := p.args[0]
	c, err := r.kubectlClient(p)
	if err != nil {
		return err
	}
	fail, err := r.store.consumeFailure("uncordon", name)
	if err != nil {
		return err
	}
	if fail {
		return refused(c.cc.endpoint)
	}
	already := false
	err = r.store.update(func(st *fakeState) error {
		cl, groups, user, err := authorize(st, c)
		if err != nil {
			return err
		}
		n, ok := cl.Nodes[name]
		if !ok {
			return notFoundNode(name)
		}
		if !isAdmin(groups) {
			return &kubectlError{"Error from server (Forbidden): " + forbiddenNode("patch", user, name)}
		}
		already = !n.Cordoned
		n.Cordoned, n.Drained = false, false
		cl.Nodes[name] = n
		// Like drain's, the line records every uncordon that succeeded, needed or not.
		st.record("uncordon", cl.Endpoint, name)
		return nil
	})
	if err != nil {
		return err
	}
	if already {
		r.println("node/" + name + " already uncordoned")
	} else {
		r.println("node/" + name + " uncordoned")
	}
	return nil
}
