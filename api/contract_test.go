package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/api"
	"github.com/deployme/deployme/api/apitest"
	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/server"
)

// The contract tests drive a real in-process coordinator over HTTP on 127.0.0.1 and
// validate every answer against api/openapi.yaml with apitest: a status the spec does not
// document for the operation, a missing header, a wrong Content-Type or a body that does
// not match the response schema fails the test.

// response is one raw answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes an error answer.
func (r response) errorBody(t *testing.T) v1.Error {
	t.Helper()
	var e v1.Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body: %v: %q", err, r.body)
	}
	return e
}

// object decodes a JSON object answer.
func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body: %v: %q", err, r.body)
	}
	return m
}

// apiCaller sends requests and validates each answer against the spec.
type apiCaller struct {
	base string
	v    *apitest.Validator
	hc   *http.Client
}

func newCaller(c *clustertest.Cluster, v *apitest.Validator) *apiCaller {
	return &apiCaller{base: c.URL(), v: v, hc: &http.Client{}}
}

// request describes one call. stream reads an event stream up to its first complete event
// and then hangs up, as a real follower never ends on its own.
type request struct {
	method, path, token string
	body                []byte
	header              map[string]string
	stream              bool
}

func (a *apiCaller) do(t *testing.T, rq request) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if rq.body != nil {
		rd = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, a.base+rq.path, rd)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	if rq.token != "" {
		req.Header.Set("Authorization", "Bearer "+rq.token)
	}
	if rq.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, val := range rq.header {
		req.Header.Set(k, val)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	var body []byte
	if rq.stream && resp.StatusCode == http.StatusOK {
		body = readFirstEvent(t, resp.Body)
		cancel()
	} else if body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("%s %s: read body: %v", rq.method, rq.path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: body}
	if err := a.v.Check(rq.method, rq.path, r.status, r.header, r.body); err != nil {
		t.Errorf("answer drifts from api/openapi.yaml:\n%v", err)
	}
	return r
}

// readFirstEvent reads an event stream until one complete event with data has arrived.
func readFirstEvent(t *testing.T, body io.Reader) []byte {
	t.Helper()
	var buf bytes.Buffer
	br := bufio.NewReader(body)
	hasData := false
	for {
		line, err := br.ReadString('\n')
		buf.WriteString(line)
		if strings.HasPrefix(line, "data:") {
			hasData = true
		}
		if line == "\n" && hasData {
			return buf.Bytes()
		}
		if err != nil {
			t.Fatalf("event stream ended before a complete event: %v: %q", err, buf.String())
		}
	}
}

// step is one call of a scenario; {name} in path, body and header values is replaced by
// vars[name].
type step struct {
	name   string
	before func(t *testing.T)
	method string
	path   string
	token  string // a key of vars; "" sends no Authorization header
	body   string
	raw    []byte // a body used as is (too large to write as a string)
	header map[string]string
	stream bool

	want  int
	code  string // the error code, for a non-2xx want
	field string // details.field, for a 400
	save  map[string]string
	check func(t *testing.T, r response)
}

func runSteps(t *testing.T, a *apiCaller, vars map[string]string, steps []step) {
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before(t)
			}
			pairs := make([]string, 0, 2*len(vars))
			for k, val := range vars {
				pairs = append(pairs, "{"+k+"}", val)
			}
			expand := strings.NewReplacer(pairs...).Replace
			rq := request{method: s.method, path: expand(s.path), stream: s.stream, body: s.raw}
			if s.token != "" {
				tok, ok := vars[s.token]
				if !ok {
					t.Fatalf("no token %q", s.token)
				}
				rq.token = tok
			}
			if s.body != "" {
				rq.body = []byte(expand(s.body))
			}
			if len(s.header) > 0 {
				rq.header = map[string]string{}
				for k, val := range s.header {
					rq.header[k] = expand(val)
				}
			}
			r := a.do(t, rq)
			if r.status != s.want {
				t.Fatalf("status %d, want %d: %s", r.status, s.want, r.body)
			}
			if s.want >= 400 {
				e := r.errorBody(t)
				if e.Code != s.code {
					t.Errorf("error code %q, want %q: %s", e.Code, s.code, e.Message)
				}
				if got, _ := e.Details["field"].(string); s.field != "" && got != s.field {
					t.Errorf("details.field %q, want %q (%s)", got, s.field, e.Message)
				}
			}
			if len(s.save) > 0 {
				obj := r.object(t)
				for key, field := range s.save {
					val, ok := obj[field]
					if !ok {
						t.Fatalf("answer has no %q to save: %s", field, r.body)
					}
					vars[key] = fmt.Sprint(val)
				}
			}
			if s.check != nil {
				s.check(t, r)
			}
		})
	}
}

func setStatus(c *clustertest.Cluster, vars map[string]string, cluster, status string) func(t *testing.T) {
	return func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Service().SetClusterStatus(ctx, vars[cluster], status, ""); err != nil {
			t.Fatalf("set %s %s: %v", cluster, status, err)
		}
	}
}

// wantHeader checks a response header ("" for absent).
func wantHeader(name, want string) func(t *testing.T, r response) {
	return func(t *testing.T, r response) {
		t.Helper()
		if got := r.header.Get(name); got != want {
			t.Errorf("%s %q, want %q", name, got, want)
		}
	}
}

func wantField(path []string, want any) func(t *testing.T, r response) {
	return func(t *testing.T, r response) {
		t.Helper()
		var got any = r.object(t)
		for _, p := range path {
			m, ok := got.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", path, p)
			}
			got = m[p]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", strings.Join(path, "."), diff)
		}
	}
}

const clusterBody = `{"name":"%s","control_planes":1,"workers":1,"node_size":"small"}`

// TestContract calls every route with success and representative error cases, then sweeps
// every operation for authentication, unlisted methods and permissions, and finally checks
// that every operation's success answer was seen.
func TestContract(t *testing.T) {
	// The agent binary the installation routes serve: any bytes do.
	agentBin := []byte("\x7fELF not really an agent\n")
	agentPath := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(agentPath, agentBin, 0o755); err != nil {
		t.Fatal(err)
	}
	agentSum := sha256.Sum256(agentBin)
	agentHex := hex.EncodeToString(agentSum[:])
	// Network boot on, without DHCP or TFTP (no boot segment here): the /boot/ routes and
	// the machines a script request records.
	assets := t.TempDir()
	for name, content := range map[string]string{"vmlinuz": "kernel image", "initrd.img": "initrd image"} {
		if err := os.WriteFile(filepath.Join(assets, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A Kubernetes artifact store with the catalog's binaries.
	kubeArtifacts := t.TempDir()
	if err := devmode.SeedKubeArtifacts(kubeArtifacts, []string{"v1.36.6", "v1.37.2"}); err != nil {
		t.Fatal(err)
	}
	kubeadmBin := devmode.FakeKubeBinary("kubeadm", "v1.37.2")
	kubeadmSum := sha256.Sum256(kubeadmBin)
	kubeadmHex := hex.EncodeToString(kubeadmSum[:])
	c := clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) {
		cfg.AgentBinary = agentPath
		cfg.KubeArtifactsDir = kubeArtifacts
		cfg.PXE.Enabled, cfg.PXE.InfraID, cfg.PXE.Assets, cfg.PXE.DHCPMode, cfg.PXE.TFTPAddr = true, "rack-bm", assets, "off", ""
	}})
	v := apitest.NewValidator(t)
	a := newCaller(c, v)
	hosts := c.AddHosts(6, clustertest.HostSpec{})
	spare := c.AddHosts(1, clustertest.HostSpec{})
	// Hosts of a bare-metal infra wait in discovered until an operator accepts them.
	bmName, bmKind := "rack-bm", "baremetal"
	bm, err := c.Client().CreateInfra(context.Background(), v1.CreateInfraRequest{Name: &bmName, Kind: &bmKind})
	if err != nil {
		t.Fatal(err)
	}
	discovered := c.AddHosts(1, clustertest.HostSpec{InfraID: bm.ID, Discovered: true})
	spec, err := api.SpecJSON()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"admin": c.AdminToken, "bogus": "dpl_not_a_real_token", "host": hosts[0].ID, "spare": spare[0].ID, "discovered": discovered[0].ID}
	tooLarge := []byte(`{"name":"` + strings.Repeat("a", 2<<20) + `"}`)

	steps := []step{
		// Meta.
		{name: "healthz", method: "GET", path: "/healthz", want: 200},
		{name: "healthz with an unknown query parameter", method: "GET", path: "/healthz?verbose=1", want: 400, code: "invalid_request", field: "verbose"},
		{name: "readyz", method: "GET", path: "/readyz", want: 200},
		{name: "readyz with an unknown query parameter", method: "GET", path: "/readyz?x=1", want: 400, code: "invalid_request", field: "x"},

		// Agent installation: no token.
		{name: "install script", method: "GET", path: "/install.sh", want: 200, check: func(t *testing.T, r response) {
			if want := "DEPLOYME_URL='" + c.URL() + "'"; !bytes.Contains(r.body, []byte(want)) {
				t.Errorf("the script does not download from this coordinator (%s)", want)
			}
		}},
		{name: "install script with a parameter", method: "GET", path: "/install.sh?arch=amd64", want: 400, code: "invalid_request", field: "arch"},
		{name: "agent download", method: "GET", path: "/v1/agent/download?os=linux&arch=amd64", want: 200, check: func(t *testing.T, r response) {
			if !bytes.Equal(r.body, agentBin) {
				t.Errorf("body %q, want the agent binary %q", r.body, agentBin)
			}
			wantHeader("X-Checksum-Sha256", agentHex)(t, r)
		}},
		{name: "agent download cached", method: "GET", path: "/v1/agent/download?os=linux&arch=amd64",
			header: map[string]string{"If-None-Match": `"sha256:` + agentHex + `"`}, want: 304},
		{name: "agent download for arm64", method: "GET", path: "/v1/agent/download?os=linux&arch=arm64", want: 404, code: "not_found"},
		{name: "agent download without os", method: "GET", path: "/v1/agent/download?arch=amd64", want: 400, code: "invalid_request", field: "os"},
		{name: "agent download for a malformed arch", method: "GET", path: "/v1/agent/download?os=linux&arch=AMD64", want: 400, code: "invalid_request", field: "arch"},
		{name: "agent checksum", method: "GET", path: "/v1/agent/download.sha256?os=linux&arch=amd64", want: 200, check: func(t *testing.T, r response) {
			if got, want := string(r.body), agentHex+"  deployme-agent\n"; got != want {
				t.Errorf("body %q, want %q", got, want)
			}
		}},
		{name: "agent checksum for windows", method: "GET", path: "/v1/agent/download.sha256?os=windows&arch=amd64", want: 404, code: "not_found"},
		{name: "metrics", method: "GET", path: "/metrics", token: "admin", want: 200, check: func(t *testing.T, r response) {
			if !bytes.Contains(r.body, []byte("deployme_http_requests_total")) {
				t.Errorf("metrics lack deployme_http_requests_total")
			}
		}},
		{name: "openapi document", method: "GET", path: "/v1/openapi.json", token: "admin", want: 200, check: func(t *testing.T, r response) {
			if !bytes.Equal(r.body, spec) {
				t.Errorf("served /v1/openapi.json differs from api.SpecJSON()")
			}
		}},
		{name: "openapi with an unknown query parameter", method: "GET", path: "/v1/openapi.json?format=yaml", token: "admin", want: 400, code: "invalid_request", field: "format"},
		{name: "kubernetes versions", method: "GET", path: "/v1/kubernetes/versions", token: "admin", want: 200},
		{name: "kubernetes versions with an unknown query parameter", method: "GET", path: "/v1/kubernetes/versions?all=1", token: "admin", want: 400, code: "invalid_request", field: "all"},
		{name: "unknown token", method: "GET", path: "/v1/clusters", token: "bogus", want: 401, code: "unauthorized"},
		{name: "unknown path", method: "GET", path: "/v1/nothing-here", token: "admin", want: 404, code: "not_found"},
		{name: "unlisted method", method: "PUT", path: "/v1/clusters", token: "admin", body: `{}`, want: 405, code: "method_not_allowed"},

		// Tokens.
		{name: "create read token", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"reader","permissions":["read"]}`, want: 201,
			save: map[string]string{"read": "token", "read_id": "id"}, check: func(t *testing.T, r response) {
				if got, want := r.header.Get("Location"), "/v1/tokens/"+r.object(t)["id"].(string); got != want {
					t.Errorf("Location %q, want %q", got, want)
				}
			}},
		{name: "create expiring cluster-wide write token", method: "POST", path: "/v1/tokens", token: "admin",
			body: `{"name":"ci","permissions":["write"],"scope":"cluster:*","expires":"90d","plan":"pro"}`, want: 201,
			save: map[string]string{"cw": "token"}, check: func(t *testing.T, r response) {
				if r.object(t)["expires_at"] == nil {
					t.Error("expires_at is null for a token that expires")
				}
			}},
		{name: "create cluster-wide read token", method: "POST", path: "/v1/tokens", token: "admin",
			body: `{"name":"cr","permissions":["read"],"scope":"cluster:*"}`, want: 201, save: map[string]string{"cr": "token"}},
		{name: "create token with an unknown field", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"x","permissions":["read"],"nmae":"y"}`, want: 400, code: "invalid_request", field: "nmae"},
		{name: "create admin token scoped to clusters", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"x","permissions":["admin"],"scope":"cluster:*"}`, want: 400, code: "invalid_request", field: "scope"},
		{name: "create token with malformed JSON", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":`, want: 400, code: "invalid_request"},
		{name: "create token with a body over 1 MiB", method: "POST", path: "/v1/tokens", token: "admin", raw: tooLarge, want: 413, code: "payload_too_large"},
		{name: "create token as a reader", method: "POST", path: "/v1/tokens", token: "read", body: `{"name":"x","permissions":["read"]}`, want: 403, code: "forbidden"},
		{name: "list tokens", method: "GET", path: "/v1/tokens", token: "admin", want: 200},
		{name: "get token", method: "GET", path: "/v1/tokens/{read_id}", token: "admin", want: 200, check: wantField([]string{"expires_at"}, nil)},
		{name: "get missing token", method: "GET", path: "/v1/tokens/tok_missing", token: "admin", want: 404, code: "not_found"},
		{name: "create doomed token", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"doomed","permissions":["read"]}`, want: 201,
			save: map[string]string{"doomed": "token", "doomed_id": "id"}},
		{name: "revoke token", method: "DELETE", path: "/v1/tokens/{doomed_id}", token: "admin", want: 204},
		{name: "revoked token is refused", method: "GET", path: "/v1/kubernetes/versions", token: "doomed", want: 401, code: "unauthorized"},
		{name: "revoke missing token", method: "DELETE", path: "/v1/tokens/{doomed_id}", token: "admin", want: 404, code: "not_found"},

		// Infras and join tokens.
		{name: "list infras", method: "GET", path: "/v1/infras", token: "admin", want: 200},
		{name: "create infra", method: "POST", path: "/v1/infras", token: "admin",
			body: `{"name":"site-a","kind":"onpremise","network":{"cidr":"10.20.0.0/24","gateway":"10.20.0.1","dns":["10.20.0.2"],"mtu":1500},"vip_pool":"10.20.0.240/28"}`,
			want: 201, save: map[string]string{"infra": "id"}},
		{name: "create infra with a taken name", method: "POST", path: "/v1/infras", token: "admin", body: `{"name":"site-a","kind":"baremetal"}`, want: 409, code: "conflict"},
		{name: "create infra of an unknown kind", method: "POST", path: "/v1/infras", token: "admin", body: `{"name":"x","kind":"cloud"}`, want: 400, code: "invalid_request", field: "kind"},
		{name: "create infra with an unknown nested field", method: "POST", path: "/v1/infras", token: "admin", body: `{"name":"x","kind":"onpremise","network":{"mtuu":1500}}`, want: 400, code: "invalid_request", field: "network.mtuu"},
		{name: "create infra as a reader", method: "POST", path: "/v1/infras", token: "read", body: `{"name":"x","kind":"onpremise"}`, want: 403, code: "forbidden"},
		{name: "get infra", method: "GET", path: "/v1/infras/{infra}", token: "admin", want: 200},
		{name: "get missing infra", method: "GET", path: "/v1/infras/infra_missing", token: "admin", want: 404, code: "not_found"},
		{name: "list infras with a cluster-scoped token", method: "GET", path: "/v1/infras", token: "cr", want: 403, code: "forbidden"},
		{name: "create join token", method: "POST", path: "/v1/infras/{infra}/join-tokens", token: "admin", body: `{"expires":"12h","max_uses":3}`, want: 201, save: map[string]string{"jt": "id"}},
		{name: "create join token without a body", method: "POST", path: "/v1/infras/{infra}/join-tokens", token: "admin", want: 201},
		{name: "create join token for too long", method: "POST", path: "/v1/infras/{infra}/join-tokens", token: "admin", body: `{"expires":"400d"}`, want: 400, code: "invalid_request", field: "expires"},
		{name: "create join token on a missing infra", method: "POST", path: "/v1/infras/infra_missing/join-tokens", token: "admin", body: `{}`, want: 404, code: "not_found"},
		{name: "list join tokens", method: "GET", path: "/v1/infras/{infra}/join-tokens", token: "admin", want: 200},
		{name: "list join tokens of a missing infra", method: "GET", path: "/v1/infras/infra_missing/join-tokens", token: "admin", want: 404, code: "not_found"},
		{name: "revoke join token", method: "DELETE", path: "/v1/infras/{infra}/join-tokens/{jt}", token: "admin", want: 204},
		{name: "revoke join token again", method: "DELETE", path: "/v1/infras/{infra}/join-tokens/{jt}", token: "admin", want: 404, code: "not_found"},
		{name: "delete the built-in infra", method: "DELETE", path: "/v1/infras/infra_managed", token: "admin", want: 409, code: "conflict"},
		{name: "delete infra with hosts", before: func(t *testing.T) { c.AddHosts(1, clustertest.HostSpec{InfraID: vars["infra"]}) },
			method: "DELETE", path: "/v1/infras/{infra}", token: "admin", want: 409, code: "conflict", check: wantField([]string{"details", "hosts"}, 1.0)},
		{name: "create empty infra", method: "POST", path: "/v1/infras", token: "admin", body: `{"name":"site-b","kind":"baremetal"}`, want: 201, save: map[string]string{"infra2": "id"}},
		{name: "delete empty infra", method: "DELETE", path: "/v1/infras/{infra2}", token: "admin", want: 204},
		{name: "delete missing infra", method: "DELETE", path: "/v1/infras/{infra2}", token: "admin", want: 404, code: "not_found"},

		// Hosts.
		{name: "list hosts", method: "GET", path: "/v1/hosts", token: "admin", want: 200},
		{name: "list hosts filtered and paged", method: "GET", path: "/v1/hosts?infra_id=infra_managed&state=available&page=1&per_page=2", token: "admin", want: 200,
			check: func(t *testing.T, r response) {
				var l v1.HostList
				if err := json.Unmarshal(r.body, &l); err != nil {
					t.Fatal(err)
				}
				if len(l.Items) != 2 || l.Total != 7 || l.PerPage != 2 {
					t.Errorf("got %d items of %d, per_page %d; want 2 of 7, per_page 2", len(l.Items), l.Total, l.PerPage)
				}
			}},
		{name: "list hosts in an unknown state", method: "GET", path: "/v1/hosts?state=broken", token: "admin", want: 400, code: "invalid_request", field: "state"},
		{name: "list hosts with per_page over 100", method: "GET", path: "/v1/hosts?per_page=101", token: "admin", want: 400, code: "invalid_request", field: "per_page"},
		{name: "list hosts with a cluster-scoped token", method: "GET", path: "/v1/hosts", token: "cw", want: 403, code: "forbidden"},
		{name: "get host", method: "GET", path: "/v1/hosts/{host}", token: "admin", want: 200},
		{name: "get missing host", method: "GET", path: "/v1/hosts/host_missing", token: "admin", want: 404, code: "not_found"},
		{name: "decommission host", method: "DELETE", path: "/v1/hosts/{spare}", token: "admin", want: 204},
		{name: "decommission missing host", method: "DELETE", path: "/v1/hosts/host_missing", token: "admin", want: 404, code: "not_found"},
		// Network boot: iPXE fetches its script and the image without a token; the script
		// request records the machine.
		{name: "boot script", method: "GET", path: "/boot/ipxe?mac=52:54:00:12:34:56", want: 200, check: func(t *testing.T, r response) {
			if !strings.HasPrefix(string(r.body), "#!ipxe") || !strings.Contains(string(r.body), "deployme.join_token=") {
				t.Errorf("script:\n%s", r.body)
			}
		}},
		{name: "boot kernel", method: "GET", path: "/boot/vmlinuz", want: 200},
		{name: "boot kernel headers", method: "HEAD", path: "/boot/initrd.img", want: 200},
		{name: "boot unknown file", method: "GET", path: "/boot/passwd", want: 404, code: "not_found"},
		// Kubernetes binaries by content: no token.
		{name: "artifact", method: "GET", path: "/artifacts/sha256/" + kubeadmHex, want: 200, check: func(t *testing.T, r response) {
			if !bytes.Equal(r.body, kubeadmBin) {
				t.Errorf("body %q, want %q", r.body, kubeadmBin)
			}
			wantHeader("ETag", `"sha256:`+kubeadmHex+`"`)(t, r)
		}},
		{name: "artifact headers", method: "HEAD", path: "/artifacts/sha256/" + kubeadmHex, want: 200},
		{name: "artifact cached", method: "GET", path: "/artifacts/sha256/" + kubeadmHex,
			header: map[string]string{"If-None-Match": `"sha256:` + kubeadmHex + `"`}, want: 304},
		{name: "artifact unknown", method: "GET", path: "/artifacts/sha256/" + strings.Repeat("0", 64), want: 404, code: "not_found"},
		{name: "artifact uppercase", method: "GET", path: "/artifacts/sha256/" + strings.ToUpper(kubeadmHex), want: 400, code: "invalid_request", field: "hex"},
		{name: "artifact with a query parameter", method: "GET", path: "/artifacts/sha256/" + kubeadmHex + "?v=1", want: 400, code: "invalid_request", field: "v"},
		{name: "machines", method: "GET", path: "/v1/machines", token: "admin", want: 200},
		{name: "machines of an infra", method: "GET", path: "/v1/machines?infra_id=infra_nope", token: "admin", want: 200},
		{name: "machine", before: func(t *testing.T) {
			waitUntil(t, func() bool {
				m, err := c.Client().GetMachine(context.Background(), "52:54:00:12:34:56")
				return err == nil && len(m.History) > 0
			})
		}, method: "GET", path: "/v1/machines/52:54:00:12:34:56", token: "admin", want: 200, check: wantField([]string{"next_boot"}, "agent")},
		{name: "machine not a MAC", method: "GET", path: "/v1/machines/zz", token: "admin", want: 404, code: "not_found"},
		{name: "machine unknown", method: "GET", path: "/v1/machines/52:54:00:00:00:01", token: "admin", want: 404, code: "not_found"},
		{name: "machine next boot as a reader", method: "PATCH", path: "/v1/machines/52:54:00:12:34:56", token: "read", body: `{"next_boot":"disk"}`, want: 403, code: "forbidden"},
		{name: "machine next boot unknown value", method: "PATCH", path: "/v1/machines/52:54:00:12:34:56", token: "admin", body: `{"next_boot":"floppy"}`, want: 400, code: "invalid_request", field: "next_boot"},
		{name: "machine chain without target", method: "PATCH", path: "/v1/machines/52:54:00:12:34:56", token: "admin", body: `{"next_boot":"disk","disk_exit":"chain"}`, want: 400, code: "invalid_request", field: "disk_chain"},
		{name: "machine chain target with a space", method: "PATCH", path: "/v1/machines/52:54:00:12:34:56", token: "admin", body: `{"next_boot":"disk","disk_exit":"chain","disk_chain":"http://x/a b"}`, want: 400, code: "invalid_request", field: "disk_chain"},
		{name: "machine next boot disk", method: "PATCH", path: "/v1/machines/52:54:00:12:34:56", token: "admin", body: `{"next_boot":"disk","disk_exit":"sanboot"}`, want: 200, check: wantField([]string{"next_boot"}, "disk")},
		{name: "boot script of an installed machine", method: "GET", path: "/boot/ipxe?mac=52:54:00:12:34:56", want: 200, check: func(t *testing.T, r response) {
			if !strings.Contains(string(r.body), "sanboot") || strings.Contains(string(r.body), "join_token") {
				t.Errorf("script of a disk boot:\n%s", r.body)
			}
		}},

		// A host's own network, checked as the agent checks it.
		{name: "host network as a reader", method: "PUT", path: "/v1/hosts/{host}/network", token: "read", body: `{"bridges":[{"name":"br0"}]}`, want: 403, code: "forbidden"},
		{name: "host network with a bad bond mode", method: "PUT", path: "/v1/hosts/{host}/network", token: "admin",
			body: `{"bonds":[{"name":"bond0","mode":"balance-rr","interfaces":["eth0","eth1"]}]}`, want: 400, code: "invalid_request", field: "network.bonds[0].mode"},
		{name: "host network with an unknown field", method: "PUT", path: "/v1/hosts/{host}/network", token: "admin",
			body: `{"bridges":[{"name":"br0","stp":true}]}`, want: 400, code: "invalid_request", field: "bridges[0].stp"},
		{name: "host network", method: "PUT", path: "/v1/hosts/{host}/network", token: "admin",
			body: `{"bridges":[{"name":"br0","interfaces":["eth0"]}],"addresses":[{"link":"br0","cidr":"10.20.0.5/24"}],"routes":[{"dst":"default","gateway":"10.20.0.1"}]}`,
			want: 200, check: func(t *testing.T, r response) {
				net, _ := r.object(t)["network"].(map[string]any)
				if br, _ := net["bridges"].([]any); len(br) != 1 || br[0].(map[string]any)["name"] != "br0" {
					t.Errorf("network %v, want the bridge br0", net)
				}
			}},
		{name: "host network cleared", method: "DELETE", path: "/v1/hosts/{host}/network", token: "admin", want: 200},
		{name: "network of a missing host", method: "PUT", path: "/v1/hosts/host_nope/network", token: "admin", body: `{}`, want: 404, code: "not_found"},

		{name: "accept host as a reader", method: "POST", path: "/v1/hosts/{discovered}/accept", token: "read", want: 403, code: "forbidden"},
		{name: "accept host with a parameter", method: "POST", path: "/v1/hosts/{discovered}/accept?force=1", token: "admin", want: 400, code: "invalid_request", field: "force"},
		{name: "accept host", method: "POST", path: "/v1/hosts/{discovered}/accept", token: "admin", want: 200, check: wantField([]string{"state"}, "available")},
		{name: "accept host again", method: "POST", path: "/v1/hosts/{discovered}/accept", token: "admin", header: map[string]string{"Idempotency-Key": "accept-1"},
			want: 200, check: wantField([]string{"state"}, "available")},
		{name: "accept missing host", method: "POST", path: "/v1/hosts/host_missing/accept", token: "admin", want: 404, code: "not_found"},
		{name: "accept a decommissioned host", method: "POST", path: "/v1/hosts/{spare}/accept", token: "admin", want: 409, code: "conflict"},

		// Clusters.
		{name: "create cluster", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "alpha"), want: 201,
			save: map[string]string{"alpha": "id"}, check: func(t *testing.T, r response) {
				if got, want := r.header.Get("Location"), "/v1/clusters/"+r.object(t)["id"].(string); got != want {
					t.Errorf("Location %q, want %q", got, want)
				}
			}},
		{name: "create cluster on an older version", method: "POST", path: "/v1/clusters", token: "admin",
			body: `{"name":"beta","control_planes":1,"workers":1,"node_size":"small","phase":"managed","kubernetes_version":"v1.36.6"}`, want: 201, save: map[string]string{"beta": "id"}},
		{name: "create cluster with a taken name", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "alpha"), want: 409, code: "conflict", field: "name"},
		{name: "create cluster beyond capacity", method: "POST", path: "/v1/clusters", token: "admin", body: `{"name":"huge","control_planes":3,"workers":10,"node_size":"xlarge"}`,
			want: 409, code: "insufficient_capacity", check: wantField([]string{"details", "needed"}, 13.0)},
		{name: "create cluster with a bad name", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "-alpha"), want: 400, code: "invalid_request", field: "name"},
		{name: "create cluster with 2 control planes", method: "POST", path: "/v1/clusters", token: "admin", body: `{"name":"x","control_planes":2,"workers":1,"node_size":"small"}`, want: 400, code: "invalid_request", field: "control_planes"},
		{name: "create cluster with an unknown field", method: "POST", path: "/v1/clusters", token: "admin", body: `{"name":"x","control_planes":1,"workers":1,"node_size":"small","region":"eu"}`, want: 400, code: "invalid_request", field: "region"},
		{name: "create onpremise cluster without infra", method: "POST", path: "/v1/clusters", token: "admin", body: `{"name":"x","control_planes":1,"workers":1,"node_size":"small","phase":"onpremise"}`, want: 400, code: "invalid_request", field: "infra_id"},
		{name: "create cluster on a missing infra", method: "POST", path: "/v1/clusters", token: "admin", body: `{"name":"x","control_planes":1,"workers":1,"node_size":"small","phase":"onpremise","infra_id":"infra_missing"}`, want: 400, code: "invalid_request", field: "infra_id"},
		{name: "create cluster with a body over 1 MiB", method: "POST", path: "/v1/clusters", token: "admin", raw: tooLarge, want: 413, code: "payload_too_large"},
		{name: "create cluster with malformed JSON", method: "POST", path: "/v1/clusters", token: "admin", body: `{"name":"x",}`, want: 400, code: "invalid_request"},
		{name: "create cluster as a reader", method: "POST", path: "/v1/clusters", token: "read", body: fmt.Sprintf(clusterBody, "x"), want: 403, code: "forbidden"},
		{name: "list clusters", method: "GET", path: "/v1/clusters", token: "admin", want: 200, check: wantField([]string{"total"}, 2.0)},
		{name: "list clusters filtered and paged", method: "GET", path: "/v1/clusters?status=provisioning&page=1&per_page=100", token: "admin", want: 200},
		{name: "list clusters with per_page 0", method: "GET", path: "/v1/clusters?per_page=0", token: "admin", want: 400, code: "invalid_request", field: "per_page"},
		{name: "list clusters in an unknown status", method: "GET", path: "/v1/clusters?status=sleeping", token: "admin", want: 400, code: "invalid_request", field: "status"},
		{name: "list clusters with a misspelt parameter", method: "GET", path: "/v1/clusters?statu=running", token: "admin", want: 400, code: "invalid_request", field: "statu"},
		{name: "get cluster", method: "GET", path: "/v1/clusters/{alpha}", token: "admin", want: 200},
		{name: "get missing cluster", method: "GET", path: "/v1/clusters/cls_missing", token: "admin", want: 404, code: "not_found"},
		{name: "create token scoped to one cluster", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"beta only","permissions":["write"],"scope":"cluster:{beta}"}`, want: 201,
			save: map[string]string{"betaonly": "token"}},
		{name: "create token scoped to a missing cluster", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"x","permissions":["read"],"scope":"cluster:cls_missing"}`, want: 400, code: "invalid_request", field: "scope"},
		{name: "a cluster out of scope is not found", method: "GET", path: "/v1/clusters/{alpha}", token: "betaonly", want: 404, code: "not_found"},
		{name: "the cluster in scope is found", method: "GET", path: "/v1/clusters/{beta}", token: "betaonly", want: 200},
		{name: "a one-cluster token lists its cluster only", method: "GET", path: "/v1/clusters", token: "betaonly", want: 200, check: wantField([]string{"total"}, 1.0)},
		{name: "a one-cluster token cannot create clusters", method: "POST", path: "/v1/clusters", token: "betaonly", body: fmt.Sprintf(clusterBody, "x"), want: 403, code: "forbidden"},
		{name: "nodes", method: "GET", path: "/v1/clusters/{alpha}/nodes", token: "admin", want: 200, check: func(t *testing.T, r response) {
			var l v1.NodeList
			if err := json.Unmarshal(r.body, &l); err != nil || len(l.Items) != 2 {
				t.Fatalf("want 2 nodes: %v %s", err, r.body)
			}
			vars["alpha_host"] = l.Items[0].HostID
		}},
		{name: "nodes of a missing cluster", method: "GET", path: "/v1/clusters/cls_missing/nodes", token: "admin", want: 404, code: "not_found"},
		{name: "decommission a node's host", method: "DELETE", path: "/v1/hosts/{alpha_host}", token: "admin", want: 409, code: "conflict"},
		{name: "events", method: "GET", path: "/v1/clusters/{alpha}/events", token: "admin", want: 200, check: func(t *testing.T, r response) {
			var l v1.EventList
			if err := json.Unmarshal(r.body, &l); err != nil || len(l.Items) == 0 {
				t.Fatalf("want events: %v %s", err, r.body)
			}
		}},
		{name: "events since", method: "GET", path: "/v1/clusters/{alpha}/events?since=1", token: "admin", want: 200},
		{name: "events with a bad follow", method: "GET", path: "/v1/clusters/{alpha}/events?follow=yes", token: "admin", want: 400, code: "invalid_request", field: "follow"},
		{name: "events with a negative since", method: "GET", path: "/v1/clusters/{alpha}/events?since=-1", token: "admin", want: 400, code: "invalid_request", field: "since"},
		{name: "events of a missing cluster", method: "GET", path: "/v1/clusters/cls_missing/events", token: "admin", want: 404, code: "not_found"},
		{name: "event stream with a bad Last-Event-ID", method: "GET", path: "/v1/clusters/{alpha}/events?follow=1", token: "admin", header: map[string]string{"Last-Event-ID": "abc"},
			want: 400, code: "invalid_request", field: "Last-Event-ID"},
		// Malformed is 400 whatever the target: even a cluster the token cannot see.
		{name: "event stream with a bad Last-Event-ID out of scope", method: "GET", path: "/v1/clusters/{alpha}/events?follow=1", token: "betaonly", header: map[string]string{"Last-Event-ID": "abc"},
			want: 400, code: "invalid_request", field: "Last-Event-ID"},
		{name: "event stream", method: "GET", path: "/v1/clusters/{alpha}/events?follow=1", token: "admin", stream: true, want: 200, check: checkFirstEvent},
		{name: "event stream resumed", method: "GET", path: "/v1/clusters/{alpha}/events?follow=true", token: "admin", header: map[string]string{"Last-Event-ID": "0"}, stream: true, want: 200, check: checkFirstEvent},
		{name: "kubeconfig before the control plane is up", method: "GET", path: "/v1/clusters/{alpha}/kubeconfig", token: "admin", want: 409, code: "conflict",
			check: wantField([]string{"details", "status"}, "provisioning")},
		{name: "kubeconfig for longer than a year", method: "GET", path: "/v1/clusters/{alpha}/kubeconfig?ttl=366d", token: "admin", want: 400, code: "invalid_request", field: "ttl"},
		{name: "kubeconfig with a bad ttl", method: "GET", path: "/v1/clusters/{alpha}/kubeconfig?ttl=1y", token: "admin", want: 400, code: "invalid_request", field: "ttl"},
		{name: "kubeconfig as a reader", method: "GET", path: "/v1/clusters/{alpha}/kubeconfig", token: "read", want: 403, code: "forbidden"},
		{name: "kubeconfig of a missing cluster", method: "GET", path: "/v1/clusters/cls_missing/kubeconfig?ttl=24h", token: "admin", want: 404, code: "not_found"},
		{name: "patch while provisioning", method: "PATCH", path: "/v1/clusters/{alpha}", token: "admin", body: `{"workers":2}`, want: 409, code: "conflict",
			check: wantField([]string{"details", "operation"}, "provisioning")},
		{name: "patch an immutable field", method: "PATCH", path: "/v1/clusters/{alpha}", token: "admin", body: `{"name":"renamed"}`, want: 400, code: "invalid_request", field: "name"},
		{name: "patch nothing", method: "PATCH", path: "/v1/clusters/{alpha}", token: "admin", body: `{}`, want: 400, code: "invalid_request"},
		{name: "patch workers with a string", method: "PATCH", path: "/v1/clusters/{alpha}", token: "admin", body: `{"workers":"2"}`, want: 400, code: "invalid_request", field: "workers"},
		{name: "patch a missing cluster", method: "PATCH", path: "/v1/clusters/cls_missing", token: "admin", body: `{"workers":2}`, want: 404, code: "not_found"},
		{name: "patch as a reader", method: "PATCH", path: "/v1/clusters/{alpha}", token: "read", body: `{"workers":2}`, want: 403, code: "forbidden"},
		{name: "patch a running cluster", before: setStatus(c, vars, "alpha", "running"),
			method: "PATCH", path: "/v1/clusters/{alpha}", token: "admin", body: `{"workers":2}`, want: 200, check: func(t *testing.T, r response) {
				wantField([]string{"status"}, "scaling")(t, r)
				wantField([]string{"workers"}, 2.0)(t, r)
			}},
		{name: "patch beyond capacity", before: setStatus(c, vars, "alpha", "running"),
			method: "PATCH", path: "/v1/clusters/{alpha}", token: "admin", body: `{"workers":50}`, want: 409, code: "insufficient_capacity"},
		{name: "upgrade while provisioning", method: "POST", path: "/v1/clusters/{beta}/upgrade", token: "admin", body: `{"kubernetes_version":"v1.37.2"}`, want: 409, code: "conflict"},
		{name: "upgrade to a version not offered", method: "POST", path: "/v1/clusters/{beta}/upgrade", token: "admin", body: `{"kubernetes_version":"v1.99.0"}`, want: 400, code: "invalid_request", field: "kubernetes_version"},
		{name: "upgrade without a version", method: "POST", path: "/v1/clusters/{beta}/upgrade", token: "admin", body: `{}`, want: 400, code: "invalid_request", field: "kubernetes_version"},
		{name: "upgrade a missing cluster", method: "POST", path: "/v1/clusters/cls_missing/upgrade", token: "admin", body: `{"kubernetes_version":"v1.37.2"}`, want: 404, code: "not_found"},
		{name: "upgrade as a reader", method: "POST", path: "/v1/clusters/{beta}/upgrade", token: "read", body: `{"kubernetes_version":"v1.37.2"}`, want: 403, code: "forbidden"},
		{name: "upgrade a running cluster", before: setStatus(c, vars, "beta", "running"),
			method: "POST", path: "/v1/clusters/{beta}/upgrade", token: "admin", body: `{"kubernetes_version":"v1.37.2"}`, want: 202, check: wantField([]string{"kubernetes_version"}, "v1.37.2")},
		{name: "downgrade", before: setStatus(c, vars, "alpha", "running"),
			method: "POST", path: "/v1/clusters/{alpha}/upgrade", token: "admin", body: `{"kubernetes_version":"v1.36.6"}`, want: 400, code: "invalid_request", field: "kubernetes_version"},
		{name: "delete cluster as a reader", method: "DELETE", path: "/v1/clusters/{alpha}", token: "read", want: 403, code: "forbidden"},
		{name: "delete cluster", method: "DELETE", path: "/v1/clusters/{alpha}", token: "admin", want: 204},
		// Nothing was installed on its hosts, so the cluster goes at once.
		{name: "deleted cluster is gone", method: "GET", path: "/v1/clusters/{alpha}", token: "admin", want: 404, code: "not_found"},
		{name: "delete missing cluster", method: "DELETE", path: "/v1/clusters/{alpha}", token: "admin", want: 404, code: "not_found"},

		// Coordinator.
		{name: "members", method: "GET", path: "/v1/coordinator/members", token: "admin", want: 200, check: func(t *testing.T, r response) {
			wantField([]string{"leader_id"}, "node-1")(t, r)
			var l v1.MemberList
			if err := json.Unmarshal(r.body, &l); err != nil || len(l.Items) != 1 {
				t.Fatalf("want one member: %v %s", err, r.body)
			}
			m := l.Items[0]
			got := v1.Member{ID: m.ID, Role: m.Role, Voter: m.Voter, Leader: m.Leader, Reachable: m.Reachable, LastContact: m.LastContact}
			want := v1.Member{ID: "node-1", Role: "leader", Voter: true, Leader: true, Reachable: true}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("the only member (-want +got):\n%s", diff)
			}
			vars["raft1"] = m.RaftAddress
		}},
		{name: "members as a reader", method: "GET", path: "/v1/coordinator/members", token: "read", want: 403, code: "forbidden"},
		{name: "members read stale", method: "GET", path: "/v1/coordinator/members?stale=1", token: "admin", want: 200, check: wantHeader("X-Deployme-Read", "stale")},
		{name: "members read linearizably", method: "GET", path: "/v1/coordinator/members?stale=false", token: "admin", want: 200, check: wantHeader("X-Deployme-Read", "")},
		{name: "members with a bad stale", method: "GET", path: "/v1/coordinator/members?stale=maybe", token: "admin", want: 400, code: "invalid_request", field: "stale"},
		{name: "members with an Idempotency-Key", method: "GET", path: "/v1/coordinator/members", token: "admin", header: map[string]string{"Idempotency-Key": "k1"},
			want: 400, code: "invalid_request", field: "Idempotency-Key"},
		{name: "add member without raft address", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"id":"node-2"}`, want: 400, code: "invalid_request", field: "raft_address"},
		{name: "add member without id", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"raft_address":"127.0.0.1:1"}`, want: 400, code: "invalid_request", field: "id"},
		{name: "add member with a malformed raft address", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"id":"node-2","raft_address":"nowhere"}`, want: 400, code: "invalid_request", field: "raft_address"},
		{name: "add member with port 0", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"id":"node-2","raft_address":"127.0.0.1:0"}`, want: 400, code: "invalid_request", field: "raft_address"},
		{name: "add member with a malformed http address", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"id":"node-2","raft_address":"127.0.0.1:1","http_address":"web"}`, want: 400, code: "invalid_request", field: "http_address"},
		{name: "add member with an unknown field", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"id":"node-2","raft_address":"127.0.0.1:1","voter":true}`, want: 400, code: "invalid_request", field: "voter"},
		{name: "add member on a taken raft address", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"id":"node-2","raft_address":"{raft1}"}`, want: 409, code: "conflict", field: "raft_address"},
		{name: "add member as a reader", method: "POST", path: "/v1/coordinator/members", token: "read", body: `{"id":"node-2","raft_address":"127.0.0.1:1"}`, want: 403, code: "forbidden"},
		// Nothing listens on 127.0.0.1:1: the replica joins as a non-voter that never catches
		// up, so it is never promoted and the quorum stays node-1 alone.
		{name: "add member", method: "POST", path: "/v1/coordinator/members", token: "admin", body: `{"id":"node-2","raft_address":"127.0.0.1:1"}`, want: 201, check: func(t *testing.T, r response) {
			var m v1.Member
			if err := json.Unmarshal(r.body, &m); err != nil {
				t.Fatal(err)
			}
			want := v1.Member{ID: "node-2", RaftAddress: "127.0.0.1:1", Role: "nonvoter"}
			if diff := cmp.Diff(want, m); diff != "" {
				t.Errorf("added member (-want +got):\n%s", diff)
			}
		}},
		{name: "members with an unreachable non-voter", method: "GET", path: "/v1/coordinator/members", token: "admin", want: 200, check: func(t *testing.T, r response) {
			var l v1.MemberList
			if err := json.Unmarshal(r.body, &l); err != nil {
				t.Fatal(err)
			}
			var got []v1.Member
			for _, m := range l.Items {
				got = append(got, v1.Member{ID: m.ID, Role: m.Role, Voter: m.Voter, Reachable: m.Reachable})
			}
			want := []v1.Member{{ID: "node-1", Role: "leader", Voter: true, Reachable: true}, {ID: "node-2", Role: "nonvoter"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
		}},
		{name: "remove member as a reader", method: "DELETE", path: "/v1/coordinator/members/node-2", token: "read", want: 403, code: "forbidden"},
		{name: "remove member", method: "DELETE", path: "/v1/coordinator/members/node-2", token: "admin", want: 204},
		{name: "remove missing member", method: "DELETE", path: "/v1/coordinator/members/node-2", token: "admin", want: 404, code: "not_found"},
		{name: "remove the last voter", method: "DELETE", path: "/v1/coordinator/members/node-1", token: "admin", want: 409, code: "conflict"},
		{name: "members after the removal", method: "GET", path: "/v1/coordinator/members", token: "admin", want: 200, check: func(t *testing.T, r response) {
			var l v1.MemberList
			if err := json.Unmarshal(r.body, &l); err != nil || len(l.Items) != 1 || l.Items[0].ID != "node-1" {
				t.Errorf("want node-1 alone: %v %s", err, r.body)
			}
		}},
	}
	runSteps(t, a, vars, steps)

	// The typed client, through a validating transport, is how other packages' tests get
	// the same check for free.
	t.Run("typed client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl := c.Client().WithHTTPClient(&http.Client{Transport: v.Transport(t, nil)})
		calls := []struct {
			name string
			call func() error
		}{
			{"ListClusters", func() error {
				_, err := cl.ListClusters(ctx, client.ListOptions{Page: 1, PerPage: 5, Status: v1.StatusUpgrading})
				return err
			}},
			{"GetCluster", func() error { _, err := cl.GetCluster(ctx, vars["beta"]); return err }},
			{"ClusterNodes", func() error { _, err := cl.ClusterNodes(ctx, vars["beta"]); return err }},
			{"ClusterEvents", func() error { _, err := cl.ClusterEvents(ctx, vars["beta"], 1); return err }},
			{"KubernetesVersions", func() error { _, err := cl.KubernetesVersions(ctx); return err }},
			{"ListTokens", func() error { _, err := cl.ListTokens(ctx); return err }},
			{"ListInfras", func() error { _, err := cl.ListInfras(ctx); return err }},
			{"ListJoinTokens", func() error { _, err := cl.ListJoinTokens(ctx, vars["infra"]); return err }},
			{"ListHosts", func() error {
				_, err := cl.ListHosts(ctx, client.ListOptions{InfraID: v1.ManagedInfraID, State: v1.HostAssigned})
				return err
			}},
			{"GetHost", func() error { _, err := cl.GetHost(ctx, vars["host"]); return err }},
			{"AcceptHost", func() error { _, err := cl.AcceptHost(ctx, vars["discovered"]); return err }},
			{"Members", func() error { _, err := cl.Members(ctx); return err }},
		}
		for _, tc := range calls {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.call(); err != nil {
					t.Error(err)
				}
			})
		}
	})

	t.Run("every operation needs a token", func(t *testing.T) {
		for _, op := range v.Operations() {
			if op.Public {
				continue
			}
			t.Run(op.Method+" "+op.Path, func(t *testing.T) {
				r := a.do(t, request{method: op.Method, path: concrete(op.Path, nil)})
				if r.status != http.StatusUnauthorized {
					t.Errorf("status %d without a token, want 401: %s", r.status, r.body)
				}
			})
		}
	})

	t.Run("unlisted methods", func(t *testing.T) {
		paths := map[string][]string{}
		for _, op := range v.Operations() {
			paths[op.Path] = append(paths[op.Path], op.Method)
		}
		for path, listed := range paths {
			i := slices.IndexFunc([]string{"PUT", "PATCH", "POST", "DELETE", "GET"}, func(m string) bool { return !slices.Contains(listed, m) })
			method := []string{"PUT", "PATCH", "POST", "DELETE", "GET"}[i]
			t.Run(method+" "+path, func(t *testing.T) {
				// The validator checks Allow against the spec's methods for the path.
				r := a.do(t, request{method: method, path: concrete(path, nil), token: c.AdminToken})
				if r.status != http.StatusMethodNotAllowed {
					t.Errorf("status %d, want 405: %s", r.status, r.body)
				}
			})
		}
	})

	// Each operation's x-access is what the server enforces: tokens lacking the permission
	// or scope get 403, the others never do. Denied calls are harmless; allowed ones are
	// only made for GET so the sweep changes nothing.
	t.Run("access", func(t *testing.T) {
		ids := map[string]string{"cluster": vars["beta"], "infra": vars["infra"], "token": vars["read_id"], "host": vars["host"]}
		type holder struct {
			name, secret  string
			write, global bool
		}
		holders := []holder{
			{"read *", vars["read"], false, true},
			{"write cluster:*", vars["cw"], true, false},
			{"read cluster:*", vars["cr"], false, false},
		}
		for _, op := range v.Operations() {
			for _, h := range holders {
				var allowed bool
				switch op.Access {
				case "public", "token", "cluster-read":
					allowed = true
				case "cluster-write":
					allowed = h.write
				case "global-read":
					allowed = h.global
				case "admin":
					allowed = false
				default:
					t.Fatalf("%s %s: unknown x-access %q", op.Method, op.Path, op.Access)
				}
				if allowed && op.Method != "GET" {
					continue
				}
				t.Run(op.Method+" "+op.Path+" as "+h.name, func(t *testing.T) {
					r := a.do(t, request{method: op.Method, path: concrete(op.Path, ids), token: h.secret})
					if got := r.status == http.StatusForbidden; got == allowed || r.status == http.StatusUnauthorized {
						t.Errorf("x-access %s: status %d for a %s token: %s", op.Access, r.status, h.name, r.body)
					}
				})
			}
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		r := a.do(t, request{method: "POST", path: "/v1/tokens", token: c.AdminToken, body: []byte(`{"name":"slow","permissions":["read"],"plan":"community"}`)})
		if r.status != http.StatusCreated {
			t.Fatalf("create token: %d %s", r.status, r.body)
		}
		secret := r.object(t)["token"].(string)
		// The window is a calendar minute, so the count may restart once on the way.
		for i := range 3 * v1.PlanLimits[v1.PlanCommunity] {
			r := a.do(t, request{method: "GET", path: "/v1/kubernetes/versions", token: secret})
			if got := r.header.Get("X-RateLimit-Limit"); got != "100" {
				t.Fatalf("request %d: X-RateLimit-Limit %q, want 100", i, got)
			}
			if r.status == http.StatusTooManyRequests {
				if e := r.errorBody(t); e.Code != v1.CodeRateLimited {
					t.Errorf("code %q, want rate_limited", e.Code)
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("request %d: status %d: %s", i, r.status, r.body)
			}
		}
		t.Fatal("never rate limited")
	})

	// Every operation was seen answering its success status, so no schema above went
	// unexercised; the kubeconfig 200 is the exception, as no cluster's control plane comes
	// up without agents.
	t.Run("coverage", func(t *testing.T) {
		seen := v.Seen()
		unreachable := map[string]bool{"GET /v1/clusters/{id}/kubeconfig": true}
		for _, op := range v.Operations() {
			key := op.Method + " " + op.Path
			for _, s := range op.Statuses {
				if s < 200 || s >= 300 {
					continue
				}
				if seen[apitest.Exchange{Method: op.Method, Path: op.Path, Status: s}] == 0 && !unreachable[key] {
					t.Errorf("%s never answered %d in this test", key, s)
				}
			}
		}
		for _, s := range []int{400, 401, 403, 404, 405, 409, 413, 429} {
			n := 0
			for e, count := range seen {
				if e.Status == s {
					n += count
				}
			}
			if n == 0 {
				t.Errorf("no %d was exercised", s)
			}
		}
	})
}

// checkFirstEvent checks the SSE framing the spec describes: id is the event's seq and
// event its type.
func checkFirstEvent(t *testing.T, r response) {
	t.Helper()
	var id, typ, data string
	for _, line := range strings.Split(string(r.body), "\n") {
		field, value, _ := strings.Cut(line, ": ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			data = value
		}
	}
	var e v1.Event
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		t.Fatalf("event data: %v: %q", err, r.body)
	}
	if id != strconv.FormatUint(e.Seq, 10) || typ != e.Type {
		t.Errorf("id %q event %q, want the data's seq %d and type %q", id, typ, e.Seq, e.Type)
	}
	if got := r.header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", got)
	}
}

// concrete fills a path template: {id} by the kind of object the path names, {token_id}
// by a join token that does not exist.
func concrete(tmpl string, ids map[string]string) string {
	kind := map[string]string{"/v1/clusters/": "cluster", "/v1/infras/": "infra", "/v1/tokens/": "token", "/v1/hosts/": "host", "/v1/coordinator/members/": "member"}
	out := tmpl
	for prefix, k := range kind {
		if strings.HasPrefix(tmpl, prefix) {
			id := ids[k]
			if id == "" {
				id = "x_missing"
			}
			out = strings.Replace(out, "{id}", id, 1)
		}
	}
	return strings.Replace(out, "{token_id}", "jt_missing", 1)
}

// TestContractRetriesAndStaleReads checks the Idempotency-Key and ?stale= contract: a retry
// with the same key answers the first outcome and applies once, the same key with another
// request is 409, secrets are not shown again, and a stale read says so in X-Deployme-Read.
func TestContractRetriesAndStaleReads(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	v := apitest.NewValidator(t)
	a := newCaller(c, v)
	c.AddHosts(2, clustertest.HostSpec{})
	vars := map[string]string{"admin": c.AdminToken}
	key := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }
	wantTotal := func(n float64) func(t *testing.T, r response) { return wantField([]string{"total"}, n) }
	sameID := func(name string) func(t *testing.T, r response) {
		return func(t *testing.T, r response) { wantField([]string{"id"}, vars[name])(t, r) }
	}
	noSecret := func(fields ...string) func(t *testing.T, r response) {
		return func(t *testing.T, r response) {
			obj := r.object(t)
			for _, f := range fields {
				if _, ok := obj[f]; ok {
					t.Errorf("a retry shows %q again", f)
				}
			}
		}
	}
	steps := []step{
		{name: "create cluster with a key", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "once"), header: key("create-once"),
			want: 201, save: map[string]string{"cluster": "id"}},
		{name: "retry the creation", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "once"), header: key("create-once"),
			want: 201, check: sameID("cluster")},
		{name: "reuse the key for another cluster", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "twice"), header: key("create-once"),
			want: 409, code: "conflict"},
		{name: "one cluster was created", method: "GET", path: "/v1/clusters", token: "admin", want: 200, check: func(t *testing.T, r response) {
			wantTotal(1)(t, r)
			wantHeader("X-Deployme-Read", "")(t, r)
		}},
		{name: "list clusters stale", method: "GET", path: "/v1/clusters?stale=1&per_page=5", token: "admin", want: 200, check: func(t *testing.T, r response) {
			wantTotal(1)(t, r)
			wantHeader("X-Deployme-Read", "stale")(t, r)
		}},
		{name: "get cluster stale", method: "GET", path: "/v1/clusters/{cluster}?stale=true", token: "admin", want: 200, check: wantHeader("X-Deployme-Read", "stale")},
		{name: "get cluster not stale", method: "GET", path: "/v1/clusters/{cluster}?stale=0", token: "admin", want: 200, check: wantHeader("X-Deployme-Read", "")},
		{name: "get cluster with a bad stale", method: "GET", path: "/v1/clusters/{cluster}?stale=yes", token: "admin", want: 400, code: "invalid_request", field: "stale"},
		{name: "get cluster with an Idempotency-Key", method: "GET", path: "/v1/clusters/{cluster}", token: "admin", header: key("k"), want: 400, code: "invalid_request", field: "Idempotency-Key"},
		{name: "key of 256 characters", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "long"), header: key(strings.Repeat("k", 256)),
			want: 400, code: "invalid_request", field: "Idempotency-Key"},
		{name: "key with a space", method: "POST", path: "/v1/clusters", token: "admin", body: fmt.Sprintf(clusterBody, "space"), header: key("a b"),
			want: 400, code: "invalid_request", field: "Idempotency-Key"},
		{name: "key of 255 characters", method: "PATCH", path: "/v1/clusters/cls_missing", token: "admin", body: `{"workers":2}`, header: key(strings.Repeat("k", 255)),
			want: 404, code: "not_found"},
		{name: "create token with a key", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"ci","permissions":["read"]}`, header: key("token-once"),
			want: 201, save: map[string]string{"tok": "token", "tok_id": "id"}},
		{name: "retry the token creation", method: "POST", path: "/v1/tokens", token: "admin", body: `{"name":"ci","permissions":["read"]}`, header: key("token-once"),
			want: 201, check: func(t *testing.T, r response) {
				sameID("tok_id")(t, r)
				noSecret("token")(t, r)
			}},
		{name: "the first secret works", method: "GET", path: "/v1/clusters", token: "tok", want: 200},
		{name: "create join token with a key", method: "POST", path: "/v1/infras/infra_managed/join-tokens", token: "admin", body: `{"expires":"1h"}`, header: key("jt-once"),
			want: 201, save: map[string]string{"jt": "id"}},
		{name: "retry the join token creation", method: "POST", path: "/v1/infras/infra_managed/join-tokens", token: "admin", body: `{"expires":"1h"}`, header: key("jt-once"),
			want: 201, check: func(t *testing.T, r response) {
				sameID("jt")(t, r)
				noSecret("token", "command")(t, r)
			}},
		{name: "delete cluster with a key", method: "DELETE", path: "/v1/clusters/{cluster}", token: "admin", header: key("delete-once"), want: 204},
		// Not checked: a retry of this deletion with the same key should answer the first
		// outcome (204), but the service looks the cluster up before proposing and answers
		// 404 (reported; coordinator/service is not this test's to change).
		{name: "delete again without the key", method: "DELETE", path: "/v1/clusters/{cluster}", token: "admin", want: 404, code: "not_found"},
	}
	runSteps(t, a, vars, steps)
}

// waitUntil polls cond for up to 10 s (an asynchronous write landing).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
