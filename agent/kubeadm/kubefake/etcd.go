package kubefake

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
)

// The stacked etcd of a fake cluster is a member list kept with the cluster: init starts
// it with its own member, a control-plane join adds its member as a learner and promotes
// it once it has caught up (kubeadm v1.37 always joins through a learner), reset removes
// the member of its node, and etcdctl (through kubectl exec) lists, checks and removes
// members. The members' data is not simulated, only what deployme can see of membership:
// in particular the learner a join leaves behind when it fails in its etcd phase, which
// blocks every later control-plane join until someone removes it.

// etcdJoinPhase is the kubeadm join phase that adds the etcd member, as its errors name
// it (its delay is still "join/etcd-join").
const etcdJoinPhase = "control-plane-join/etcd"

// etcdMember is one member of a cluster's stacked etcd.
type etcdMember struct {
	ID uint64 `json:"id"`
	// Name is the node that added the member. etcd itself learns the name only when the
	// member first starts, so a member that never started shows an empty one.
	Name      string `json:"name"`
	PeerURL   string `json:"peerURL"`
	ClientURL string `json:"clientURL"`
	Learner   bool   `json:"learner,omitempty"`
	Started   bool   `json:"started,omitempty"`
	// Down: the machine that runs it is off (SetMachineDown); it answers nothing.
	Down bool `json:"down,omitempty"`
}

// Errors of the etcd server, as etcd's rpctypes word them.
var (
	errPeerURLExists    = errors.New("etcdserver: Peer URLs already exists")
	errMemberNotFound   = errors.New("etcdserver: member not found")
	errNotEnoughStarted = errors.New("etcdserver: re-configuration failed due to not enough started members")
	errTooManyLearners  = errors.New("etcdserver: too many learner members in cluster")
)

func etcdPeerURL(advertise string) string   { return "https://" + net.JoinHostPort(advertise, "2380") }
func etcdClientURL(advertise string) string { return "https://" + net.JoinHostPort(advertise, "2379") }

// hexID is how etcdctl --hex prints a member or cluster ID.
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

// randomEtcdID draws a member or cluster ID. Real IDs are hashes and may have leading
// zero digits; these never do, so an ID prints with 16 digits whether etcdctl pads it
// (%16x) or not (--hex), and tests can match one form against the other.
func randomEtcdID() uint64 { return 1<<60 + rand.Uint64N(15<<60) }

// startEtcd is init's etcd phase: a new etcd cluster of one started, voting member.
func (cl *cluster) startEtcd(name, advertise string) {
	cl.EtcdClusterID = randomEtcdID()
	// Term 2: the single member has campaigned once since it started.
	cl.EtcdRaftTerm = 2
	cl.Etcd = []etcdMember{{
		ID: randomEtcdID(), Name: name, PeerURL: etcdPeerURL(advertise), ClientURL: etcdClientURL(advertise), Started: true,
	}}
}

func (cl *cluster) etcdMemberIndex(id uint64) int {
	return slices.IndexFunc(cl.Etcd, func(m etcdMember) bool { return m.ID == id })
}

func (cl *cluster) etcdMemberNamed(name string) int {
	return slices.IndexFunc(cl.Etcd, func(m etcdMember) bool { return m.Name == name })
}

// addLearner is etcd's MemberAddAsLearner, which refuses a peer URL some member has and,
// with etcd's default --max-learners=1, a second learner: a learner left behind by a
// failed join blocks every control-plane join, not only the retry from its address.
func (cl *cluster) addLearner(name, advertise string) (etcdMember, error) {
	peer := etcdPeerURL(advertise)
	if slices.ContainsFunc(cl.Etcd, func(m etcdMember) bool { return m.PeerURL == peer }) {
		return etcdMember{}, errPeerURLExists
	}
	if slices.ContainsFunc(cl.Etcd, func(m etcdMember) bool { return m.Learner }) {
		return etcdMember{}, errTooManyLearners
	}
	id := randomEtcdID()
	for cl.etcdMemberIndex(id) >= 0 {
		id = randomEtcdID()
	}
	m := etcdMember{ID: id, Name: name, PeerURL: peer, ClientURL: etcdClientURL(advertise), Learner: true}
	cl.Etcd = append(cl.Etcd, m)
	return m, nil
}

// promote is the learner starting, catching up and being promoted to a voting member.
func (cl *cluster) promote(id uint64) error {
	i := cl.etcdMemberIndex(id)
	if i < 0 {
		return errMemberNotFound
	}
	cl.Etcd[i].Learner, cl.Etcd[i].Started = false, true
	return nil
}

// removeEtcdMember is etcd's MemberRemove with its strict reconfiguration check: a voting
// member goes only if the started voting members left still form a quorum of those left.
func (cl *cluster) removeEtcdMember(id uint64) error {
	i := cl.etcdMemberIndex(id)
	if i < 0 {
		return errMemberNotFound
	}
	if !cl.Etcd[i].Learner {
		voting, started := 0, 0
		for _, m := range cl.Etcd {
			if m.ID == id || m.Learner {
				continue
			}
			voting++
			if m.Started {
				started++
			}
		}
		if started < voting/2+1 {
			return errNotEnoughStarted
		}
		// Removing a voter may remove the leader: a new election, a new term.
		cl.EtcdRaftTerm++
	}
	cl.Etcd = slices.Delete(cl.Etcd, i, i+1)
	return nil
}

// initialCluster is the --initial-cluster kubeadm gives a joining member, from the member
// list etcd returned when it was added: members that never started have no name, for which
// kubeadm uses their ID.
func (cl *cluster) initialCluster(joining uint64) []string {
	var out []string
	for _, m := range cl.Etcd {
		name := m.Name
		if m.ID != joining && !m.Started {
			name = hexID(m.ID)
		}
		out = append(out, name+"="+m.PeerURL)
	}
	return out
}

// joinEtcd is a control-plane join's etcd phase (kubeadm's
// CreateStackedEtcdStaticPodManifestFile): add this node's member as a learner, write the
// etcd static Pod, wait for the member to start, and promote it.
func (r *run) joinEtcd(h *hostFS, c *joinConfig, ns nodeSetup) error {
	fail := func(err error) error {
		return phaseError(etcdJoinPhase, fmt.Errorf("error creating local etcd static Pod manifest file: %w", err))
	}
	if r.dryRun {
		r.printf("[etcd] Would add etcd member: %s\n", etcdPeerURL(c.advertise))
		r.printf("[etcd] Creating static Pod manifest for %q\n", "etcd")
		r.println("[etcd] Would wait for the new etcd member to join the cluster")
		return nil
	}
	var member etcdMember
	err := r.store.update(func(st *fakeState) error {
		cl := st.clusterAt(c.endpoint)
		if cl == nil {
			return connectionRefused(c.endpoint)
		}
		m, err := cl.addLearner(c.nodeName, c.advertise)
		if err != nil {
			return err
		}
		member, ns.etcdPeers = m, cl.initialCluster(m.ID)
		st.record("etcd-add", cl.Endpoint, c.nodeName, hexID(m.ID), "learner")
		return nil
	})
	if err != nil {
		return fail(err)
	}
	r.println("[etcd] Announced new etcd member joining to the existing etcd cluster")
	r.printf("[etcd] Creating static Pod manifest for %q\n", "etcd")
	if err := r.writeEtcd(h, ns); err != nil {
		return fail(err)
	}
	r.println("[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s")
	if err := r.phase("join/etcd-join"); err != nil {
		return err
	}
	timedOut := false
	err = r.store.update(func(st *fakeState) error {
		// The injected failure is a member that never comes up: it stays a learner.
		if timedOut = st.takeFailure("join-etcd", c.nodeName); timedOut {
			return nil
		}
		cl := st.clusterAt(c.endpoint)
		if cl == nil {
			return connectionRefused(c.endpoint)
		}
		if err := cl.promote(member.ID); err != nil {
			return err
		}
		st.record("etcd-promote", cl.Endpoint, c.nodeName, hexID(member.ID))
		return nil
	})
	switch {
	case err != nil:
		return fail(err)
	case timedOut:
		return fail(errors.New("timeout waiting for etcd cluster to be available"))
	}
	return nil
}

// resetEtcdMember is reset's remove-etcd-member phase for a host with an etcd static Pod:
// the member of its node leaves the etcd cluster. Like kubeadm it never fails reset: a
// member already gone is skipped silently, the last member is left to disappear with its
// cluster, and a removal etcd refuses is a warning.
func (r *run) resetEtcdMember(endpoint, node string) {
	if node == "" {
		// Without kubelet.conf kubeadm cannot tell which member is this host's.
		return
	}
	if r.dryRun {
		r.println("[reset] Would remove the etcd member on this node from the etcd cluster")
		return
	}
	var refused error
	err := r.store.update(func(st *fakeState) error {
		cl := st.clusterAt(endpoint)
		if cl == nil {
			return errUnchanged
		}
		i := cl.etcdMemberNamed(node)
		if i < 0 || len(cl.Etcd) == 1 {
			return errUnchanged
		}
		id := cl.Etcd[i].ID
		if refused = cl.removeEtcdMember(id); refused != nil {
			return errUnchanged
		}
		st.record("etcd-remove", cl.Endpoint, hexID(id), "reset")
		return nil
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		r.klogWarning("removeetcdmember.go:61", fmt.Sprintf("[reset] Failed to remove etcd member: %v, please manually remove this etcd member using etcdctl", err))
	}
}

// peerHost is the host of a member's peer URL, which etcdctl uses for a member without a
// client URL.
func peerHost(m etcdMember) string {
	u, err := url.Parse(m.PeerURL)
	if err != nil {
		return m.PeerURL
	}
	return u.Hostname()
}
