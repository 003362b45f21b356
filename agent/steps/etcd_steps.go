package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// etcd steps talk to a control plane's stacked etcd the way an operator would on a kubeadm
// cluster: `kubectl exec` into the etcd static pod and run its etcdctl, with etcd's own
// certificates (paths inside the container). Nothing else needs installing on the host, and
// etcd's client-certificate auth is what kubeadm itself relies on.

const (
	etcdEndpoint = "https://127.0.0.1:2379"
	etcdCACert   = "/etc/kubernetes/pki/etcd/ca.crt"
	etcdCert     = "/etc/kubernetes/pki/etcd/server.crt"
	etcdKey      = "/etc/kubernetes/pki/etcd/server.key"
)

// Failure reasons of the etcd steps (docs/steps.md).
const (
	reasonEtcdUnhealthy = "etcd.unhealthy"
	reasonEtcdNoMember  = "etcd.no_member"
)

// etcdMember is one entry of `etcdctl member list -w json --hex`.
type etcdMember struct {
	ID         string   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

var hexID = regexp.MustCompile(`^[0-9a-f]{1,16}$`)

// etcdctl runs etcdctl in the etcd pod of node pod (a control plane: this host, or the
// executor's own node), through this host's admin kubeconfig.
func (j *job) etcdctl(ctx context.Context, pod string, args ...string) ([]string, error) {
	if !exists(j.e.files, adminConf) {
		return nil, failf(reasonIO, "%s is missing: this host is not a control plane", adminConf)
	}
	full := append([]string{"--kubeconfig", j.hostPath(adminConf), "-n", "kube-system", "exec", "etcd-" + pod, "--",
		"etcdctl", "--endpoints=" + etcdEndpoint, "--cacert=" + etcdCACert, "--cert=" + etcdCert, "--key=" + etcdKey}, args...)
	res, err := j.mustRun(ctx, toolKubectl, full...)
	return res.Tail, err
}

// members lists the cluster's etcd members as seen from pod's etcd.
func (j *job) members(ctx context.Context, pod string) ([]etcdMember, error) {
	tail, err := j.etcdctl(ctx, pod, "member", "list", "-w", "json", "--hex")
	if err != nil {
		return nil, err
	}
	var out struct {
		Members []etcdMember `json:"members"`
	}
	// etcdctl prints the JSON document on one line; warnings may precede it.
	for _, line := range slices.Backward(tail) {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			if err := json.Unmarshal([]byte(line), &out); err != nil {
				return nil, failf(reasonIO, "etcdctl member list: unreadable JSON: %v", err)
			}
			for _, m := range out.Members {
				if !hexID.MatchString(m.ID) {
					return nil, failf(reasonIO, "etcdctl member list: member id %q is not hex", m.ID)
				}
			}
			return out.Members, nil
		}
	}
	return nil, failf(reasonIO, "etcdctl member list printed no JSON")
}

// matches tells whether m is node's member: by name, or by peer URL (a member added by a
// join that never started has no name yet).
func (m etcdMember) matches(node, peerURL string) bool {
	return (node != "" && m.Name == node) || (peerURL != "" && slices.Contains(m.PeerURLs, peerURL))
}

// removeMembers removes every member matching node, by id when one is given.
func (j *job) removeMembers(ctx context.Context, pod, node, peerURL, id string) ([]string, error) {
	ms, err := j.members(ctx, pod)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, m := range ms {
		if m.ID != id && !m.matches(node, peerURL) {
			continue
		}
		j.progress(fmt.Sprintf("removing etcd member %s (%s)", m.ID, cmpName(m.Name)))
		if _, err := j.etcdctl(ctx, pod, "member", "remove", m.ID); err != nil {
			return removed, err
		}
		removed = append(removed, m.ID)
	}
	return removed, nil
}

func cmpName(n string) string {
	if n == "" {
		return "never started"
	}
	return n
}

// etcdParams are what the etcd steps are given: the node concerned, its peer URL, and the
// control plane whose etcd pod runs etcdctl.
type etcdParams struct {
	node, peerURL, pod, memberID string
}

func parseEtcdParams(p params, files []*agentv1.File, needPod bool) (etcdParams, error) {
	var e etcdParams
	if err := takesNoFiles(files); err != nil {
		return e, err
	}
	var err error
	if e.node, err = p.nodeName("node_name"); err != nil {
		return e, err
	}
	e.pod = e.node
	if needPod {
		if e.pod, err = p.nodeName("exec_node"); err != nil {
			return e, err
		}
	}
	if v := p["peer_url"]; v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return e, invalidf("peer_url %q is not https://host:port", v)
		}
		e.peerURL = v
	}
	if v := p["member_id"]; v != "" {
		if !hexID.MatchString(v) {
			return e, invalidf("member_id %q is not a hex etcd member id", v)
		}
		e.memberID = v
	}
	return e, nil
}

// ---- etcd-check ----

type etcdCheckStep struct {
	etcdParams
	// tolerate is the host of a member whose health does not count: the control plane this
	// one replaces because its host is offline (its member is removed next).
	tolerate string
}

func parseEtcdCheck(p params, files []*agentv1.File) (step, error) {
	e, err := parseEtcdParams(p, files, false)
	if err != nil {
		return nil, err
	}
	s := &etcdCheckStep{etcdParams: e}
	if v := p["tolerate_peer_url"]; v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return nil, invalidf("tolerate_peer_url %q is not https://host:port", v)
		}
		s.tolerate = u.Hostname()
	}
	return s, nil
}

func (s *etcdCheckStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

// run finds this control plane's member (its id is the step's result) and checks that
// every member of the cluster is a started, healthy voter.
func (s *etcdCheckStep) run(ctx context.Context, j *job) (string, error) {
	ms, err := j.members(ctx, s.pod)
	if err != nil {
		return "", err
	}
	var own *etcdMember
	for i, m := range ms {
		if m.Name == s.node {
			own = &ms[i]
		}
		if m.IsLearner || m.Name == "" {
			return "", failf(reasonEtcdUnhealthy, "etcd member %s (%s) is a learner or never started", m.ID, cmpName(m.Name))
		}
	}
	if own == nil {
		return "", failf(reasonEtcdNoMember, "no etcd member is named %s", s.node)
	}
	j.progress("checking the health of every etcd member")
	tail, err := j.etcdctl(ctx, s.pod, "endpoint", "health", "--cluster", "-w", "json")
	note := ""
	if err != nil {
		// Unhealthy: acceptable only when the one member that does not answer is that of
		// the offline control plane being replaced.
		down, ok := unhealthyHosts(tail)
		if !ok || s.tolerate == "" || len(down) != 1 || down[0] != s.tolerate {
			return "", failf(reasonEtcdUnhealthy, "etcd is not healthy: %v", err)
		}
		note = " (but that of " + s.tolerate + ", offline and being replaced)"
	}
	j.result("etcd_member_id", own.ID)
	return fmt.Sprintf("etcd member %s; all %d members healthy%s", own.ID, len(ms), note), nil
}

// unhealthyHosts reads `etcdctl endpoint health --cluster -w json` and returns the hosts of
// the endpoints that are not healthy; ok is false when there is no such report.
func unhealthyHosts(tail []string) (hosts []string, ok bool) {
	for _, line := range slices.Backward(tail) {
		if !strings.HasPrefix(strings.TrimSpace(line), "[") {
			continue
		}
		var report []struct {
			Endpoint string `json:"endpoint"`
			Health   bool   `json:"health"`
		}
		if json.Unmarshal([]byte(line), &report) != nil {
			return nil, false
		}
		for _, r := range report {
			if !r.Health {
				u, err := url.Parse(r.Endpoint)
				if err != nil {
					return nil, false
				}
				hosts = append(hosts, u.Hostname())
			}
		}
		return hosts, true
	}
	return nil, false
}

// ---- etcd-cleanup ----

type etcdCleanupStep struct{ etcdParams }

func parseEtcdCleanup(p params, files []*agentv1.File) (step, error) {
	e, err := parseEtcdParams(p, files, true)
	if err == nil && e.peerURL == "" {
		err = invalidf("parameter peer_url is required")
	}
	return &etcdCleanupStep{e}, err
}

func (s *etcdCleanupStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

// run removes whatever member an earlier join of the node left (a learner that never got
// promoted, a member whose host was reset): etcd refuses a second member with the same
// peer URL, so the next join would fail on it.
func (s *etcdCleanupStep) run(ctx context.Context, j *job) (string, error) {
	removed, err := j.removeMembers(ctx, s.pod, s.node, s.peerURL, "")
	if err != nil {
		return "", err
	}
	if len(removed) == 0 {
		return "no etcd member of " + s.node + " to remove", nil
	}
	j.result("removed", strings.Join(removed, ","))
	return "removed stale etcd member(s) " + strings.Join(removed, ", ") + " of " + s.node, nil
}

// ---- etcd-remove ----

type etcdRemoveStep struct{ etcdParams }

func parseEtcdRemove(p params, files []*agentv1.File) (step, error) {
	e, err := parseEtcdParams(p, files, true)
	if err == nil && e.pod == e.node {
		err = invalidf("exec_node must be another control plane than the one leaving (%s)", e.node)
	}
	return &etcdRemoveStep{e}, err
}

func (s *etcdRemoveStep) done(context.Context, *job) (string, bool, error) { return "", false, nil }

// run removes the leaving control plane's member; none left is success (an earlier attempt
// removed it, or its join never added one).
func (s *etcdRemoveStep) run(ctx context.Context, j *job) (string, error) {
	removed, err := j.removeMembers(ctx, s.pod, s.node, s.peerURL, s.memberID)
	if err != nil {
		return "", err
	}
	if len(removed) == 0 {
		return "no etcd member of " + s.node + " left", nil
	}
	return "etcd member " + strings.Join(removed, ", ") + " of " + s.node + " removed", nil
}
