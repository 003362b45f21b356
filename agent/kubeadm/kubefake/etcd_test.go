package kubefake

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// etcdctlArgs is the command line the agent runs etcdctl with, on the etcd Pod of node.
func etcdctlArgs(admin, node string, command ...string) []string {
	return append([]string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-" + node, "--",
		"etcdctl", "--endpoints=https://127.0.0.1:2379", "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
		"--cert=/etc/kubernetes/pki/etcd/server.crt", "--key=/etc/kubernetes/pki/etcd/server.key"}, command...)
}

// cpJoinHost mints a token for node and prepares a host to join as a control plane at
// address; join runs the join on it.
func (e *env) cpJoinHost(admin, node, address string) string {
	e.t.Helper()
	tok := fmt.Sprintf("%-6.6s.0123456789abcdef", node+"tokenx")
	e.must(e.kubeadm("token", "create", tok, "--kubeconfig", admin))
	root := e.host(true)
	writeFile(e.t, root, joinPath, joinConfigYAML(node, tok, e.pki.caHash, address), 0o600)
	return root
}

func (e *env) join(root string) (int, string) {
	return e.kubeadm("join", "--config", joinPath, "--rootfs", root)
}

func (e *env) members() []EtcdMember {
	e.t.Helper()
	ms, err := EtcdMembers(e.state, testEndpoint)
	if err != nil {
		e.t.Fatal(err)
	}
	return ms
}

// memberList runs etcdctl member list on node's etcd Pod and decodes what it prints.
func (e *env) memberList(admin, node string) memberListOutput {
	e.t.Helper()
	code, out, errOut := e.kubectlSplit(etcdctlArgs(admin, node, "member", "list", "-w", "json", "--hex")...)
	if code != 0 {
		e.t.Fatalf("member list on %s: exit %d\n%s%s", node, code, out, errOut)
	}
	var l memberListOutput
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		e.t.Fatalf("member list printed %q: %v", out, err)
	}
	if !strings.HasSuffix(out, "}\n") || strings.Count(out, "\n") != 1 {
		e.t.Errorf("member list is not one line of JSON: %q", out)
	}
	return l
}

type memberListOutput struct {
	Header struct {
		ClusterID string `json:"cluster_id"`
		MemberID  string `json:"member_id"`
		RaftTerm  uint64 `json:"raft_term"`
	} `json:"header"`
	Members []struct {
		ID         string
		Name       string   `json:"name"`
		PeerURLs   []string `json:"peerURLs"`
		ClientURLs []string `json:"clientURLs"`
		IsLearner  bool     `json:"isLearner"`
	} `json:"members"`
}

// TestEtcdStuckLearner is what the coordinator relies on: a control-plane join that fails
// in its etcd phase leaves a learner behind, which makes the next join from that address
// fail until the learner is removed with etcdctl on another control plane; the join then
// succeeds and promotes its member, and resetting that control plane removes it again.
func TestEtcdStuckLearner(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	ms := e.members()
	if len(ms) != 1 || ms[0].Name != "cp1" || ms[0].PeerURL != "https://10.0.0.11:2380" || ms[0].Learner || !ms[0].Started || ms[0].ID < 1<<60 {
		t.Fatalf("after init: %+v", ms)
	}
	cp1ID := ms[0].ID

	// The join times out waiting for its member: the learner stays, the node does not
	// register, and the host keeps what the join wrote before (no kubelet.conf).
	cp2 := e.cpJoinHost(admin, "cp2", "10.0.0.12")
	if err := FailNext(e.state, "join-etcd", "cp2", 1); err != nil {
		t.Fatal(err)
	}
	code, out := e.join(cp2)
	if code != exitError {
		t.Fatalf("armed join: exit %d\n%s", code, out)
	}
	assertContains(t, out, "[etcd] Announced new etcd member joining to the existing etcd cluster\n[etcd] Creating static Pod manifest for \"etcd\"\n"+
		"[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s\n"+
		"error: error execution phase control-plane-join/etcd: error creating local etcd static Pod manifest file: timeout waiting for etcd cluster to be available\n"+
		"To see the stack trace of this error execute with --v=5 or higher\n")
	ms = e.members()
	if len(ms) != 2 || ms[1].Name != "cp2" || ms[1].PeerURL != "https://10.0.0.12:2380" || !ms[1].Learner || ms[1].Started {
		t.Fatalf("after the failed join: %+v", ms)
	}
	learner := ms[1].ID
	if _, ok := e.nodeRecord("cp2"); ok {
		t.Error("cp2 registered by a failed join")
	}
	var kept []string
	for _, f := range listFiles(t, cp2) {
		if _, placed := e.pki.files[f]; !placed {
			kept = append(kept, f)
		}
	}
	want := []string{
		"/etc/deployme/kubeadm-join.yaml", "/etc/deployme/simulated-host.txt",
		"/etc/kubernetes/admin.conf", "/etc/kubernetes/controller-manager.conf",
		"/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/manifests/kube-apiserver.yaml",
		"/etc/kubernetes/manifests/kube-controller-manager.yaml", "/etc/kubernetes/manifests/kube-scheduler.yaml",
		"/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/apiserver.key", "/etc/kubernetes/scheduler.conf",
		"/var/lib/kubelet/config.yaml", "/var/lib/kubelet/kubeadm-flags.env",
	}
	if diff := cmp.Diff(want, kept); diff != "" {
		t.Errorf("the failed join left (-want +got):\n%s", diff)
	}
	// etcdctl sees the learner as etcd shows a member that never started.
	l := e.memberList(admin, "cp1")
	if l.Header.MemberID != hexID(cp1ID) || len(l.Members) != 2 {
		t.Fatalf("member list: %+v", l)
	}
	for _, m := range l.Members {
		switch m.ID {
		case hexID(cp1ID):
			if m.Name != "cp1" || m.IsLearner || !cmp.Equal(m.ClientURLs, []string{"https://10.0.0.11:2379"}) {
				t.Errorf("cp1 listed as %+v", m)
			}
		case hexID(learner):
			if m.Name != "" || !m.IsLearner || m.ClientURLs != nil || !cmp.Equal(m.PeerURLs, []string{"https://10.0.0.12:2380"}) {
				t.Errorf("the learner listed as %+v", m)
			}
		default:
			t.Errorf("unknown member %+v", m)
		}
	}
	// Its etcd Pod never came up.
	code, out = e.kubectl(etcdctlArgs(admin, "cp2", "member", "list", "-w", "json", "--hex")...)
	if code != exitError || out != "Error from server (NotFound): pods \"etcd-cp2\" not found\n" {
		t.Errorf("exec into the learner's Pod: exit %d %q", code, out)
	}

	// The host is cleaned (reset cannot tell its member without kubelet.conf), its PKI
	// placed again, and the join retried: etcd refuses the address, and nothing changes.
	e.must(e.kubeadm("reset", "--force", "--rootfs", cp2))
	e.pki.place(t, cp2)
	code, out = e.join(cp2)
	if code != exitError || !strings.HasSuffix(out, "error: error execution phase control-plane-join/etcd: error creating local etcd static Pod manifest file: etcdserver: Peer URLs already exists\n"+
		"To see the stack trace of this error execute with --v=5 or higher\n") {
		t.Fatalf("retried join: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "[etcd] Announced") {
		t.Errorf("a refused member add was announced:\n%s", out)
	}
	if diff := cmp.Diff(ms, e.members()); diff != "" {
		t.Errorf("a refused join changed the members (-before +after):\n%s", diff)
	}

	// The learner goes through etcdctl on cp1; the retried join then succeeds.
	code, out, errOut := e.kubectlSplit(etcdctlArgs(admin, "cp1", "member", "remove", hexID(learner))...)
	if want := fmt.Sprintf("Member %s removed from cluster %s\n", hexID(learner), l.Header.ClusterID); code != 0 || out != want || errOut != "" {
		t.Fatalf("member remove: exit %d %q %q, want %q", code, out, errOut, want)
	}
	e.must(e.kubeadm("reset", "--force", "--rootfs", cp2))
	e.pki.place(t, cp2)
	e.must(e.join(cp2))
	ms = e.members()
	if len(ms) != 2 || ms[1].Name != "cp2" || ms[1].Learner || !ms[1].Started || ms[1].ID == learner {
		t.Fatalf("after the successful join: %+v", ms)
	}
	joined := ms[1].ID
	manifest, err := os.ReadFile(filepath.Join(cp2, "etc/kubernetes/manifests/etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	assertContains(t, string(manifest), "--initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380", "--initial-cluster-state=existing")
	if l := e.memberList(admin, "cp2"); l.Header.MemberID != hexID(joined) || len(l.Members) != 2 {
		t.Errorf("member list on cp2: %+v", l)
	}

	// Resetting cp2 takes its member out; resetting it again finds nothing to remove.
	out = e.must(e.kubeadm("reset", "--force", "--rootfs", cp2))
	if strings.Contains(out, "Failed to remove etcd member") {
		t.Errorf("reset warned:\n%s", out)
	}
	if ms := e.members(); len(ms) != 1 || ms[0].ID != cp1ID {
		t.Errorf("after resetting cp2: %+v", ms)
	}
	e.must(e.kubeadm("reset", "--force", "--rootfs", cp2))

	wantJournal := []string{
		"etcd-add " + testEndpoint + " cp2 " + hexID(learner) + " learner",
		"reset " + cp2,
		"etcd-remove " + testEndpoint + " " + hexID(learner) + " etcdctl",
		"reset " + cp2,
		"etcd-add " + testEndpoint + " cp2 " + hexID(joined) + " learner",
		"etcd-promote " + testEndpoint + " cp2 " + hexID(joined),
		"etcd-remove " + testEndpoint + " " + hexID(joined) + " reset",
		"reset cp2",
		"reset " + cp2,
	}
	if diff := cmp.Diff(wantJournal, e.journal()); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
}

// TestEtcdctl: what etcdctl prints and refuses on a three-member cluster, and how the
// Pods of removed and never-started members behave.
func TestEtcdctl(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	cp2 := e.cpJoinHost(admin, "cp2", "10.0.0.12")
	e.must(e.join(cp2))
	cp3 := e.cpJoinHost(admin, "cp3", "10.0.0.13")
	e.must(e.join(cp3))
	w1 := e.joinWorker(admin, "w1")
	ms := e.members()
	if len(ms) != 3 {
		t.Fatalf("members: %+v", ms)
	}
	ids := map[string]uint64{}
	for _, m := range ms {
		ids[m.Name] = m.ID
	}

	// All healthy, on the local member and across the cluster; JSON sorted by member ID.
	out := e.must(e.kubectl(etcdctlArgs(admin, "cp2", "endpoint", "health", "-w", "json")...))
	if want := `[{"endpoint":"https://127.0.0.1:2379","health":true,"took":"1.234567ms"}]` + "\n"; out != want {
		t.Errorf("endpoint health printed %q, want %q", out, want)
	}
	out = e.must(e.kubectl(etcdctlArgs(admin, "cp2", "endpoint", "health", "--cluster", "-w", "json")...))
	var report []struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
		Took     string `json:"took"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || len(report) != 3 {
		t.Fatalf("endpoint health --cluster printed %q: %v", out, err)
	}
	for _, h := range report {
		if !h.Health || h.Error != "" || !strings.HasPrefix(h.Endpoint, "https://10.0.0.1") || !strings.HasSuffix(h.Took, "ms") {
			t.Errorf("health %+v", h)
		}
	}
	// kubectl takes its flags anywhere before "--", etcdctl its global flags anywhere.
	out = e.must(e.kubectl("exec", "etcd-cp1", "--namespace=kube-system", "--kubeconfig="+admin, "--", "etcdctl", "-w", "json", "member", "list",
		"--key=/etc/kubernetes/pki/etcd/server.key", "--hex", "--cert", "/etc/kubernetes/pki/etcd/server.crt",
		"--cacert=/etc/kubernetes/pki/etcd/ca.crt", "--endpoints", "https://127.0.0.1:2379"))
	assertContains(t, out, `"member_id":"`+hexID(ids["cp1"])+`"`)
	l := e.memberList(admin, "cp3")
	for i := 1; i < len(l.Members); i++ {
		if l.Members[i-1].ID > l.Members[i].ID {
			t.Errorf("member list not in ID order: %+v", l.Members)
		}
	}

	// A member stuck as learner makes the cluster unhealthy.
	cp4 := e.cpJoinHost(admin, "cp4", "10.0.0.14")
	if err := FailNext(e.state, "join-etcd", "", 1); err != nil {
		t.Fatal(err)
	}
	if code, out := e.join(cp4); code != exitError {
		t.Fatalf("armed join: exit %d\n%s", code, out)
	}
	code, out, errOut := e.kubectlSplit(etcdctlArgs(admin, "cp1", "endpoint", "health", "--cluster", "-w", "json")...)
	if code != 1 || errOut != "Error: unhealthy cluster\ncommand terminated with exit code 1\n" {
		t.Errorf("unhealthy cluster: exit %d %q", code, errOut)
	}
	assertContains(t, out, `{"endpoint":"https://10.0.0.14:2379","health":false,"took":"5.00`, `s","error":"context deadline exceeded"}`)
	// While the learner is there, no other control plane can join (etcd allows one
	// learner), and nothing changes.
	learner := e.members()[3].ID
	code, out = e.join(e.cpJoinHost(admin, "cp5", "10.0.0.15"))
	if code != exitError || !strings.Contains(out, "error: error execution phase control-plane-join/etcd: error creating local etcd static Pod manifest file: etcdserver: too many learner members in cluster\n") {
		t.Errorf("join beside a learner: exit %d\n%s", code, out)
	}
	if ms := e.members(); len(ms) != 4 {
		t.Errorf("members after a refused join: %+v", ms)
	}
	code, out, _ = e.kubectlSplit(etcdctlArgs(admin, "cp1", "member", "remove", hexID(learner))...)
	if code != 0 {
		t.Fatalf("removing the learner: %d %s", code, out)
	}

	// Removing a started member stops its etcd: its Pod is there, its etcdctl times out.
	e.must(e.kubectl(etcdctlArgs(admin, "cp1", "member", "remove", hexID(ids["cp3"]))...))
	code, out, errOut = e.kubectlSplit(etcdctlArgs(admin, "cp3", "member", "list", "-w", "json", "--hex")...)
	if code != 1 || out != "" || errOut != "Error: context deadline exceeded\ncommand terminated with exit code 1\n" {
		t.Errorf("etcdctl on a removed member: exit %d %q %q", code, out, errOut)
	}
	// Its reset finds its member gone and says nothing about it.
	out = e.must(e.kubeadm("reset", "--force", "--rootfs", cp3))
	if strings.Contains(out, "etcd member") {
		t.Errorf("reset of a removed member:\n%s", out)
	}
	// The last voting member cannot be removed; the one before it can.
	e.must(e.kubectl(etcdctlArgs(admin, "cp1", "member", "remove", hexID(ids["cp2"]))...))
	code, out, errOut = e.kubectlSplit(etcdctlArgs(admin, "cp1", "member", "remove", hexID(ids["cp1"]))...)
	if code != 1 || out != "" || errOut != "Error: etcdserver: re-configuration failed due to not enough started members\ncommand terminated with exit code 1\n" {
		t.Errorf("removing the last voter: exit %d %q %q", code, out, errOut)
	}
	code, _, errOut = e.kubectlSplit(etcdctlArgs(admin, "cp1", "member", "remove", hexID(ids["cp3"]))...)
	if code != 1 || errOut != "Error: etcdserver: member not found\ncommand terminated with exit code 1\n" {
		t.Errorf("removing a removed member: exit %d %q", code, errOut)
	}
	if ms := e.members(); len(ms) != 1 || ms[0].Name != "cp1" {
		t.Errorf("members left: %+v", ms)
	}
	if l := e.memberList(admin, "cp1"); l.Header.RaftTerm != 4 {
		t.Errorf("raft term after removing two voters: %d, want 4", l.Header.RaftTerm)
	}
	// The last control plane's reset leaves its member to go with the cluster.
	for _, root := range []string{w1, cp2, cp4} {
		e.must(e.kubeadm("reset", "--force", "--rootfs", root))
	}
	out = e.must(e.kubeadm("reset", "--force", "--rootfs", cp1))
	if strings.Contains(out, "etcd member") {
		t.Errorf("reset of the last member:\n%s", out)
	}
	if _, err := EtcdMembers(e.state, testEndpoint); !errors.Is(err, ErrNoCluster) {
		t.Errorf("EtcdMembers after the cluster went: %v", err)
	}
	var removed []string
	for _, l := range e.journal() {
		if strings.HasPrefix(l, "etcd-remove") {
			removed = append(removed, l)
		}
	}
	wantRemoved := []string{
		"etcd-remove " + testEndpoint + " " + hexID(learner) + " etcdctl",
		"etcd-remove " + testEndpoint + " " + hexID(ids["cp3"]) + " etcdctl",
		"etcd-remove " + testEndpoint + " " + hexID(ids["cp2"]) + " etcdctl",
	}
	if diff := cmp.Diff(wantRemoved, removed); diff != "" {
		t.Errorf("etcd-remove lines (-want +got):\n%s", diff)
	}
}

// TestEtcdResetRefused: when etcd refuses to remove a reset node's member, reset warns and
// goes on.
func TestEtcdResetRefused(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	cp2 := e.cpJoinHost(admin, "cp2", "10.0.0.12")
	e.must(e.join(cp2))
	// cp1's member stops being started (as if its etcd had crashed): cp2's cannot go.
	if err := (store{e.state}).update(func(st *fakeState) error {
		st.Clusters[testEndpoint].Etcd[0].Started = false
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out := e.must(e.kubeadm("reset", "--force", "--rootfs", cp2))
	assertContains(t, out, "] [reset] Failed to remove etcd member: etcdserver: re-configuration failed due to not enough started members, please manually remove this etcd member using etcdctl\n",
		"[reset] Deleted contents of the etcd data directory: /var/lib/etcd\n")
	if ms := e.members(); len(ms) != 2 {
		t.Errorf("members: %+v", ms)
	}
	if _, ok := e.nodeRecord("cp2"); ok {
		t.Error("cp2 still registered")
	}
}

// TestExecRefusals: kubectl exec and etcdctl refuse what the real ones refuse, with their
// exit codes, and change nothing.
func TestExecRefusals(t *testing.T) {
	e := newEnv(t)
	cp1 := e.initCluster("cp1", "10.0.0.11")
	admin := filepath.Join(cp1, "etc/kubernetes/admin.conf")
	e.joinWorker(admin, "w1")
	before := e.members()
	id := hexID(before[0].ID)
	tls := etcdctlArgs(admin, "cp1")
	etcdctl := func(args ...string) []string { return append(append([]string(nil), tls...), args...) }
	replaced := func(old, new string, args ...string) []string {
		out := etcdctl(args...)
		for i, a := range out {
			if a == old {
				out[i] = new
			}
		}
		return out
	}
	noPod := "Error from server (NotFound): pods \"etcd-cp1\" not found\n"
	cases := []struct {
		name string
		args []string
		code int
		want string // the whole output
	}{
		{"no pod", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "--", "etcdctl"}, 1,
			"error: pod, type/name or --filename must be specified\n"},
		{"pod after --", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "--", "etcd-cp1", "etcdctl", "member", "list"}, 1,
			"error: pod, type/name or --filename must be specified\n"},
		{"etcdctl flags before --", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "--endpoints=https://127.0.0.1:2379", "--", "etcdctl", "member", "list"}, 1,
			"error: unknown flag: --endpoints\nSee 'kubectl exec --help' for usage.\n"},
		{"no command", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1"}, 1,
			"error: you must specify at least one command for the container\n"},
		{"nothing after --", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "--"}, 1,
			"error: you must specify at least one command for the container\n"},
		{"missing --", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "etcdctl", "member", "list"}, 1,
			"error: fakekube: kubectl exec POD COMMAND (the deprecated form without \"--\") is not simulated\n"},
		{"words before --", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "etcdctl", "--", "member", "list"}, 1,
			"error: fakekube: kubectl exec with arguments between POD and \"--\" is not simulated\n"},
		{"container flag", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "-c", "etcd", "--", "etcdctl"}, 1,
			"error: fakekube: kubectl exec -c exists in the real tool but is not simulated\nSee 'kubectl exec --help' for usage.\n"},
		{"unknown kubectl flag", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "--tty-size=3", "--", "etcdctl"}, 1,
			"error: unknown flag: --tty-size\nSee 'kubectl exec --help' for usage.\n"},
		{"type/name", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "pod/etcd-cp1", "--", "etcdctl"}, 1,
			"error: fakekube: kubectl exec TYPE/NAME is not simulated\n"},
		{"another pod", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "kube-apiserver-cp1", "--", "ls"}, 1,
			"error: fakekube: kubectl exec into kube-apiserver-cp1 (only into etcd-NODE) is not simulated\n"},
		{"default namespace", []string{"--kubeconfig", admin, "exec", "etcd-cp1", "--", "etcdctl"}, 1, noPod},
		{"other namespace", []string{"--kubeconfig", admin, "--namespace=default", "exec", "etcd-cp1", "--", "etcdctl"}, 1, noPod},
		{"worker has no etcd", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-w1", "--", "etcdctl"}, 1,
			"Error from server (NotFound): pods \"etcd-w1\" not found\n"},
		{"unknown node", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp9", "--", "etcdctl"}, 1,
			"Error from server (NotFound): pods \"etcd-cp9\" not found\n"},
		{"kubelet may not exec", []string{"--kubeconfig", filepath.Join(cp1, "etc/kubernetes/kubelet.conf"), "-n", "kube-system", "exec", "etcd-cp1", "--", "etcdctl"}, 1,
			"Error from server (Forbidden): pods \"etcd-cp1\" is forbidden: User \"system:node:cp1\" cannot get resource \"pods\" in API group \"\" in the namespace \"kube-system\"\n"},
		{"no kubeconfig", []string{"-n", "kube-system", "exec", "etcd-cp1", "--", "etcdctl"}, 1,
			"The connection to the server localhost:8080 was refused - did you specify the right host or port?\n"},
		{"no shell in the image", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "--", "sh", "-c", "etcdctl member list"}, 126,
			"OCI runtime exec failed: exec failed: unable to start container process: exec: \"sh\": executable file not found in $PATH: unknown\ncommand terminated with exit code 126\n"},
		{"etcdutl", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "--", "etcdutl", "snapshot", "status"}, 1,
			"Error: fakekube: etcdutl in the etcd container is not simulated\ncommand terminated with exit code 1\n"},
		{"unknown etcdctl command", etcdctl("frobnicate"), 1,
			"Error: unknown command \"frobnicate\" for \"etcdctl\"\ncommand terminated with exit code 1\n"},
		{"unknown member command", etcdctl("member", "frobnicate"), 1,
			"Error: fakekube: etcdctl member frobnicate is not simulated\ncommand terminated with exit code 1\n"},
		{"unsimulated etcdctl command", etcdctl("get", "/registry", "--prefix"), 1,
			"Error: fakekube: etcdctl get is not simulated\ncommand terminated with exit code 1\n"},
		{"member add", etcdctl("member", "add", "cp9", "--peer-urls=https://10.0.0.19:2380"), 1,
			"Error: fakekube: etcdctl member add is not simulated\ncommand terminated with exit code 1\n"},
		{"no etcdctl command", etcdctl(), 1,
			"Error: fakekube: etcdctl without a command is not simulated\ncommand terminated with exit code 1\n"},
		{"unknown etcdctl flag", etcdctl("member", "list", "-w", "json", "--hex", "--frobnicate"), 1,
			"Error: unknown flag: --frobnicate\ncommand terminated with exit code 1\n"},
		{"unknown etcdctl flag first", []string{"--kubeconfig", admin, "-n", "kube-system", "exec", "etcd-cp1", "--", "etcdctl", "--frob", "member", "list"}, 1,
			"Error: unknown flag: --frob\ncommand terminated with exit code 1\n"},
		{"unsimulated etcdctl flag", etcdctl("member", "list", "-w", "json", "--hex", "--debug"), 1,
			"Error: fakekube: etcdctl member list --debug exists in the real tool but is not simulated\ncommand terminated with exit code 1\n"},
		{"table output", etcdctl("member", "list", "-w", "table"), 1,
			"Error: fakekube: etcdctl member list -w table (only -w json is) is not simulated\ncommand terminated with exit code 1\n"},
		{"simple output", etcdctl("member", "list"), 1,
			"Error: fakekube: etcdctl member list -w simple (only -w json is) is not simulated\ncommand terminated with exit code 1\n"},
		{"unknown output", etcdctl("member", "list", "-w", "xml"), 4,
			"Error: unsupported output format\ncommand terminated with exit code 4\n"},
		{"decimal IDs", etcdctl("member", "list", "-w", "json"), 1,
			"Error: fakekube: etcdctl member list without --hex is not simulated\ncommand terminated with exit code 1\n"},
		{"json member remove", etcdctl("member", "remove", id, "-w", "json"), 1,
			"Error: fakekube: etcdctl member remove -w json (only -w simple is) is not simulated\ncommand terminated with exit code 1\n"},
		{"health of a peer", etcdctl("endpoint", "health", "cp2", "-w", "json"), 1,
			"Error: fakekube: etcdctl endpoint health with arguments is not simulated\ncommand terminated with exit code 1\n"},
		{"endpoint status", etcdctl("endpoint", "status", "-w", "json"), 1,
			"Error: fakekube: etcdctl endpoint status is not simulated\ncommand terminated with exit code 1\n"},
		{"remove without id", etcdctl("member", "remove"), 128,
			"Error: member ID is not provided\ncommand terminated with exit code 128\n"},
		{"remove decimal id", etcdctl("member", "remove", "cp1"), 128,
			"Error: bad member ID arg (strconv.ParseUint: parsing \"cp1\": invalid syntax), expecting ID in Hex\ncommand terminated with exit code 128\n"},
		{"remove unknown id", etcdctl("member", "remove", "123456789abcdef0"), 1,
			"Error: etcdserver: member not found\ncommand terminated with exit code 1\n"},
		{"remove the only member", etcdctl("member", "remove", id), 1,
			"Error: etcdserver: re-configuration failed due to not enough started members\ncommand terminated with exit code 1\n"},
		{"another endpoint", replaced("--endpoints=https://127.0.0.1:2379", "--endpoints=https://10.0.0.11:2379", "member", "list", "-w", "json", "--hex"), 1,
			"Error: fakekube: etcdctl --endpoints=https://10.0.0.11:2379 (only --endpoints=https://127.0.0.1:2379 is) is not simulated\ncommand terminated with exit code 1\n"},
		{"no endpoints", replaced("--endpoints=https://127.0.0.1:2379", "--hex", "member", "list", "-w", "json"), 1,
			"Error: fakekube: etcdctl --endpoints= (only --endpoints=https://127.0.0.1:2379 is) is not simulated\ncommand terminated with exit code 1\n"},
		{"host path of the CA", replaced("--cacert=/etc/kubernetes/pki/etcd/ca.crt", "--cacert="+cp1+"/etc/kubernetes/pki/etcd/ca.crt", "member", "list", "-w", "json", "--hex"), 1,
			"Error: open " + cp1 + "/etc/kubernetes/pki/etcd/ca.crt: no such file or directory\ncommand terminated with exit code 1\n"},
		{"API server's etcd client cert is not mounted", replaced("--cert=/etc/kubernetes/pki/etcd/server.crt", "--cert=/etc/kubernetes/pki/apiserver-etcd-client.crt", "member", "list", "-w", "json", "--hex"), 1,
			"Error: open /etc/kubernetes/pki/apiserver-etcd-client.crt: no such file or directory\ncommand terminated with exit code 1\n"},
		{"peer cert", replaced("--cert=/etc/kubernetes/pki/etcd/server.crt", "--cert=/etc/kubernetes/pki/etcd/peer.crt", "member", "list", "-w", "json", "--hex"), 1,
			"Error: fakekube: etcdctl --cert=/etc/kubernetes/pki/etcd/peer.crt (only --cert=/etc/kubernetes/pki/etcd/server.crt is) is not simulated\ncommand terminated with exit code 1\n"},
		{"cert without key", replaced("--key=/etc/kubernetes/pki/etcd/server.key", "--hex", "member", "list", "-w", "json"), 1,
			"Error: KeyFile and CertFile must both be present[key: , cert: /etc/kubernetes/pki/etcd/server.crt]\ncommand terminated with exit code 1\n"},
		{"no CA", replaced("--cacert=/etc/kubernetes/pki/etcd/ca.crt", "--hex", "member", "list", "-w", "json"), 1,
			"Error: context deadline exceeded\ncommand terminated with exit code 1\n"},
		{"kubectl namespace on get", []string{"--kubeconfig", admin, "--namespace", "kube-system", "get", "node", "cp1"}, 1,
			"error: fakekube: kubectl --namespace exists in the real tool but is not simulated\nSee 'kubectl --help' for usage.\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.kubectl(tc.args...)
			if code != tc.code || out != tc.want {
				t.Errorf("exit %d, output:\n%s\nwant exit %d, output:\n%s", code, out, tc.code, tc.want)
			}
		})
	}
	if diff := cmp.Diff(before, e.members()); diff != "" {
		t.Errorf("refusals changed the members (-before +after):\n%s", diff)
	}
	if j := e.journal(); len(j) != 0 {
		t.Errorf("refusals were journaled: %q", j)
	}
}
