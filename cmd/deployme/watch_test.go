package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"

	v1 "github.com/deployme/deployme/api/v1"
)

func TestRenderBar(t *testing.T) {
	tests := []struct {
		name        string
		done, total int
		want        string // a regular expression
	}{
		{"empty", 0, 11, `^demo provisioning 3s\s+0% \| {30}\| \(0/11\)$`},
		{"part", 5, 11, `^demo provisioning 3s\s+45% \|█{13} {17}\| \(5/11\)$`},
		{"full", 11, 11, `^demo provisioning 3s\s+100% \|█{30}\| \(11/11\)$`},
		{"more done than total is full", 12, 11, `^demo provisioning 3s\s+100% \|█{30}\| \(11/11\)$`},
		{"no nodes yet", 0, 0, `^demo provisioning 3s  waiting for hosts$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := renderBar("demo provisioning 3s", tc.done, tc.total)
			if !regexp.MustCompile(tc.want).MatchString(got) {
				t.Errorf("renderBar = %q, want a match for %s", got, tc.want)
			}
		})
	}
}

func steps(states ...string) []v1.NodeStep {
	names := []string{"preflight", "prepare", "pki", "init", "cni", "ready"}
	out := make([]v1.NodeStep, len(states))
	for i, s := range states {
		out[i] = v1.NodeStep{Name: names[i], State: s}
	}
	return out
}

func TestNodeProgress(t *testing.T) {
	withPhase := steps("succeeded", "succeeded", "succeeded", "running", "pending", "pending")
	withPhase[3].Phase = "[certs]"
	failed := steps("succeeded", "succeeded", "succeeded", "failed", "pending", "pending")
	failed[3].Reason = "kubeadm init exited 1"
	tests := []struct {
		name string
		node v1.Node
		want string
	}{
		{"nothing started", v1.Node{State: "reserved", Steps: steps("pending", "pending")}, "reserved"},
		{"running with a phase", v1.Node{State: "joining", Step: "init", Steps: withPhase}, "init [certs]"},
		{"running, no step named", v1.Node{State: "joining", Steps: withPhase}, "init [certs]"},
		{"the named step waits", v1.Node{State: "joining", Step: "pki", Steps: steps("succeeded", "succeeded", "pending")}, "pki (pending)"},
		{"failed with a reason", v1.Node{State: "joining", Steps: failed}, "init failed: kubeadm init exited 1"},
		{"all done", v1.Node{State: "joined", Steps: steps("succeeded", "succeeded")}, "joined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nodeProgress(tc.node); got != tc.want {
				t.Errorf("nodeProgress = %q, want %q", got, tc.want)
			}
		})
	}
}

var (
	cp     = v1.Node{HostID: "h1", Hostname: "host-1", Role: "control-plane-init", State: "joining"}
	worker = v1.Node{HostID: "h2", Hostname: "host-2", Role: "worker", State: "reserved"}
)

// node gives n the steps in states (named as in a control plane's plan); the first one not
// succeeded is the node's current step, with phase.
func node(n v1.Node, phase string, states ...string) v1.Node {
	n.Steps = steps(states...)
	for i := range n.Steps {
		if n.Steps[i].State != "succeeded" {
			n.Step, n.Steps[i].Phase = n.Steps[i].Name, phase
			break
		}
	}
	return n
}

// TestLineDisplay: without a terminal, a line is printed only when something changed.
func TestLineDisplay(t *testing.T) {
	var out bytes.Buffer
	d := &lineDisplay{w: &out, last: map[string]string{}}
	c := &v1.Cluster{Name: "demo", Status: "provisioning"}
	d.update(c, []v1.Node{node(cp, "[certs]", "succeeded", "succeeded", "succeeded", "running"), worker}, 0)
	d.update(c, []v1.Node{node(cp, "[certs]", "succeeded", "succeeded", "succeeded", "running"), worker}, time.Second)
	d.update(c, []v1.Node{node(cp, "[kubeconfig]", "succeeded", "succeeded", "succeeded", "running"), worker}, 2*time.Second)
	d.update(&v1.Cluster{Name: "demo", Status: "running"}, []v1.Node{node(cp, "", "succeeded"), worker}, 3*time.Second)
	want := "cluster demo: provisioning\n" +
		"host-1 control-plane-init: init [certs]\n" +
		"host-2 worker: reserved\n" +
		"host-1 control-plane-init: init [kubeconfig]\n" +
		"cluster demo: running\n" +
		"host-1 control-plane-init: joining\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// TestTTYDisplay: on a terminal each frame replaces the previous one, and no line is wider
// than the terminal.
func TestTTYDisplay(t *testing.T) {
	var out bytes.Buffer
	d := &ttyDisplay{w: &out, width: 100}
	c := &v1.Cluster{Name: "demo", Status: "provisioning"}
	long := node(cp, "waiting for node host-1 to be Ready, which takes a while on a slow machine, a very slow one", "succeeded", "succeeded", "running")
	d.update(c, []v1.Node{long, worker}, time.Second)
	first := out.String()
	out.Reset()
	d.update(c, []v1.Node{long, worker}, 2*time.Second)
	second := out.String()

	if strings.Contains(first, "\x1b[3A") || !strings.HasPrefix(first, "\x1b[J") {
		t.Errorf("first frame %q should clear below and not move up", first)
	}
	if !strings.HasPrefix(second, "\r\x1b[3A\x1b[J") {
		t.Errorf("second frame %q should go back up the 3 lines of the first", second)
	}
	lines := strings.Split(strings.TrimSuffix(strings.TrimPrefix(second, "\r\x1b[3A\x1b[J"), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("second frame has %d lines, want a bar and 2 nodes: %q", len(lines), lines)
	}
	if !strings.Contains(lines[0], "demo provisioning 2s") || !strings.Contains(lines[0], "(2/3)") {
		t.Errorf("bar line %q lacks the description or the step count", lines[0])
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 99 {
			t.Errorf("line %q is %d wide on a 100-column terminal", l, n)
		}
	}
	if !strings.HasPrefix(lines[2], "  host-2   worker               reserved") {
		t.Errorf("node line %q is not aligned", lines[2])
	}
}

// frame is one answer of scriptedAPI to GET cluster (and the nodes that go with it).
type frame struct {
	code    string // an API error code instead of the cluster
	cluster v1.Cluster
	nodes   []v1.Node
}

// scriptedAPI plays frames, one per GET of the cluster (the last one repeats), and serves
// the kubeconfig.
type scriptedAPI struct {
	*httptest.Server
	mu     sync.Mutex
	frames []frame
	next   int
}

func newScriptedAPI(t *testing.T, frames ...frame) *scriptedAPI {
	s := &scriptedAPI{frames: frames}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, body any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}
	mux.HandleFunc("POST /v1/clusters", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusCreated, frames[0].cluster)
	})
	mux.HandleFunc("PATCH /v1/clusters/{id}", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, frames[0].cluster)
	})
	mux.HandleFunc("DELETE /v1/clusters/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/clusters/{id}", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		f := s.frames[min(s.next, len(s.frames)-1)]
		s.next++
		s.mu.Unlock()
		if f.code != "" {
			reply(w, v1.StatusOf(f.code), v1.Error{Code: f.code, Message: "scripted " + f.code})
			return
		}
		reply(w, http.StatusOK, f.cluster)
	})
	mux.HandleFunc("GET /v1/clusters/{id}/nodes", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		f := s.frames[min(max(s.next-1, 0), len(s.frames)-1)]
		s.mu.Unlock()
		reply(w, http.StatusOK, v1.NodeList{Items: f.nodes})
	})
	mux.HandleFunc("GET /v1/clusters/{id}/kubeconfig", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(apiKubeconfig(t, "demo", "https://10.0.0.1:6443"))
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func cluster(status, reason string) v1.Cluster {
	return v1.Cluster{ID: "cls_1", Name: "demo", Status: status, StatusReason: reason, NodeCount: 2, Endpoint: "https://10.0.0.1:6443"}
}

func TestWatchEndings(t *testing.T) {
	provisioning := frame{cluster: cluster("provisioning", ""), nodes: []v1.Node{node(cp, "[certs]", "succeeded", "succeeded", "succeeded", "running"), worker}}
	running := frame{cluster: cluster("running", ""), nodes: []v1.Node{node(cp, "", "succeeded", "succeeded"), node(worker, "", "succeeded")}}
	running.nodes[0].State, running.nodes[1].State = "joined", "joined"
	failed := frame{cluster: cluster("error", "init failed on host-1: kubeadm init exited 1"), nodes: []v1.Node{node(cp, "", "succeeded", "succeeded", "succeeded", "failed"), worker}}
	failed.nodes[0].Steps[3].Reason = "kubeadm init exited 1"
	createArgs := []string{"cluster", "create", "demo", "--control-planes", "1", "--workers", "1", "--node-size", "small", "--wait"}

	tests := []struct {
		name       string
		frames     []frame
		args       []string
		term       bool
		wantCode   int
		wantStdout string // a regular expression
		wantStderr string // a regular expression
		kubeconfig bool   // the args end with --kubeconfig-out and the file must be there
	}{
		{
			name:   "running, riding out an unavailable coordinator, then the kubeconfig",
			frames: []frame{provisioning, {code: v1.CodeUnavailable}, provisioning, running},
			args:   append(createArgs, "--kubeconfig-out"),
			wantStdout: `^Waiting for cluster demo \(cls_1\) to be running\.\.\.
cluster demo: provisioning
host-1 control-plane-init: init \[certs\]
host-2 worker: reserved
cluster demo: running
host-1 control-plane-init: joined
host-2 worker: joined
Cluster demo \(cls_1\) is running: 2 node\(s\), API server https://10\.0\.0\.1:6443
Kubeconfig written to .*/kubeconfig
$`,
			wantStderr: `^$`,
			kubeconfig: true,
		},
		{
			name:       "error: the reason, exit 1",
			frames:     []frame{provisioning, failed},
			args:       createArgs,
			wantCode:   exitError,
			wantStdout: `host-1 control-plane-init: init failed: kubeadm init exited 1\n$`,
			wantStderr: `^error: cluster demo \(cls_1\) failed: init failed on host-1: kubeadm init exited 1\n$`,
		},
		{
			name:       "a cluster deleted while waiting for it to run is an error",
			frames:     []frame{provisioning, {code: v1.CodeNotFound}},
			args:       createArgs,
			wantCode:   exitError,
			wantStderr: `^error: cluster cls_1 was deleted while being watched\n$`,
		},
		{
			name:       "delete --wait ends when the cluster is gone",
			frames:     []frame{{cluster: cluster("deleting", ""), nodes: []v1.Node{node(cp, "", "succeeded", "running")}}, {code: v1.CodeNotFound}},
			args:       []string{"cluster", "delete", "cls_1", "--wait"},
			wantStdout: `(?s)^Cluster cls_1 is being deleted; waiting until it is gone\.\.\.\ncluster demo: deleting\n.*Cluster cls_1 deleted\n$`,
		},
		{
			name:       "watch of a deleting cluster follows it until gone",
			frames:     []frame{{cluster: cluster("deleting", "")}, {cluster: cluster("deleting", "")}, {code: v1.CodeNotFound}},
			args:       []string{"cluster", "watch", "cls_1"},
			wantStdout: `(?s)^cluster demo: deleting\nCluster demo \(cls_1\) deleted\n$`,
		},
		{
			name:       "watch of a running cluster returns at once",
			frames:     []frame{running},
			args:       []string{"cluster", "watch", "cls_1"},
			wantStdout: `\nCluster demo \(cls_1\) is running: 2 node\(s\)`,
		},
		{
			name:       "scale --wait follows the operation",
			frames:     []frame{{cluster: cluster("scaling", "")}, running},
			args:       []string{"cluster", "scale", "cls_1", "--workers", "2", "--wait"},
			wantStdout: `(?s)cluster demo: scaling\n.*cluster demo: running\n.*is running`,
		},
		{
			name:       "JSON: progress on stderr, the final cluster alone on stdout",
			frames:     []frame{provisioning, running},
			args:       append(createArgs, "-o", "json"),
			wantStdout: `^\{\n  "id": "cls_1",\n(.*\n)*\}\n$`,
			wantStderr: `(?s)^Waiting for .*host-1 control-plane-init: init \[certs\]\n.*is running`,
		},
		{
			name:       "terminal: a progress bar redrawn in place",
			frames:     []frame{provisioning, provisioning, running},
			args:       createArgs,
			term:       true,
			wantStdout: `(?s)demo provisioning 1s\s+75% \|█{22} {8}\| \(3/4\).*\x1b\[3A\x1b\[J.*demo running \d+s\s+100% \|█{30}\| \(3/3\)\n  host-1   control-plane-init   joined\n.*is running`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newScriptedAPI(t, tc.frames...)
			args := tc.args
			kc := filepath.Join(t.TempDir(), "kubeconfig")
			if tc.kubeconfig {
				args = append(append([]string{}, args...), kc)
			}
			clock := time.Unix(0, 0)
			got := cli{
				env:  map[string]string{"DEPLOYME_API": api.URL, "DEPLOYME_TOKEN": "t"},
				term: tc.term,
				// Each reading of the clock is a second later, so elapsed times are stable.
				now: func() time.Time { clock = clock.Add(time.Second); return clock },
			}.run(args...)
			if got.code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tc.wantCode, got.stdout, got.stderr)
			}
			if !regexp.MustCompile(tc.wantStdout).MatchString(got.stdout) {
				t.Errorf("stdout %q\ndoes not match %q", got.stdout, tc.wantStdout)
			}
			if !regexp.MustCompile(tc.wantStderr).MatchString(got.stderr) {
				t.Errorf("stderr %q\ndoes not match %q", got.stderr, tc.wantStderr)
			}
			if !tc.term && strings.Contains(got.stdout+got.stderr, "\x1b") {
				t.Errorf("escape sequences without a terminal: %q", got.stdout)
			}
			if tc.kubeconfig {
				cfg, err := clientcmd.LoadFromFile(kc)
				if err != nil {
					t.Fatal(err)
				}
				if s := cfg.Clusters["demo"]; s == nil || s.Server != "https://10.0.0.1:6443" {
					t.Errorf("kubeconfig clusters %v, want demo at https://10.0.0.1:6443", cfg.Clusters)
				}
				if st, err := os.Stat(kc); err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("kubeconfig mode: %v, %v; want 0600", st.Mode(), err)
				}
			}
		})
	}
}
