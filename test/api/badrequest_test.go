package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
)

// caller picks the token a row is sent with.
type caller int

const (
	asAdmin  caller = iota // the bootstrap admin token
	asWriter               // read+write, scope *
	asReader               // read only, scope *
	asScoped               // read+write, scope cluster:<the provisioning cluster>
	asNobody               // no Authorization header
	asBogus                // a well-formed but unknown secret
)

// badRequest is one row: a request that must be refused, and exactly how.
type badRequest struct {
	name   string
	who    caller
	method string
	path   string
	// body is sent as is when it is a string or []byte, JSON-encoded otherwise; nil sends none.
	body any

	status int
	code   string
	// field is the expected details.field; "" means the answer must not name one.
	field string
	// details are further details the answer must carry (JSON numbers as float64).
	details map[string]any
	// message, when set, must appear in the error message.
	message string
	// allow is the Allow header a 405 must carry.
	allow string
	// viaRaft marks the refusals decided inside the FSM, on state only the log order makes
	// consistent (names, capacity, infra kinds, running operations, and the deletes of
	// unknown ids, which the service proposes without a read first): an entry may be
	// appended, so only the tables are compared. Every other row must not reach Raft at all.
	viaRaft bool
}

// fixture is a coordinator holding some of everything a request can collide with.
type fixture struct {
	c                               *clustertest.Cluster
	clients                         map[caller]*client.Client
	onprem, bare                    string // infra IDs
	provisioning, running, deleting string // cluster IDs
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := start(t)
	f := &fixture{c: c}
	admin := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	onprem, err := admin.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("site-a"), Kind: ptr(v1.PhaseOnPremise),
		Network: &v1.Network{CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", DNS: []string{"10.20.0.2"}, MTU: 1500},
		VIPPool: ptr("10.20.0.240/28")})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := admin.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("rack-b"), Kind: ptr(v1.PhaseBaremetal)})
	if err != nil {
		t.Fatal(err)
	}
	f.onprem, f.bare = onprem.ID, bare.ID
	// Seven managed hosts: two for each cluster below, one left free, so a capacity refusal
	// has exact counts to report. Two on the on-premise site so that infra cannot be deleted.
	c.AddHosts(7, clustertest.HostSpec{})
	c.AddHosts(2, clustertest.HostSpec{InfraID: f.onprem})

	prov, err := admin.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("prov"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
	if err != nil {
		t.Fatal(err)
	}
	run, err := admin.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("run"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Service().SetClusterStatus(ctx, run.ID, v1.StatusRunning, ""); err != nil {
		t.Fatal(err)
	}
	// A cluster being deleted still holds its name and is busy.
	gone, err := admin.CreateCluster(ctx, v1.CreateClusterRequest{Name: ptr("gone"), ControlPlanes: ptr(1), Workers: ptr(1), NodeSize: ptr("small")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Service().SetClusterStatus(ctx, gone.ID, v1.StatusDeleting, ""); err != nil {
		t.Fatal(err)
	}
	f.provisioning, f.running, f.deleting = prov.ID, run.ID, gone.ID

	// Enterprise plans keep the many rows below far from any rate limit.
	token := func(name string, perms []string, scope string) string {
		tok, err := admin.CreateToken(ctx, v1.CreateTokenRequest{Name: ptr(name), Permissions: &perms, Scope: ptr(scope), Plan: ptr(v1.PlanEnterprise)})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Secret
	}
	f.clients = map[caller]*client.Client{
		asAdmin:  admin,
		asWriter: c.ClientWith(token("writer", []string{v1.PermRead, v1.PermWrite}, "*")),
		asReader: c.ClientWith(token("reader", []string{v1.PermRead}, "*")),
		asScoped: c.ClientWith(token("scoped", []string{v1.PermRead, v1.PermWrite}, "cluster:"+prov.ID)),
		asNobody: c.ClientWith(""),
		asBogus:  c.ClientWith("dpl_thisisnotatokenthisisnotatokenthisisnotatokenxx"),
	}
	return f
}

// clusterBody is a valid create body with some fields replaced (or removed with a nil).
func clusterBody(changes map[string]any) string {
	m := map[string]any{"name": "fresh", "control_planes": 1, "workers": 1, "node_size": "small"}
	for k, v := range changes {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// null is the JSON value null in clusterBody changes, where a Go nil means "remove".
var null = json.RawMessage("null")

func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	missing := "cls_doesnotexist"
	prov, run := "/v1/clusters/"+f.provisioning, "/v1/clusters/"+f.running
	onpremJoin := "/v1/infras/" + f.onprem + "/join-tokens"
	oneMiB := 1 << 20

	rows := []badRequest{
		// Authentication and permissions come first of all.
		{name: "no token", who: asNobody, method: "GET", path: "/v1/clusters", status: 401, code: v1.CodeUnauthorized},
		{name: "unknown token", who: asBogus, method: "GET", path: "/v1/clusters", status: 401, code: v1.CodeUnauthorized},
		{name: "reader creates a cluster", who: asReader, method: "POST", path: "/v1/clusters", body: clusterBody(nil), status: 403, code: v1.CodeForbidden},
		{name: "writer creates a token", who: asWriter, method: "POST", path: "/v1/tokens", body: `{"name":"x","permissions":["read"]}`, status: 403, code: v1.CodeForbidden},
		{name: "writer creates an infra", who: asWriter, method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise"}`, status: 403, code: v1.CodeForbidden},
		{name: "writer deletes an infra", who: asWriter, method: "DELETE", path: "/v1/infras/" + f.bare, status: 403, code: v1.CodeForbidden},
		{name: "scoped token creates a cluster", who: asScoped, method: "POST", path: "/v1/clusters", body: clusterBody(nil), status: 403, code: v1.CodeForbidden},
		{name: "scoped token reads another cluster", who: asScoped, method: "GET", path: run, status: 404, code: v1.CodeNotFound},
		{name: "scoped token deletes another cluster", who: asScoped, method: "DELETE", path: run, status: 404, code: v1.CodeNotFound},

		// Create: missing and wrong-typed fields.
		{name: "missing name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": nil}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "missing control_planes", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"control_planes": nil}), status: 400, code: v1.CodeInvalidRequest, field: "control_planes"},
		{name: "missing workers", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": nil}), status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "missing node_size", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"node_size": nil}), status: 400, code: v1.CodeInvalidRequest, field: "node_size"},
		{name: "null name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": null}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "null workers", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": null}), status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "string for workers", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": "3"}), status: 400, code: v1.CodeInvalidRequest, field: "workers", message: "integer"},
		{name: "float for workers", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": 1.5}), status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "float-looking integer for control_planes", method: "POST", path: "/v1/clusters", body: `{"name":"fresh","control_planes":3.0,"workers":1,"node_size":"small"}`, status: 400, code: v1.CodeInvalidRequest, field: "control_planes"},
		{name: "bool for workers", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": true}), status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "array for name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": []string{"a"}}), status: 400, code: v1.CodeInvalidRequest, field: "name", message: "string"},
		{name: "number for node_size", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"node_size": 4}), status: 400, code: v1.CodeInvalidRequest, field: "node_size"},
		{name: "object for phase", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": map[string]any{}}), status: 400, code: v1.CodeInvalidRequest, field: "phase"},
		{name: "unknown top-level field", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"nmae": "x"}), status: 400, code: v1.CodeInvalidRequest, field: "nmae"},
		{name: "several unknown fields name the first in key order", method: "POST", path: "/v1/clusters", body: `{"zzz":1,"mmm":1,"aaa":1}`, status: 400, code: v1.CodeInvalidRequest, field: "aaa"},
		{name: "field name in another case", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": nil, "Name": "fresh"}), status: 400, code: v1.CodeInvalidRequest, field: "Name"},
		{name: "status is not writable", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"status": "running"}), status: 400, code: v1.CodeInvalidRequest, field: "status"},

		// Create: values out of range.
		{name: "control_planes 2", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"control_planes": 2}), status: 400, code: v1.CodeInvalidRequest, field: "control_planes"},
		{name: "control_planes 0", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"control_planes": 0}), status: 400, code: v1.CodeInvalidRequest, field: "control_planes"},
		{name: "control_planes -1", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"control_planes": -1}), status: 400, code: v1.CodeInvalidRequest, field: "control_planes"},
		{name: "workers 0", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": 0}), status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "workers -3", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": -3}), status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "workers 1001", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"workers": 1001}), status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "empty name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": ""}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "64-character name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": strings.Repeat("a", 64)}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "leading hyphen", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "-prod"}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "trailing hyphen", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "prod-"}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "underscore", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "my_prod"}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "space", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "my prod"}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "unicode letter", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "prodé"}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "dot", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "prod.eu"}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "unknown node_size", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"node_size": "huge"}), status: 400, code: v1.CodeInvalidRequest, field: "node_size"},
		{name: "node_size in capitals", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"node_size": "Large"}), status: 400, code: v1.CodeInvalidRequest, field: "node_size"},
		{name: "unknown phase", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "cloud"}), status: 400, code: v1.CodeInvalidRequest, field: "phase"},
		{name: "unknown kubernetes_version", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"kubernetes_version": "v1.99.0"}), status: 400, code: v1.CodeInvalidRequest, field: "kubernetes_version"},
		{name: "kubernetes_version without v", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"kubernetes_version": "1.37.2"}), status: 400, code: v1.CodeInvalidRequest, field: "kubernetes_version"},

		// Create: phase and infra must agree. Those that need state to tell are decided in
		// the FSM, so that two racing requests cannot both pass a stale check.
		{name: "managed with an on-premise infra", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "managed", "infra_id": f.onprem}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id"},
		{name: "no phase with an on-premise infra", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"infra_id": f.onprem}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id"},
		{name: "onpremise without infra_id", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "onpremise"}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id"},
		{name: "onpremise with empty infra_id", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "onpremise", "infra_id": ""}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id"},
		{name: "baremetal with infra_managed", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "baremetal", "infra_id": v1.ManagedInfraID}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id"},
		{name: "onpremise with a baremetal infra", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "onpremise", "infra_id": f.bare}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id", viaRaft: true},
		{name: "baremetal with an on-premise infra", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "baremetal", "infra_id": f.onprem}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id", viaRaft: true},
		{name: "unknown infra id", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"phase": "onpremise", "infra_id": "infra_doesnotexist"}), status: 400, code: v1.CodeInvalidRequest, field: "infra_id", viaRaft: true},

		// Create: well-formed, refused by state.
		{name: "duplicate name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "prov"}), status: 409, code: v1.CodeConflict, field: "name", viaRaft: true},
		{name: "name of a cluster being deleted", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "gone"}), status: 409, code: v1.CodeConflict, field: "name", viaRaft: true},
		{name: "insufficient capacity", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"control_planes": 3, "workers": 5}), status: 409, code: v1.CodeInsufficientCapacity,
			details: map[string]any{"needed": 8.0, "available": 1.0, "infra_id": v1.ManagedInfraID, "node_size": "small"}, viaRaft: true},

		// List: pagination and filters.
		{name: "page 0", method: "GET", path: "/v1/clusters?page=0", status: 400, code: v1.CodeInvalidRequest, field: "page"},
		{name: "page abc", method: "GET", path: "/v1/clusters?page=abc", status: 400, code: v1.CodeInvalidRequest, field: "page"},
		{name: "page -1", method: "GET", path: "/v1/clusters?page=-1", status: 400, code: v1.CodeInvalidRequest, field: "page"},
		{name: "per_page 0", method: "GET", path: "/v1/clusters?per_page=0", status: 400, code: v1.CodeInvalidRequest, field: "per_page"},
		{name: "per_page 101", method: "GET", path: "/v1/clusters?per_page=101", status: 400, code: v1.CodeInvalidRequest, field: "per_page"},
		{name: "per_page 1.5", method: "GET", path: "/v1/clusters?per_page=1.5", status: 400, code: v1.CodeInvalidRequest, field: "per_page"},
		{name: "unknown status filter", method: "GET", path: "/v1/clusters?status=stopped", status: 400, code: v1.CodeInvalidRequest, field: "status"},
		{name: "status filter in capitals", method: "GET", path: "/v1/clusters?status=Running", status: 400, code: v1.CodeInvalidRequest, field: "status"},
		{name: "unknown query parameter", method: "GET", path: "/v1/clusters?statu=running", status: 400, code: v1.CodeInvalidRequest, field: "statu"},
		{name: "duplicated query parameter", method: "GET", path: "/v1/clusters?page=1&page=2", status: 400, code: v1.CodeInvalidRequest, field: "page"},
		{name: "query parameter on a get", method: "GET", path: run + "?verbose=1", status: 400, code: v1.CodeInvalidRequest, field: "verbose"},
		{name: "unknown host state filter", method: "GET", path: "/v1/hosts?state=sleeping", status: 400, code: v1.CodeInvalidRequest, field: "state"},

		// Bodies that are not one JSON object of at most 1 MiB.
		{name: "body just over 1 MiB", method: "POST", path: "/v1/clusters", body: `{"name":"` + strings.Repeat("a", oneMiB) + `"}`, status: 413, code: v1.CodePayloadTooLarge},
		{name: "body of 4 MiB", method: "POST", path: "/v1/clusters", body: bytes.Repeat([]byte(" "), 4*oneMiB), status: 413, code: v1.CodePayloadTooLarge},
		{name: "patch body over 1 MiB to an unknown id", method: "PATCH", path: "/v1/clusters/" + missing, body: `{"workers":1` + strings.Repeat(" ", oneMiB) + `}`, status: 413, code: v1.CodePayloadTooLarge},
		{name: "malformed JSON", method: "POST", path: "/v1/clusters", body: `{"name":"fresh",`, status: 400, code: v1.CodeInvalidRequest},
		{name: "single quotes", method: "POST", path: "/v1/clusters", body: `{'name':'fresh'}`, status: 400, code: v1.CodeInvalidRequest},
		{name: "trailing garbage", method: "POST", path: "/v1/clusters", body: clusterBody(nil) + ` x`, status: 400, code: v1.CodeInvalidRequest},
		{name: "two objects", method: "POST", path: "/v1/clusters", body: clusterBody(nil) + clusterBody(nil), status: 400, code: v1.CodeInvalidRequest},
		{name: "array body", method: "POST", path: "/v1/clusters", body: "[" + clusterBody(nil) + "]", status: 400, code: v1.CodeInvalidRequest},
		{name: "string body", method: "POST", path: "/v1/clusters", body: `"fresh"`, status: 400, code: v1.CodeInvalidRequest},
		{name: "null body", method: "POST", path: "/v1/clusters", body: `null`, status: 400, code: v1.CodeInvalidRequest},
		{name: "empty body", method: "POST", path: "/v1/clusters", body: "", status: 400, code: v1.CodeInvalidRequest},
		{name: "whitespace body", method: "POST", path: "/v1/clusters", body: " \n\t", status: 400, code: v1.CodeInvalidRequest},

		// Methods a path does not have.
		{name: "PUT /v1/clusters", method: "PUT", path: "/v1/clusters", body: clusterBody(nil), status: 405, code: v1.CodeMethodNotAllowed, allow: "GET, POST"},
		{name: "DELETE /v1/clusters", method: "DELETE", path: "/v1/clusters", status: 405, code: v1.CodeMethodNotAllowed, allow: "GET, POST"},
		{name: "POST /v1/clusters/{id}", method: "POST", path: run, body: `{"workers":2}`, status: 405, code: v1.CodeMethodNotAllowed, allow: "DELETE, GET, PATCH"},
		{name: "PUT /v1/clusters/{id}", method: "PUT", path: run, body: `{"workers":2}`, status: 405, code: v1.CodeMethodNotAllowed, allow: "DELETE, GET, PATCH"},
		{name: "DELETE kubeconfig", method: "DELETE", path: run + "/kubeconfig", status: 405, code: v1.CodeMethodNotAllowed, allow: "GET"},
		{name: "unknown path", method: "GET", path: "/v1/klusters", status: 404, code: v1.CodeNotFound},

		// PATCH: only workers and node_size, and only on a settled cluster.
		{name: "patch name", method: "PATCH", path: run, body: `{"name":"renamed"}`, status: 400, code: v1.CodeInvalidRequest, field: "name", message: "cannot be changed"},
		{name: "patch control_planes", method: "PATCH", path: run, body: `{"control_planes":3}`, status: 400, code: v1.CodeInvalidRequest, field: "control_planes", message: "cannot be changed"},
		{name: "patch phase", method: "PATCH", path: run, body: `{"phase":"onpremise"}`, status: 400, code: v1.CodeInvalidRequest, field: "phase", message: "cannot be changed"},
		{name: "patch workers and name", method: "PATCH", path: run, body: `{"workers":2,"name":"renamed"}`, status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "patch unknown field", method: "PATCH", path: run, body: `{"workerz":2}`, status: 400, code: v1.CodeInvalidRequest, field: "workerz", message: "unknown"},
		{name: "empty patch", method: "PATCH", path: run, body: `{}`, status: 400, code: v1.CodeInvalidRequest},
		{name: "patch of nulls", method: "PATCH", path: run, body: `{"workers":null,"node_size":null}`, status: 400, code: v1.CodeInvalidRequest},
		{name: "patch workers 0", method: "PATCH", path: run, body: `{"workers":0}`, status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "patch workers as string", method: "PATCH", path: run, body: `{"workers":"8"}`, status: 400, code: v1.CodeInvalidRequest, field: "workers", message: "integer"},
		{name: "patch unknown node_size", method: "PATCH", path: run, body: `{"node_size":"tiny"}`, status: 400, code: v1.CodeInvalidRequest, field: "node_size"},
		{name: "patch while provisioning", method: "PATCH", path: prov, body: `{"workers":2}`, status: 409, code: v1.CodeConflict, details: map[string]any{"operation": "provisioning"}, viaRaft: true},
		{name: "patch node_size while provisioning", method: "PATCH", path: prov, body: `{"node_size":"large"}`, status: 409, code: v1.CodeConflict, details: map[string]any{"operation": "provisioning"}, viaRaft: true},
		{name: "patch while deleting", method: "PATCH", path: "/v1/clusters/" + f.deleting, body: `{"workers":3}`, status: 409, code: v1.CodeConflict, details: map[string]any{"operation": "deleting"}, viaRaft: true},
		{name: "patch beyond capacity", method: "PATCH", path: run, body: `{"workers":50}`, status: 409, code: v1.CodeInsufficientCapacity,
			details: map[string]any{"needed": 49.0, "available": 1.0}, viaRaft: true},
		{name: "upgrade to an unoffered version", method: "POST", path: run + "/upgrade", body: `{"kubernetes_version":"v1.99.0"}`, status: 400, code: v1.CodeInvalidRequest, field: "kubernetes_version"},
		{name: "upgrade downwards", method: "POST", path: run + "/upgrade", body: `{"kubernetes_version":"v1.36.6"}`, status: 400, code: v1.CodeInvalidRequest, field: "kubernetes_version", viaRaft: true},
		{name: "upgrade while provisioning", method: "POST", path: prov + "/upgrade", body: `{"kubernetes_version":"v1.37.2"}`, status: 409, code: v1.CodeConflict, details: map[string]any{"operation": "provisioning"}, viaRaft: true},

		// Unknown ids: 404 for a well-formed request, 400 for a malformed one.
		{name: "get unknown cluster", method: "GET", path: "/v1/clusters/" + missing, status: 404, code: v1.CodeNotFound},
		{name: "patch unknown cluster", method: "PATCH", path: "/v1/clusters/" + missing, body: `{"workers":2}`, status: 404, code: v1.CodeNotFound},
		{name: "delete unknown cluster", method: "DELETE", path: "/v1/clusters/" + missing, status: 404, code: v1.CodeNotFound, viaRaft: true},
		{name: "kubeconfig of unknown cluster", method: "GET", path: "/v1/clusters/" + missing + "/kubeconfig", status: 404, code: v1.CodeNotFound},
		{name: "nodes of unknown cluster", method: "GET", path: "/v1/clusters/" + missing + "/nodes", status: 404, code: v1.CodeNotFound},
		{name: "malformed patch to unknown cluster", method: "PATCH", path: "/v1/clusters/" + missing, body: `{"workers":`, status: 400, code: v1.CodeInvalidRequest},
		{name: "immutable patch to unknown cluster", method: "PATCH", path: "/v1/clusters/" + missing, body: `{"name":"x"}`, status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "bad ttl to unknown cluster", method: "GET", path: "/v1/clusters/" + missing + "/kubeconfig?ttl=forever", status: 400, code: v1.CodeInvalidRequest, field: "ttl"},
		{name: "bad upgrade to unknown cluster", method: "POST", path: "/v1/clusters/" + missing + "/upgrade", body: `{}`, status: 400, code: v1.CodeInvalidRequest, field: "kubernetes_version"},
		{name: "get unknown token", method: "GET", path: "/v1/tokens/tok_doesnotexist", status: 404, code: v1.CodeNotFound},
		{name: "revoke unknown token", method: "DELETE", path: "/v1/tokens/tok_doesnotexist", status: 404, code: v1.CodeNotFound, viaRaft: true},
		{name: "get unknown infra", method: "GET", path: "/v1/infras/infra_doesnotexist", status: 404, code: v1.CodeNotFound},
		{name: "get unknown host", method: "GET", path: "/v1/hosts/host_doesnotexist", status: 404, code: v1.CodeNotFound},

		// Kubeconfig.
		{name: "kubeconfig ttl abc", method: "GET", path: prov + "/kubeconfig?ttl=abc", status: 400, code: v1.CodeInvalidRequest, field: "ttl"},
		{name: "kubeconfig ttl 0h", method: "GET", path: prov + "/kubeconfig?ttl=0h", status: 400, code: v1.CodeInvalidRequest, field: "ttl"},
		{name: "kubeconfig ttl over a year", method: "GET", path: prov + "/kubeconfig?ttl=366d", status: 400, code: v1.CodeInvalidRequest, field: "ttl"},
		{name: "kubeconfig unknown parameter", method: "GET", path: prov + "/kubeconfig?tll=1h", status: 400, code: v1.CodeInvalidRequest, field: "tll"},
		{name: "kubeconfig before the control plane is up", method: "GET", path: prov + "/kubeconfig", status: 409, code: v1.CodeConflict},

		// Tokens.
		{name: "token without name", method: "POST", path: "/v1/tokens", body: `{"permissions":["read"]}`, status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "token with unknown permission", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["root"]}`, status: 400, code: v1.CodeInvalidRequest, field: "permissions"},
		{name: "token with no permissions", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":[]}`, status: 400, code: v1.CodeInvalidRequest, field: "permissions"},
		{name: "token permissions as string", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":"read"}`, status: 400, code: v1.CodeInvalidRequest, field: "permissions"},
		{name: "admin token with cluster scope", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["admin"],"scope":"cluster:*"}`, status: 400, code: v1.CodeInvalidRequest, field: "scope"},
		{name: "token with malformed scope", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["read"],"scope":"clusters"}`, status: 400, code: v1.CodeInvalidRequest, field: "scope"},
		{name: "token scoped to an unknown cluster", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["read"],"scope":"cluster:` + missing + `"}`, status: 400, code: v1.CodeInvalidRequest, field: "scope"},
		{name: "token expires 10y", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["read"],"expires":"10y"}`, status: 400, code: v1.CodeInvalidRequest, field: "expires"},
		{name: "token expires 0d", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["read"],"expires":"0d"}`, status: 400, code: v1.CodeInvalidRequest, field: "expires"},
		{name: "token expires abc", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["read"],"expires":"abc"}`, status: 400, code: v1.CodeInvalidRequest, field: "expires"},
		{name: "token expires as number", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["read"],"expires":90}`, status: 400, code: v1.CodeInvalidRequest, field: "expires"},
		{name: "token with unknown plan", method: "POST", path: "/v1/tokens", body: `{"name":"t","permissions":["read"],"plan":"gold"}`, status: 400, code: v1.CodeInvalidRequest, field: "plan"},

		// Infras.
		{name: "infra with unknown kind", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"cloud"}`, status: 400, code: v1.CodeInvalidRequest, field: "kind"},
		{name: "infra of kind managed", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"managed"}`, status: 400, code: v1.CodeInvalidRequest, field: "kind"},
		{name: "infra without kind", method: "POST", path: "/v1/infras", body: `{"name":"x"}`, status: 400, code: v1.CodeInvalidRequest, field: "kind"},
		{name: "infra with bad name", method: "POST", path: "/v1/infras", body: `{"name":"site_a","kind":"onpremise"}`, status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "infra vip_pool not a CIDR", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","vip_pool":"10.0.0.1"}`, status: 400, code: v1.CodeInvalidRequest, field: "vip_pool"},
		{name: "network bond with an unknown mode", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"bonds":[{"name":"bond0","mode":"round-robin","interfaces":["eth0","eth1"]}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.bonds[0].mode"},
		{name: "network bond without interfaces", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"bonds":[{"name":"bond0","mode":"802.3ad","interfaces":[]}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.bonds[0].interfaces"},
		{name: "network VLAN id out of range", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"vlans":[{"name":"v5000","link":"eth0","id":5000}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.vlans[0].id"},
		{name: "network link name too long", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"bridges":[{"name":"a-very-long-bridge-name"}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.bridges[0].name"},
		{name: "network link name with a slash", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"vlans":[{"name":"v/10","link":"eth0","id":10}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.vlans[0].name"},
		{name: "network link defined twice", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"bonds":[{"name":"br0","mode":"802.3ad","interfaces":["eth0"]}],"bridges":[{"name":"br0"}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.bridges[0].name"},
		{name: "network interface in two bonds", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"bonds":[{"name":"bond0","mode":"802.3ad","interfaces":["eth0"]},{"name":"bond1","mode":"802.3ad","interfaces":["eth0"]}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.bonds[1].interfaces[0]"},
		{name: "network address on a bond member", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"cidr":"10.0.0.0/24","interface":"eth0","bonds":[{"name":"bond0","mode":"active-backup","interfaces":["eth0","eth1"]}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.interface"},
		{name: "network interface without a cidr", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"interface":"br0","bridges":[{"name":"br0","interfaces":["eth0"]}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.cidr"},
		{name: "network unknown field", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"bonds":[{"name":"bond0","mode":"802.3ad","interfaces":["eth0"],"lacp_rate":"fast"}]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.bonds[0].lacp_rate"},
		{name: "infra vip_pool without room", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","vip_pool":"10.0.0.1/32"}`, status: 400, code: v1.CodeInvalidRequest, field: "vip_pool"},
		{name: "infra unknown nested field", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"mtuu":1500}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.mtuu"},
		{name: "infra network.cidr", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"cidr":"10.0.0.0/33"}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.cidr"},
		{name: "infra network.gateway not an IP", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"gateway":"gw.local"}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.gateway"},
		{name: "infra network.gateway outside the CIDR", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"cidr":"10.0.0.0/24","gateway":"10.0.1.1"}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.gateway"},
		{name: "infra network.dns not IPs", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"dns":["dns.example"]}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.dns"},
		{name: "infra network.dns as string", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"dns":"10.0.0.2"}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.dns"},
		{name: "infra network.mtu too small", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"mtu":100}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.mtu"},
		{name: "infra network.mtu too large", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"mtu":65536}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.mtu"},
		{name: "infra network.mtu as string", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":{"mtu":"1500"}}`, status: 400, code: v1.CodeInvalidRequest, field: "network.mtu"},
		{name: "infra network as array", method: "POST", path: "/v1/infras", body: `{"name":"x","kind":"onpremise","network":[]}`, status: 400, code: v1.CodeInvalidRequest, field: "network"},
		{name: "duplicate infra name", method: "POST", path: "/v1/infras", body: `{"name":"site-a","kind":"baremetal"}`, status: 409, code: v1.CodeConflict, field: "name", viaRaft: true},
		{name: "delete infra with hosts", method: "DELETE", path: "/v1/infras/" + f.onprem, status: 409, code: v1.CodeConflict, details: map[string]any{"hosts": 2.0, "clusters": 0.0}, viaRaft: true},
		{name: "delete infra_managed", method: "DELETE", path: "/v1/infras/" + v1.ManagedInfraID, status: 409, code: v1.CodeConflict, viaRaft: true},
		{name: "delete unknown infra", method: "DELETE", path: "/v1/infras/infra_doesnotexist", status: 404, code: v1.CodeNotFound, viaRaft: true},

		// Join tokens.
		{name: "join token expires 1y", method: "POST", path: onpremJoin, body: `{"expires":"1y"}`, status: 400, code: v1.CodeInvalidRequest, field: "expires"},
		{name: "join token expires over a year", method: "POST", path: onpremJoin, body: `{"expires":"400d"}`, status: 400, code: v1.CodeInvalidRequest, field: "expires"},
		{name: "join token max_uses 0", method: "POST", path: onpremJoin, body: `{"max_uses":0}`, status: 400, code: v1.CodeInvalidRequest, field: "max_uses"},
		{name: "join token max_uses -1", method: "POST", path: onpremJoin, body: `{"max_uses":-1}`, status: 400, code: v1.CodeInvalidRequest, field: "max_uses"},
		{name: "join token unknown field", method: "POST", path: onpremJoin, body: `{"ttl":"1h"}`, status: 400, code: v1.CodeInvalidRequest, field: "ttl"},
		{name: "join token array body", method: "POST", path: onpremJoin, body: `[]`, status: 400, code: v1.CodeInvalidRequest},
		{name: "bad join token for unknown infra", method: "POST", path: "/v1/infras/infra_doesnotexist/join-tokens", body: `{"max_uses":0}`, status: 400, code: v1.CodeInvalidRequest, field: "max_uses"},
		{name: "join token for unknown infra", method: "POST", path: "/v1/infras/infra_doesnotexist/join-tokens", body: `{"expires":"1h"}`, status: 404, code: v1.CodeNotFound, viaRaft: true},

		// Hostile inputs: each must come back as a plain 4xx, never a dropped connection.
		{name: "deeply nested arrays", method: "POST", path: "/v1/clusters", body: `{"name":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, status: 400, code: v1.CodeInvalidRequest},
		{name: "deeply nested objects", method: "POST", path: "/v1/infras", body: `{"network":` + strings.Repeat(`{"a":`, 20_000) + `1` + strings.Repeat("}", 20_000) + `}`, status: 400, code: v1.CodeInvalidRequest},
		{name: "nesting under the depth limit", method: "POST", path: "/v1/clusters", body: `{"x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, status: 400, code: v1.CodeInvalidRequest, field: "x"},
		{name: "workers 1e400", method: "POST", path: "/v1/clusters", body: `{"name":"fresh","control_planes":1,"workers":1e400,"node_size":"small"}`, status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "workers beyond int64", method: "POST", path: "/v1/clusters", body: `{"name":"fresh","control_planes":1,"workers":99999999999999999999999,"node_size":"small"}`, status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "patch workers beyond int64", method: "PATCH", path: run, body: `{"workers":-99999999999999999999999}`, status: 400, code: v1.CodeInvalidRequest, field: "workers"},
		{name: "10000-character name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": strings.Repeat("n", 10_000)}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "invalid UTF-8 in name", method: "POST", path: "/v1/clusters", body: []byte("{\"name\":\"pr\xff\xfeod\",\"control_planes\":1,\"workers\":1,\"node_size\":\"small\"}"), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "invalid UTF-8 as a key", method: "POST", path: "/v1/clusters", body: []byte("{\"\xff\":1}"), status: 400, code: v1.CodeInvalidRequest, field: "\ufffd"},
		{name: "NUL in name", method: "POST", path: "/v1/clusters", body: clusterBody(map[string]any{"name": "prod\x00"}), status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "control character in token name", method: "POST", path: "/v1/tokens", body: `{"name":"a\u0007b","permissions":["read"]}`, status: 400, code: v1.CodeInvalidRequest, field: "name"},
		{name: "malformed query escape", method: "GET", path: "/v1/clusters?page=%zz", status: 400, code: v1.CodeInvalidRequest},
		{name: "invalid UTF-8 in a query value", method: "GET", path: "/v1/clusters?status=%ff", status: 400, code: v1.CodeInvalidRequest, field: "status"},
		{name: "invalid UTF-8 in an id", method: "GET", path: "/v1/clusters/%ff%fe", status: 404, code: v1.CodeNotFound},
		{name: "huge page number", method: "GET", path: "/v1/clusters?page=99999999999999999999", status: 400, code: v1.CodeInvalidRequest, field: "page"},
	}

	before := stateOf(t, f.c)
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			st, idx := stateOf(t, f.c), f.c.Server().Raft().LastIndex()
			resp := send(t, f.clients[row.who], row.method, row.path, row.body)
			checkRefusal(t, row, resp)
			if after := stateOf(t, f.c); !bytes.Equal(st, after) {
				t.Errorf("state changed (-before +after):\n%s", diffJSON(st, after))
			}
			switch got := f.c.Server().Raft().LastIndex(); {
			case !row.viaRaft && got != idx:
				t.Errorf("raft last index %d -> %d: a request refused before state was consulted reached the log", idx, got)
			case row.viaRaft && got > idx+1:
				t.Errorf("raft last index %d -> %d: one refused request appended more than one entry", idx, got)
			}
		})
	}
	if len(rows) < 45 {
		t.Errorf("only %d rows; the acceptance criterion asks for at least 45", len(rows))
	}
	if after := stateOf(t, f.c); !bytes.Equal(before, after) {
		t.Errorf("state changed over the whole table (-before +after):\n%s", diffJSON(before, after))
	}
	// The coordinator is still serving after every hostile row.
	if resp := send(t, f.clients[asNobody], "GET", "/readyz", nil); resp.Status != http.StatusOK {
		t.Errorf("GET /readyz after the table: %d %s", resp.Status, resp.Body)
	}
}

// checkRefusal checks one error answer against its row: status, code, named field, details,
// headers, and that the body is exactly the contract's error object.
func checkRefusal(t *testing.T, row badRequest, resp *client.Response) {
	t.Helper()
	if resp.Status != row.status {
		t.Fatalf("status %d, want %d; body: %.500s", resp.Status, row.status, resp.Body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if row.allow != "" || resp.Status == http.StatusMethodNotAllowed {
		if got := resp.Header.Get("Allow"); got != row.allow {
			t.Errorf("Allow %q, want %q", got, row.allow)
		}
	}
	raw := objectOf(t, resp.Body)
	for _, k := range keys(raw) {
		if k != "error" && k != "message" && k != "details" {
			t.Errorf("error body has key %q outside error, message, details", k)
		}
	}
	e := strict[v1.Error](t, resp.Body)
	if e.Code != row.code {
		t.Errorf("error %q, want %q; message: %s", e.Code, row.code, e.Message)
	}
	if v1.StatusOf(e.Code) != resp.Status {
		t.Errorf("error %q travels with status %d, but its status is %d", e.Code, resp.Status, v1.StatusOf(e.Code))
	}
	if e.Message == "" {
		t.Error("empty message")
	}
	if row.message != "" && !strings.Contains(e.Message, row.message) {
		t.Errorf("message %q does not mention %q", e.Message, row.message)
	}
	field, named := e.Details["field"]
	switch {
	case row.field == "" && named:
		t.Errorf("details.field = %v, want none", field)
	case row.field != "" && field != row.field:
		t.Errorf("details.field = %v, want %q; message: %s", field, row.field, e.Message)
	}
	for k, want := range row.details {
		if diff := cmp.Diff(want, e.Details[k]); diff != "" {
			t.Errorf("details.%s (-want +got):\n%s", k, diff)
		}
	}
}
