package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/coordinator/service"
	"github.com/deployme/deployme/coordinator/state"
)

// authzClock is the fake clock of the service (token expiry, created_at) and of the REST
// rate limiter, so tests move time instead of sleeping through expiries and windows.
type authzClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *authzClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *authzClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *authzClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// authzEpoch is where fake clocks start: 15 s into a minute, so the rate-limit window ends
// 45 s later and a Retry-After of 45 shows it is counted from the fake clock, not the real one.
var authzEpoch = time.Date(2031, 3, 4, 5, 6, 15, 0, time.UTC)

// authzStart starts a coordinator whose service and rate limiter read clock.
func authzStart(t *testing.T, clock *authzClock, configure func(*server.Config)) *clustertest.Cluster {
	t.Helper()
	// Something for the agent downloads to serve: they take no token, whoever asks.
	agent := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(agent, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	return clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) {
		cfg.Service.Now = clock.Now
		cfg.REST.Now = clock.Now
		cfg.AgentBinary = agent
		if configure != nil {
			configure(cfg)
		}
	}})
}

// authzDo sends one request; a transport error fails the test at once.
func authzDo(t *testing.T, cl *client.Client, method, path string, body any) *client.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.Do(ctx, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// authzExpect sends a request and fails unless it gets status; it returns the answer.
func authzExpect(t *testing.T, cl *client.Client, method, path string, body any, status int) *client.Response {
	t.Helper()
	resp := authzDo(t, cl, method, path, body)
	if resp.Status != status {
		t.Fatalf("%s %s: status %d, want %d; body: %.300s", method, path, resp.Status, status, resp.Body)
	}
	return resp
}

func authzDecode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %T: %v; body: %.300s", v, err, body)
	}
	return v
}

// authzCode is the error code of an error answer.
func authzCode(t *testing.T, resp *client.Response) string {
	t.Helper()
	return authzDecode[v1.Error](t, resp.Body).Code
}

// authzTables is every FSM table as indented JSON, so that a cmp.Diff of two of them points
// at the changed lines.
func authzTables(t *testing.T, c *clustertest.Cluster) string {
	t.Helper()
	b, err := json.MarshalIndent(c.Server().FSM().Tables(), "", " ")
	if err != nil {
		t.Fatalf("marshal tables: %v", err)
	}
	return string(b)
}

// authzCreateToken creates a token as the bootstrap admin and returns it with its secret.
func authzCreateToken(t *testing.T, c *clustertest.Cluster, req map[string]any) v1.Token {
	t.Helper()
	resp := authzExpect(t, c.Client(), http.MethodPost, "/v1/tokens", req, http.StatusCreated)
	return authzDecode[v1.Token](t, resp.Body)
}

// authzPrincipal is one column of the permission matrix: who calls.
type authzPrincipal struct {
	name  string
	perms []string // nil for the callers without a valid token
	scope string   // authzOwnScope stands for the cell's own cluster
}

const authzOwnScope = "cluster:<own>"

// The matrix columns. The three first have no valid token; the others are minted per scope.
const (
	authzNone = iota
	authzExpired
	authzRevoked
	authzRead
	authzWrite
	authzAdmin
	authzClusterID
	authzClusterAll
	authzClusterIDRead
)

// Permissions are given alone (write without read, admin without either) so that the
// matrix also checks that write implies read and admin implies both.
var authzPrincipals = [...]authzPrincipal{
	authzNone:          {name: "no-token"},
	authzExpired:       {name: "expired"},
	authzRevoked:       {name: "revoked"},
	authzRead:          {name: "read", perms: []string{"read"}, scope: "*"},
	authzWrite:         {name: "write", perms: []string{"write"}, scope: "*"},
	authzAdmin:         {name: "admin", perms: []string{"admin"}, scope: "*"},
	authzClusterID:     {name: "cluster-id-rw", perms: []string{"read", "write"}, scope: authzOwnScope},
	authzClusterAll:    {name: "cluster-all-rw", perms: []string{"read", "write"}, scope: "cluster:*"},
	authzClusterIDRead: {name: "cluster-id-ro", perms: []string{"read"}, scope: authzOwnScope},
}

// authzMatrix is the expected status of every route (as Routes() lists it) for every
// principal. Routes on one cluster have two rows: "[own]" targets the cluster that the
// cluster-id tokens are scoped to, "[other]" another real cluster, which those tokens must
// not be able to tell apart from a missing one (404, never 403).
//
// Requests are well-formed and would succeed given the permission, so only authorization
// decides. Writes run on objects made for their cell. Kubeconfig is the one route that cannot
// succeed here: this build answers 409 until a control plane is up, so there 409 means
// "authorized".
var authzMatrix = map[string][len(authzPrincipals)]int{
	// Columns: non = no token, exp = expired, rev = revoked, rd = read, wr = write, adm = admin,
	// cid = cluster:<own> read+write, c* = cluster:* read+write, cro = cluster:<own> read only.
	//                                                non  exp  rev   rd   wr  adm  cid   c*  cro
	"GET /healthz":    {200, 200, 200, 200, 200, 200, 200, 200, 200},
	"GET /readyz":     {200, 200, 200, 200, 200, 200, 200, 200, 200},
	"GET /install.sh": {200, 200, 200, 200, 200, 200, 200, 200, 200},
	// Network boot is off in this harness: public, and 404 for everyone.
	"GET /boot/{file}":  {404, 404, 404, 404, 404, 404, 404, 404, 404},
	"HEAD /boot/{file}": {404, 404, 404, 404, 404, 404, 404, 404, 404},
	"GET /v1/machines":  {401, 401, 401, 200, 200, 200, 403, 403, 403},
	// No machine has booted here: allowed callers get 404.
	"GET /v1/machines/{mac}":                        {401, 401, 401, 404, 404, 404, 403, 403, 403},
	"PATCH /v1/machines/{mac}":                      {401, 401, 401, 403, 403, 404, 403, 403, 403},
	"GET /artifacts/sha256/{hex}":                   {404, 404, 404, 404, 404, 404, 404, 404, 404}, // no artifact store in this harness: public, 404 for all
	"HEAD /artifacts/sha256/{hex}":                  {404, 404, 404, 404, 404, 404, 404, 404, 404},
	"GET /v1/agent/download":                        {200, 200, 200, 200, 200, 200, 200, 200, 200},
	"GET /v1/agent/download.sha256":                 {200, 200, 200, 200, 200, 200, 200, 200, 200},
	"GET /metrics":                                  {401, 401, 401, 200, 200, 200, 403, 403, 403},
	"GET /v1/openapi.json":                          {401, 401, 401, 200, 200, 200, 200, 200, 200},
	"GET /v1/kubernetes/versions":                   {401, 401, 401, 200, 200, 200, 200, 200, 200},
	"GET /v1/clusters":                              {401, 401, 401, 200, 200, 200, 200, 200, 200},
	"POST /v1/clusters":                             {401, 401, 401, 403, 201, 201, 403, 201, 403},
	"GET /v1/clusters/{id} [own]":                   {401, 401, 401, 200, 200, 200, 200, 200, 200},
	"GET /v1/clusters/{id} [other]":                 {401, 401, 401, 200, 200, 200, 404, 200, 404},
	"PATCH /v1/clusters/{id} [own]":                 {401, 401, 401, 403, 200, 200, 200, 200, 403},
	"PATCH /v1/clusters/{id} [other]":               {401, 401, 401, 403, 200, 200, 404, 200, 403},
	"DELETE /v1/clusters/{id} [own]":                {401, 401, 401, 403, 204, 204, 204, 204, 403},
	"DELETE /v1/clusters/{id} [other]":              {401, 401, 401, 403, 204, 204, 404, 204, 403},
	"GET /v1/clusters/{id}/kubeconfig [own]":        {401, 401, 401, 403, 409, 409, 409, 409, 403},
	"GET /v1/clusters/{id}/kubeconfig [other]":      {401, 401, 401, 403, 409, 409, 404, 409, 403},
	"GET /v1/clusters/{id}/nodes [own]":             {401, 401, 401, 200, 200, 200, 200, 200, 200},
	"GET /v1/clusters/{id}/nodes [other]":           {401, 401, 401, 200, 200, 200, 404, 200, 404},
	"GET /v1/clusters/{id}/events [own]":            {401, 401, 401, 200, 200, 200, 200, 200, 200},
	"GET /v1/clusters/{id}/events [other]":          {401, 401, 401, 200, 200, 200, 404, 200, 404},
	"POST /v1/clusters/{id}/upgrade [own]":          {401, 401, 401, 403, 202, 202, 202, 202, 403},
	"POST /v1/clusters/{id}/upgrade [other]":        {401, 401, 401, 403, 202, 202, 404, 202, 403},
	"GET /v1/tokens":                                {401, 401, 401, 403, 403, 200, 403, 403, 403},
	"POST /v1/tokens":                               {401, 401, 401, 403, 403, 201, 403, 403, 403},
	"GET /v1/tokens/{id}":                           {401, 401, 401, 403, 403, 200, 403, 403, 403},
	"DELETE /v1/tokens/{id}":                        {401, 401, 401, 403, 403, 204, 403, 403, 403},
	"GET /v1/infras":                                {401, 401, 401, 200, 200, 200, 403, 403, 403},
	"POST /v1/infras":                               {401, 401, 401, 403, 403, 201, 403, 403, 403},
	"GET /v1/infras/{id}":                           {401, 401, 401, 200, 200, 200, 403, 403, 403},
	"DELETE /v1/infras/{id}":                        {401, 401, 401, 403, 403, 204, 403, 403, 403},
	"GET /v1/infras/{id}/join-tokens":               {401, 401, 401, 403, 403, 200, 403, 403, 403},
	"POST /v1/infras/{id}/join-tokens":              {401, 401, 401, 403, 403, 201, 403, 403, 403},
	"DELETE /v1/infras/{id}/join-tokens/{token_id}": {401, 401, 401, 403, 403, 204, 403, 403, 403},
	"GET /v1/hosts":                                 {401, 401, 401, 200, 200, 200, 403, 403, 403},
	"GET /v1/hosts/{id}":                            {401, 401, 401, 200, 200, 200, 403, 403, 403},
	"DELETE /v1/hosts/{id}":                         {401, 401, 401, 403, 403, 204, 403, 403, 403},
	"POST /v1/hosts/{id}/accept":                    {401, 401, 401, 403, 403, 200, 403, 403, 403},
	"PUT /v1/hosts/{id}/network":                    {401, 401, 401, 403, 403, 200, 403, 403, 403},
	"DELETE /v1/hosts/{id}/network":                 {401, 401, 401, 403, 403, 200, 403, 403, 403},
	"GET /v1/coordinator/members":                   {401, 401, 401, 403, 403, 200, 403, 403, 403},
	// Membership changes are not made for real here: the admin's answers are the
	// deterministic refusals of a well-authorized request (no raft_address; an unknown id).
	"POST /v1/coordinator/members":        {401, 401, 401, 403, 403, 400, 403, 403, 403},
	"DELETE /v1/coordinator/members/{id}": {401, 401, 401, 403, 403, 404, 403, 403, 403},
}

// authzErrorCodes is the error code each refusal status of the matrix must carry.
var authzErrorCodes = map[int]string{
	http.StatusBadRequest:   v1.CodeInvalidRequest,
	http.StatusUnauthorized: v1.CodeUnauthorized,
	http.StatusForbidden:    v1.CodeForbidden,
	http.StatusNotFound:     v1.CodeNotFound,
	http.StatusConflict:     v1.CodeConflict,
}

// authzEnv is the coordinator of the matrix and the objects its cells read.
type authzEnv struct {
	c     *clustertest.Cluster
	admin *client.Client
	seq   int

	// clusterA and clusterB are running clusters that GET cells read; clusterA is the one
	// the cluster-id tokens of those cells are scoped to.
	clusterA, clusterB string
	infraID            string // an onpremise infra (join-token routes, GET)
	hostID             string // a discovered host, never placed (GET)
	tokenID            string // a token that GET /v1/tokens/{id} reads

	expired, revoked string // secrets
	// tokens caches minted secrets by permissions and concrete scope.
	tokens map[string]string
}

// name returns a fresh object name, so that creates never collide on names.
func (e *authzEnv) name(kind string) string {
	e.seq++
	return fmt.Sprintf("authz-%s-%d", kind, e.seq)
}

// freshCluster creates a running cluster of 1 control plane and 2 workers on hosts added
// for it. It runs v1.36.6 so that an upgrade to v1.37.2 is allowed, and has 2 workers so
// that a PATCH to 1 worker needs no free host.
func (e *authzEnv) freshCluster(t *testing.T) string {
	t.Helper()
	e.c.AddHosts(3, clustertest.HostSpec{})
	resp := authzExpect(t, e.admin, http.MethodPost, "/v1/clusters", map[string]any{
		"name": e.name("cls"), "control_planes": 1, "workers": 2, "node_size": "small", "kubernetes_version": "v1.36.6",
	}, http.StatusCreated)
	id := authzDecode[v1.Cluster](t, resp.Body).ID
	// PATCH and upgrade are refused while provisioning; running is the reconciler's write.
	if err := e.c.Service().SetClusterStatus(context.Background(), id, v1.StatusRunning, ""); err != nil {
		t.Fatalf("set cluster %s running: %v", id, err)
	}
	return id
}

// token returns the secret p calls with; own is the cluster a cluster-id scope names.
func (e *authzEnv) token(t *testing.T, p int, own string) string {
	t.Helper()
	switch p {
	case authzNone:
		return ""
	case authzExpired:
		return e.expired
	case authzRevoked:
		return e.revoked
	}
	pr := authzPrincipals[p]
	scope := pr.scope
	if scope == authzOwnScope {
		scope = "cluster:" + own
	}
	key := strings.Join(pr.perms, ",") + " " + scope
	if s, ok := e.tokens[key]; ok {
		return s
	}
	// Enterprise, so that the matrix never meets a rate limit.
	tok := authzCreateToken(t, e.c, map[string]any{"name": "authz-" + pr.name, "permissions": pr.perms, "scope": scope, "plan": "enterprise"})
	e.tokens[key] = tok.Secret
	return tok.Secret
}

// request builds a well-formed request for route. Writes that can succeed get objects of
// their own (a token, an infra, a join token, a host), so no cell depends on another.
func (e *authzEnv) request(t *testing.T, route, clusterID string) (path string, body any) {
	t.Helper()
	switch route {
	case "GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/openapi.json", "GET /v1/kubernetes/versions",
		"GET /v1/clusters", "GET /v1/tokens", "GET /v1/infras", "GET /v1/hosts", "GET /v1/coordinator/members":
		_, path, _ = strings.Cut(route, " ")
		return path, nil
	case "GET /install.sh":
		return "/install.sh", nil
	case "GET /boot/{file}", "HEAD /boot/{file}":
		return "/boot/ipxe?mac=52:54:00:00:00:01", nil
	case "GET /artifacts/sha256/{hex}", "HEAD /artifacts/sha256/{hex}":
		return "/artifacts/sha256/" + strings.Repeat("0", 64), nil
	case "PUT /v1/hosts/{id}/network":
		return "/v1/hosts/" + e.hostID + "/network", map[string]any{"bridges": []any{map[string]any{"name": "br0"}}}
	case "DELETE /v1/hosts/{id}/network":
		return "/v1/hosts/" + e.hostID + "/network", nil
	case "GET /v1/machines":
		return "/v1/machines", nil
	case "GET /v1/machines/{mac}":
		return "/v1/machines/52:54:00:00:00:01", nil
	case "PATCH /v1/machines/{mac}":
		return "/v1/machines/52:54:00:00:00:01", map[string]any{"next_boot": "disk"}
	case "GET /v1/agent/download", "GET /v1/agent/download.sha256":
		_, path, _ = strings.Cut(route, " ")
		return path + "?os=linux&arch=amd64", nil
	case "POST /v1/clusters":
		e.c.AddHosts(2, clustertest.HostSpec{})
		return "/v1/clusters", map[string]any{"name": e.name("new"), "control_planes": 1, "workers": 1, "node_size": "small"}
	case "GET /v1/clusters/{id}", "DELETE /v1/clusters/{id}":
		return "/v1/clusters/" + clusterID, nil
	case "PATCH /v1/clusters/{id}":
		return "/v1/clusters/" + clusterID, map[string]any{"workers": 1}
	case "GET /v1/clusters/{id}/kubeconfig":
		return "/v1/clusters/" + clusterID + "/kubeconfig", nil
	case "GET /v1/clusters/{id}/nodes":
		return "/v1/clusters/" + clusterID + "/nodes", nil
	case "GET /v1/clusters/{id}/events":
		return "/v1/clusters/" + clusterID + "/events", nil
	case "POST /v1/clusters/{id}/upgrade":
		return "/v1/clusters/" + clusterID + "/upgrade", map[string]any{"kubernetes_version": "v1.37.2"}
	case "POST /v1/tokens":
		return "/v1/tokens", map[string]any{"name": e.name("tok"), "permissions": []string{"read"}}
	case "GET /v1/tokens/{id}":
		return "/v1/tokens/" + e.tokenID, nil
	case "DELETE /v1/tokens/{id}":
		return "/v1/tokens/" + authzCreateToken(t, e.c, map[string]any{"name": e.name("victim"), "permissions": []string{"read"}}).ID, nil
	case "POST /v1/infras":
		return "/v1/infras", map[string]any{"name": e.name("site"), "kind": "onpremise"}
	case "GET /v1/infras/{id}":
		return "/v1/infras/" + e.infraID, nil
	case "DELETE /v1/infras/{id}":
		resp := authzExpect(t, e.admin, http.MethodPost, "/v1/infras", map[string]any{"name": e.name("site"), "kind": "baremetal"}, http.StatusCreated)
		return "/v1/infras/" + authzDecode[v1.Infra](t, resp.Body).ID, nil
	case "GET /v1/infras/{id}/join-tokens":
		return "/v1/infras/" + e.infraID + "/join-tokens", nil
	case "POST /v1/infras/{id}/join-tokens":
		return "/v1/infras/" + e.infraID + "/join-tokens", map[string]any{"expires": "1h"}
	case "DELETE /v1/infras/{id}/join-tokens/{token_id}":
		resp := authzExpect(t, e.admin, http.MethodPost, "/v1/infras/"+e.infraID+"/join-tokens", map[string]any{"expires": "1h"}, http.StatusCreated)
		return "/v1/infras/" + e.infraID + "/join-tokens/" + authzDecode[v1.JoinToken](t, resp.Body).ID, nil
	case "GET /v1/hosts/{id}":
		return "/v1/hosts/" + e.hostID, nil
	case "DELETE /v1/hosts/{id}":
		return "/v1/hosts/" + e.c.AddHosts(1, clustertest.HostSpec{})[0].ID, nil
	case "POST /v1/hosts/{id}/accept":
		return "/v1/hosts/" + e.c.AddHosts(1, clustertest.HostSpec{Discovered: true})[0].ID + "/accept", nil
	case "POST /v1/coordinator/members":
		return "/v1/coordinator/members", map[string]any{"id": e.name("member")}
	case "DELETE /v1/coordinator/members/{id}":
		return "/v1/coordinator/members/" + e.name("member"), nil
	}
	t.Fatalf("no request for route %q: add one, and a row to authzMatrix", route)
	return "", nil
}

// newAuthzEnv starts the matrix's coordinator: a fake clock (to expire a token), and an
// anonymous limit high enough that the three token-less columns never meet it.
func newAuthzEnv(t *testing.T) *authzEnv {
	t.Helper()
	clock := &authzClock{now: authzEpoch}
	c := authzStart(t, clock, func(cfg *server.Config) { cfg.REST.AnonymousLimit = 1 << 20 })
	e := &authzEnv{c: c, admin: c.Client(), tokens: map[string]string{}}

	e.clusterA = e.freshCluster(t)
	e.clusterB = e.freshCluster(t)
	resp := authzExpect(t, e.admin, http.MethodPost, "/v1/infras", map[string]any{"name": "authz-site", "kind": "onpremise"}, http.StatusCreated)
	e.infraID = authzDecode[v1.Infra](t, resp.Body).ID
	e.hostID = c.AddHosts(1, clustertest.HostSpec{Discovered: true})[0].ID
	e.tokenID = authzCreateToken(t, c, map[string]any{"name": "authz-target", "permissions": []string{"read"}}).ID

	// Each of these worked before it was expired or revoked, so the 401s of their columns
	// come from the expiry and the revocation alone. The revoked one was an admin token.
	exp := authzCreateToken(t, c, map[string]any{"name": "authz-expired", "permissions": []string{"read"}, "expires": "1m", "plan": "enterprise"})
	authzExpect(t, c.ClientWith(exp.Secret), http.MethodGet, "/v1/clusters", nil, http.StatusOK)
	clock.Advance(2 * time.Minute)
	authzExpect(t, c.ClientWith(exp.Secret), http.MethodGet, "/v1/clusters", nil, http.StatusUnauthorized)
	e.expired = exp.Secret

	rev := authzCreateToken(t, c, map[string]any{"name": "authz-revoked", "permissions": []string{"admin"}, "plan": "enterprise"})
	authzExpect(t, c.ClientWith(rev.Secret), http.MethodGet, "/v1/tokens", nil, http.StatusOK)
	authzExpect(t, e.admin, http.MethodDelete, "/v1/tokens/"+rev.ID, nil, http.StatusNoContent)
	e.revoked = rev.Secret
	return e
}

// cell runs one (route, principal) cell and checks its status, its error code, and that a
// refused request left every FSM table as it was.
func (e *authzEnv) cell(t *testing.T, route, target string, p, want int) {
	method, pattern, _ := strings.Cut(route, " ")
	own, clusterID := e.clusterA, ""
	if strings.HasPrefix(pattern, "/v1/clusters/{id}") {
		switch {
		case method == http.MethodGet && target == "own":
			clusterID = e.clusterA
		case method == http.MethodGet:
			clusterID = e.clusterB
		default:
			// A write that may succeed gets a cluster of its own. For [own] the cluster-id
			// tokens are scoped to it; for [other] they stay scoped to clusterA.
			clusterID = e.freshCluster(t)
			if target == "own" {
				own = clusterID
			}
		}
	}
	secret := e.token(t, p, own)
	path, body := e.request(t, route, clusterID)

	before := authzTables(t, e.c)
	resp := authzDo(t, e.c.ClientWith(secret), method, path, body)
	if resp.Status != want {
		t.Fatalf("%s %s as %s: status %d, want %d; body: %.300s", method, path, authzPrincipals[p].name, resp.Status, want, resp.Body)
	}
	if want < 400 {
		return
	}
	if method == http.MethodHead {
		return // no body to read the error code from
	}
	if got := authzCode(t, resp); got != authzErrorCodes[want] {
		t.Errorf("%s %s as %s: error code %q, want %q", method, path, authzPrincipals[p].name, got, authzErrorCodes[want])
	}
	if diff := cmp.Diff(before, authzTables(t, e.c)); diff != "" {
		t.Errorf("%s %s as %s was refused with %d but changed the state (-before +after):\n%s", method, path, authzPrincipals[p].name, want, diff)
	}
}

func TestPermissionMatrix(t *testing.T) {
	e := newAuthzEnv(t)

	// The matrix must cover exactly the registered routes: a new route without a row, or a
	// row for a route that is gone, fails here rather than going unchecked.
	var registered, rows []string
	for _, r := range e.c.Server().Handler().Routes() {
		route := r.Method + " " + r.Pattern
		if strings.HasPrefix(r.Pattern, "/v1/clusters/{id}") {
			registered = append(registered, route+" [own]", route+" [other]")
		} else {
			registered = append(registered, route)
		}
	}
	for k := range authzMatrix {
		rows = append(rows, k)
	}
	slices.Sort(rows)
	if diff := cmp.Diff(slices.Sorted(slices.Values(registered)), rows); diff != "" {
		t.Fatalf("authzMatrix rows differ from the registered routes (-routes +rows):\n%s", diff)
	}

	t.Run("list scope", func(t *testing.T) { e.listScope(t) })
	t.Run("admin tokens need scope *", func(t *testing.T) { e.adminNeedsGlobalScope(t) })
	t.Run("out of scope looks missing", func(t *testing.T) { e.outOfScopeLooksMissing(t) })

	for _, row := range registered {
		route, target, _ := strings.Cut(row, " [")
		target = strings.TrimSuffix(target, "]")
		for p, want := range authzMatrix[row] {
			t.Run(row+"/"+authzPrincipals[p].name, func(t *testing.T) { e.cell(t, route, target, p, want) })
		}
	}
}

// listScope checks that a cluster-id token lists its one cluster and nothing else, with
// filters and pages applied within its scope, while cluster:* lists what * lists.
func (e *authzEnv) listScope(t *testing.T) {
	// A provisioning cluster next to the two running ones, so every filter below has
	// something outside the scope that it would otherwise show.
	e.c.AddHosts(2, clustertest.HostSpec{})
	resp := authzExpect(t, e.admin, http.MethodPost, "/v1/clusters", map[string]any{"name": e.name("prov"), "control_planes": 1, "workers": 1, "node_size": "small"}, http.StatusCreated)
	provisioning := authzDecode[v1.Cluster](t, resp.Body).ID

	type page struct {
		IDs   []string
		Total int
	}
	list := func(t *testing.T, secret, query string) page {
		t.Helper()
		resp := authzExpect(t, e.c.ClientWith(secret), http.MethodGet, "/v1/clusters"+query, nil, http.StatusOK)
		l := authzDecode[v1.ClusterList](t, resp.Body)
		out := page{IDs: []string{}, Total: l.Total}
		for _, c := range l.Items {
			out.IDs = append(out.IDs, c.ID)
		}
		return out
	}
	// What * sees, to show the scoped answers below are narrower than the unscoped ones.
	admin := e.c.AdminToken
	if got := list(t, admin, "?status=running"); !slices.Contains(got.IDs, e.clusterA) || !slices.Contains(got.IDs, e.clusterB) {
		t.Fatalf("admin list ?status=running = %v, want both running clusters %s and %s", got, e.clusterA, e.clusterB)
	}
	if got := list(t, admin, "?status=provisioning"); !slices.Contains(got.IDs, provisioning) {
		t.Fatalf("admin list ?status=provisioning = %v, want %s in it", got, provisioning)
	}

	clusterID := e.token(t, authzClusterID, e.clusterA)
	clusterIDRead := e.token(t, authzClusterIDRead, e.clusterA)
	clusterAll := e.token(t, authzClusterAll, "")
	for _, tc := range []struct {
		name, secret, query string
		want                page
	}{
		{"cluster-id", clusterID, "", page{[]string{e.clusterA}, 1}},
		{"cluster-id-ro", clusterIDRead, "", page{[]string{e.clusterA}, 1}},
		{"cluster-id running", clusterID, "?status=running", page{[]string{e.clusterA}, 1}},
		{"cluster-id provisioning", clusterID, "?status=provisioning", page{[]string{}, 0}},
		{"cluster-id scaling", clusterID, "?status=scaling", page{[]string{}, 0}},
		{"cluster-id page 2", clusterID, "?page=2", page{[]string{}, 1}},
		{"cluster-id per_page 1", clusterID, "?per_page=1", page{[]string{e.clusterA}, 1}},
		{"cluster-all", clusterAll, "?per_page=100", list(t, admin, "?per_page=100")},
		{"cluster-all running", clusterAll, "?status=running&per_page=100", list(t, admin, "?status=running&per_page=100")},
		{"cluster-all provisioning", clusterAll, "?status=provisioning&per_page=100", list(t, admin, "?status=provisioning&per_page=100")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, list(t, tc.secret, tc.query)); diff != "" {
				t.Errorf("GET /v1/clusters%s (-want +got):\n%s", tc.query, diff)
			}
		})
	}
}

// adminNeedsGlobalScope checks that no admin token can be limited to clusters: admin
// manages tokens, infras and hosts, which no cluster scope could contain.
func (e *authzEnv) adminNeedsGlobalScope(t *testing.T) {
	for _, scope := range []string{"cluster:*", "cluster:" + e.clusterA} {
		for _, perms := range [][]string{{"admin"}, {"read", "write", "admin"}} {
			t.Run(scope+" "+strings.Join(perms, ","), func(t *testing.T) {
				before := authzTables(t, e.c)
				resp := authzExpect(t, e.admin, http.MethodPost, "/v1/tokens", map[string]any{"name": "authz-bad-admin", "permissions": perms, "scope": scope}, http.StatusBadRequest)
				got := authzDecode[v1.Error](t, resp.Body)
				if got.Code != v1.CodeInvalidRequest || got.Details["field"] != "scope" {
					t.Errorf("error %q naming %v, want %q naming scope", got.Code, got.Details["field"], v1.CodeInvalidRequest)
				}
				if diff := cmp.Diff(before, authzTables(t, e.c)); diff != "" {
					t.Errorf("refused token creation changed the state (-before +after):\n%s", diff)
				}
			})
		}
	}
}

// outOfScopeLooksMissing checks that, for a cluster-id token, another cluster's answers are
// byte for byte those of a cluster that does not exist (IDs aside), on every cluster route.
func (e *authzEnv) outOfScopeLooksMissing(t *testing.T) {
	const missing = "cls_aaaaaaaaaaaaaaaa"
	scoped := e.c.ClientWith(e.token(t, authzClusterID, e.clusterA))
	for _, r := range e.c.Server().Handler().Routes() {
		if !strings.HasPrefix(r.Pattern, "/v1/clusters/{id}") {
			continue
		}
		route := r.Method + " " + r.Pattern
		t.Run(route, func(t *testing.T) {
			answer := func(id string) string {
				path, body := e.request(t, route, id)
				resp := authzDo(t, scoped, r.Method, path, body)
				return strconv.Itoa(resp.Status) + " " + strings.ReplaceAll(string(resp.Body), id, "<id>")
			}
			before := authzTables(t, e.c)
			other, none := answer(e.clusterB), answer(missing)
			if !strings.HasPrefix(other, "404 ") {
				t.Errorf("out-of-scope cluster: %s, want a 404", other)
			}
			if diff := cmp.Diff(none, other); diff != "" {
				t.Errorf("out-of-scope cluster answers differently from a missing one (-missing +out of scope):\n%s", diff)
			}
			if diff := cmp.Diff(before, authzTables(t, e.c)); diff != "" {
				t.Errorf("refused requests changed the state (-before +after):\n%s", diff)
			}
		})
	}
}

// authzRateHeaders reads the three rate-limit headers, failing when one is missing or not
// an integer.
func authzRateHeaders(t *testing.T, resp *client.Response) (limit, remaining int, reset int64) {
	t.Helper()
	read := func(name string) int64 {
		t.Helper()
		v := resp.Header.Get(name)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("status %d: header %s = %q, want an integer", resp.Status, name, v)
		}
		return n
	}
	return int(read("X-RateLimit-Limit")), int(read("X-RateLimit-Remaining")), read("X-RateLimit-Reset")
}

func TestRateLimit(t *testing.T) {
	const anonLimit = 5
	clock := &authzClock{now: authzEpoch}
	c := authzStart(t, clock, func(cfg *server.Config) {
		cfg.REST.AnonymousLimit = anonLimit
		// A default plan other than community shows the default comes from the config.
		cfg.Service.DefaultPlan = v1.PlanPro
	})
	mint := func(plan string) string {
		req := map[string]any{"name": "rate-" + plan, "permissions": []string{"read", "write"}}
		if plan != "" {
			req["plan"] = plan
		}
		return authzCreateToken(t, c, req).Secret
	}
	community := c.ClientWith(mint(v1.PlanCommunity))
	// inWindow tells whether reset can end a one-minute window that is running now.
	inWindow := func(reset int64) bool {
		now := clock.Now().Unix()
		return reset > now && reset <= now+60
	}
	// windowEnd is the community token's X-RateLimit-Reset, read from its first answer.
	var windowEnd int64

	t.Run("community budget", func(t *testing.T) {
		// Successes and every kind of refusal count alike and all carry the headers.
		mix := []struct {
			method, path string
			body         any
			want         int
		}{
			{http.MethodGet, "/v1/clusters", nil, http.StatusOK},
			{http.MethodGet, "/v1/clusters/cls_aaaaaaaaaaaaaaaa", nil, http.StatusNotFound},
			{http.MethodGet, "/v1/tokens", nil, http.StatusForbidden},
			{http.MethodGet, "/v1/no-such-endpoint", nil, http.StatusNotFound},
			{http.MethodDelete, "/v1/kubernetes/versions", nil, http.StatusMethodNotAllowed},
			{http.MethodPost, "/v1/clusters", map[string]any{}, http.StatusBadRequest},
		}
		for i := range 100 {
			m := mix[i%len(mix)]
			resp := authzExpect(t, community, m.method, m.path, m.body, m.want)
			limit, remaining, reset := authzRateHeaders(t, resp)
			if i == 0 {
				if !inWindow(reset) {
					t.Fatalf("X-RateLimit-Reset %d does not end a window running now (%d)", reset, clock.Now().Unix())
				}
				windowEnd = reset
			}
			if limit != 100 || remaining != 99-i || reset != windowEnd {
				t.Fatalf("request %d (%s %s): limit %d remaining %d reset %d, want 100, %d, %d", i+1, m.method, m.path, limit, remaining, reset, 99-i, windowEnd)
			}
		}
		for range 2 {
			resp := authzExpect(t, community, http.MethodGet, "/v1/clusters", nil, http.StatusTooManyRequests)
			if got := authzCode(t, resp); got != v1.CodeRateLimited {
				t.Errorf("101st request: error %q, want %q", got, v1.CodeRateLimited)
			}
			if limit, remaining, reset := authzRateHeaders(t, resp); limit != 100 || remaining != 0 || reset != windowEnd {
				t.Errorf("101st request: limit %d remaining %d reset %d, want 100, 0, %d", limit, remaining, reset, windowEnd)
			}
			if got, want := resp.Header.Get("Retry-After"), strconv.FormatInt(windowEnd-clock.Now().Unix(), 10); got != want {
				t.Errorf("101st request: Retry-After %q, want %q (seconds to the window's end)", got, want)
			}
		}
	})

	t.Run("each token has its own budget", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			cl     *client.Client
			limit  int
			remain int
		}{
			{"another community token", c.ClientWith(mint(v1.PlanCommunity)), 100, 99},
			{"pro", c.ClientWith(mint(v1.PlanPro)), 1000, 999},
			{"enterprise", c.ClientWith(mint(v1.PlanEnterprise)), 10000, 9999},
			{"no plan: the configured default (pro)", c.ClientWith(mint("")), 1000, 999},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp := authzExpect(t, tc.cl, http.MethodGet, "/v1/clusters", nil, http.StatusOK)
				if limit, remaining, reset := authzRateHeaders(t, resp); limit != tc.limit || remaining != tc.remain || !inWindow(reset) {
					t.Errorf("limit %d remaining %d reset %d, want %d, %d and a reset within a minute of %d", limit, remaining, reset, tc.limit, tc.remain, clock.Now().Unix())
				}
			})
		}
		// The bootstrap admin is enterprise; its remaining count depends on the set-up calls.
		resp := authzExpect(t, c.Client(), http.MethodGet, "/v1/clusters", nil, http.StatusOK)
		if limit, _, _ := authzRateHeaders(t, resp); limit != 10000 {
			t.Errorf("bootstrap admin: limit %d, want 10000", limit)
		}
	})

	t.Run("the window's end restores the budget", func(t *testing.T) {
		clock.Set(time.Unix(windowEnd-1, 0))
		resp := authzExpect(t, community, http.MethodGet, "/v1/clusters", nil, http.StatusTooManyRequests)
		if got := resp.Header.Get("Retry-After"); got != "1" {
			t.Errorf("one second before the end: Retry-After %q, want 1", got)
		}
		clock.Set(time.Unix(windowEnd, 0))
		resp = authzExpect(t, community, http.MethodGet, "/v1/clusters", nil, http.StatusOK)
		if limit, remaining, reset := authzRateHeaders(t, resp); limit != 100 || remaining != 99 || !inWindow(reset) {
			t.Errorf("new window: limit %d remaining %d reset %d, want 100, 99 and a reset within a minute of %d", limit, remaining, reset, windowEnd)
		}
	})

	t.Run("anonymous requests share a per-IP budget", func(t *testing.T) {
		// Counted from here: the previous subtest opened a new window, and health probes
		// (the harness polls /readyz while starting) do not draw on this budget.
		nobody, bogus := c.ClientWith(""), c.ClientWith("dpl_notatokenatall")
		calls := []struct {
			cl           *client.Client
			method, path string
		}{
			{nobody, http.MethodGet, "/v1/clusters"},
			{bogus, http.MethodGet, "/v1/clusters"},
			{nobody, http.MethodPost, "/v1/tokens"},
			{bogus, http.MethodGet, "/v1/no-such-endpoint"},
			{nobody, http.MethodGet, "/v1/hosts"},
		}
		for i, call := range calls {
			resp := authzExpect(t, call.cl, call.method, call.path, nil, http.StatusUnauthorized)
			if limit, remaining, reset := authzRateHeaders(t, resp); limit != anonLimit || remaining != anonLimit-1-i || !inWindow(reset) {
				t.Fatalf("anonymous request %d: limit %d remaining %d reset %d, want %d, %d and a reset within a minute of %d", i+1, limit, remaining, reset, anonLimit, anonLimit-1-i, clock.Now().Unix())
			}
		}
		resp := authzExpect(t, bogus, http.MethodGet, "/v1/clusters", nil, http.StatusTooManyRequests)
		if got := authzCode(t, resp); got != v1.CodeRateLimited {
			t.Errorf("over the anonymous limit: error %q, want %q", got, v1.CodeRateLimited)
		}
		_, _, reset := authzRateHeaders(t, resp)
		if got, want := resp.Header.Get("Retry-After"), strconv.FormatInt(reset-clock.Now().Unix(), 10); got != want {
			t.Errorf("over the anonymous limit: Retry-After %q, want %q", got, want)
		}

		// A valid token from the same address keeps its own budget, and health probes
		// still answer (with the headers) so a load balancer does not drop the replica.
		authzExpect(t, community, http.MethodGet, "/v1/clusters", nil, http.StatusOK)
		for _, path := range []string{"/healthz", "/readyz"} {
			authzRateHeaders(t, authzExpect(t, nobody, http.MethodGet, path, nil, http.StatusOK))
		}

		t.Run("another address has its own budget", func(t *testing.T) {
			// 127.0.0.2 is loopback too on Linux; the server is still dialled at 127.0.0.1.
			dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			probe, err := dialer.Dial("tcp", strings.TrimPrefix(c.URL(), "http://"))
			if err != nil {
				t.Skipf("cannot send from 127.0.0.2 here: %v", err)
			}
			probe.Close()
			hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
			defer hc.CloseIdleConnections()
			resp := authzExpect(t, nobody.WithHTTPClient(hc), http.MethodGet, "/v1/clusters", nil, http.StatusUnauthorized)
			if limit, remaining, _ := authzRateHeaders(t, resp); limit != anonLimit || remaining != anonLimit-1 {
				t.Errorf("from 127.0.0.2: limit %d remaining %d, want %d, %d", limit, remaining, anonLimit, anonLimit-1)
			}
		})
	})
}

func TestTokenLifecycle(t *testing.T) {
	clock := &authzClock{now: authzEpoch}
	c := authzStart(t, clock, nil)
	admin := c.Client()

	// Create: the answer is the only one that holds the secret.
	resp := authzExpect(t, admin, http.MethodPost, "/v1/tokens", map[string]any{
		"name": "ci", "permissions": []string{"write", "read"}, "scope": "cluster:*", "expires": "90d", "plan": "pro",
	}, http.StatusCreated)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(resp.Body, &raw); err != nil {
		t.Fatalf("create answer: %v", err)
	}
	var gotKeys []string
	for k := range raw {
		gotKeys = append(gotKeys, k)
	}
	slices.Sort(gotKeys)
	if diff := cmp.Diff([]string{"created_at", "expires_at", "id", "name", "permissions", "plan", "scope", "token"}, gotKeys); diff != "" {
		t.Errorf("create answer keys (-want +got):\n%s", diff)
	}
	created := authzDecode[v1.Token](t, resp.Body)
	secret := created.Secret
	// 43 characters hold 256 bits in base64, the densest encoding a header would carry.
	if !strings.HasPrefix(secret, service.TokenPrefix) || len(secret)-len(service.TokenPrefix) < 43 {
		t.Fatalf("secret %q: want the %s prefix and 256 random bits", secret, service.TokenPrefix)
	}
	if got, want := resp.Header.Get("Location"), "/v1/tokens/"+created.ID; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	expires := authzEpoch.Add(90 * 24 * time.Hour)
	want := v1.Token{ID: created.ID, Name: "ci", Permissions: []string{"read", "write"}, Scope: "cluster:*", Plan: "pro", ExpiresAt: &expires, CreatedAt: authzEpoch}
	if diff := cmp.Diff(want, created, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Secret" }, cmp.Ignore())); diff != "" {
		t.Errorf("created token (-want +got):\n%s", diff)
	}
	user := c.ClientWith(secret)
	authzExpect(t, user, http.MethodGet, "/v1/clusters", nil, http.StatusOK)

	t.Run("the secret is never shown again", func(t *testing.T) {
		for _, path := range []string{"/v1/tokens/" + created.ID, "/v1/tokens"} {
			resp := authzExpect(t, admin, http.MethodGet, path, nil, http.StatusOK)
			if bytes.Contains(resp.Body, []byte(secret)) || bytes.Contains(resp.Body, []byte(`"token"`)) {
				t.Errorf("GET %s shows a secret: %.500s", path, resp.Body)
			}
		}
		got := authzDecode[v1.Token](t, authzExpect(t, admin, http.MethodGet, "/v1/tokens/"+created.ID, nil, http.StatusOK).Body)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET /v1/tokens/{id} (-want +got):\n%s", diff)
		}
		list := authzDecode[v1.TokenList](t, authzExpect(t, admin, http.MethodGet, "/v1/tokens", nil, http.StatusOK).Body)
		i := slices.IndexFunc(list.Items, func(tok v1.Token) bool { return tok.ID == created.ID })
		if i < 0 {
			t.Fatalf("GET /v1/tokens does not list %s", created.ID)
		}
		if diff := cmp.Diff(want, list.Items[i]); diff != "" {
			t.Errorf("GET /v1/tokens item (-want +got):\n%s", diff)
		}
	})

	t.Run("only a hash is stored", func(t *testing.T) {
		tables := c.Server().FSM().Tables()
		b, err := json.Marshal(tables)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the FSM tables hold the secret")
		}
		i := slices.IndexFunc(tables.Tokens, func(tok *state.Token) bool { return tok.ID == created.ID })
		if i < 0 {
			t.Fatalf("the FSM tables do not hold token %s", created.ID)
		}
		hash := tables.Tokens[i].Hash
		if hash != service.HashSecret(secret) {
			t.Errorf("stored hash %q is not the secret's hash", hash)
		}

		// A snapshot puts the tables on disk next to the Raft log; neither may hold the
		// secret. The hash is there, which shows the search reads what Raft writes.
		if err := c.Server().Raft().Snapshot(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		hashFound := false
		err = filepath.WalkDir(c.DataDir(), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds the secret", path)
			}
			hashFound = hashFound || bytes.Contains(data, []byte(hash))
			return nil
		})
		if err != nil {
			t.Fatalf("read data dir: %v", err)
		}
		if !hashFound {
			t.Errorf("no file under %s holds the token's hash: the search did not read the Raft data", c.DataDir())
		}
	})

	t.Run("expiry", func(t *testing.T) {
		short := authzCreateToken(t, c, map[string]any{"name": "short", "permissions": []string{"read"}, "expires": "1m"})
		cl := c.ClientWith(short.Secret)
		authzExpect(t, cl, http.MethodGet, "/v1/clusters", nil, http.StatusOK)
		clock.Advance(59 * time.Second)
		authzExpect(t, cl, http.MethodGet, "/v1/clusters", nil, http.StatusOK)
		// expires_at is the first instant the token no longer works.
		clock.Advance(time.Second)
		resp := authzExpect(t, cl, http.MethodGet, "/v1/clusters", nil, http.StatusUnauthorized)
		if got := authzCode(t, resp); got != v1.CodeUnauthorized {
			t.Errorf("expired token: error %q, want %q", got, v1.CodeUnauthorized)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		authzExpect(t, admin, http.MethodDelete, "/v1/tokens/"+created.ID, nil, http.StatusNoContent)
		// One replica answers after applying, so revocation needs no waiting.
		resp := authzExpect(t, user, http.MethodGet, "/v1/clusters", nil, http.StatusUnauthorized)
		if got := authzCode(t, resp); got != v1.CodeUnauthorized {
			t.Errorf("revoked token: error %q, want %q", got, v1.CodeUnauthorized)
		}
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			resp := authzExpect(t, admin, m, "/v1/tokens/"+created.ID, nil, http.StatusNotFound)
			if got := authzCode(t, resp); got != v1.CodeNotFound {
				t.Errorf("%s of a revoked token: error %q, want %q", m, got, v1.CodeNotFound)
			}
		}
		list := authzDecode[v1.TokenList](t, authzExpect(t, admin, http.MethodGet, "/v1/tokens", nil, http.StatusOK).Body)
		if slices.ContainsFunc(list.Items, func(tok v1.Token) bool { return tok.ID == created.ID }) {
			t.Errorf("GET /v1/tokens still lists revoked token %s", created.ID)
		}
		if strings.Contains(authzTables(t, c), created.ID) {
			t.Errorf("the FSM tables still hold revoked token %s", created.ID)
		}
		// Revoking one token leaves the others working.
		authzExpect(t, admin, http.MethodGet, "/v1/tokens", nil, http.StatusOK)
	})
}
