package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/deployme/deployme/api/apitest"
	"github.com/deployme/deployme/coordinator/clustertest"
)

// TestRequestValidationMatchesSpec sends requests at the edges of every request schema and
// query parameter and checks that the spec and the server agree: a request the spec accepts
// is never 400, one it rejects always is. The coordinator has no hosts, so valid creations
// end in 409 insufficient_capacity and nothing is placed; paths name missing objects, so
// valid requests end in 404 — a malformed request is 400 whatever its target.
func TestRequestValidationMatchesSpec(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	v := apitest.NewValidator(t)
	a := newCaller(c, v)
	r := a.do(t, request{method: "POST", path: "/v1/infras", token: c.AdminToken, body: []byte(`{"name":"site","kind":"onpremise"}`)})
	if r.status != http.StatusCreated {
		t.Fatalf("create infra: %d %s", r.status, r.body)
	}
	infra := r.object(t)["id"].(string)

	cluster := func(fields string) string {
		return `{"name":"c","control_planes":1,"workers":1,"node_size":"small"` + fields + `}`
	}
	const events = "/v1/clusters/cls_missing/events"
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		specValid                bool
		want                     int
		// why the spec accepts what the server refuses: a rule that depends on state or
		// configuration, or a bound only stated in a description.
		why string
	}{
		{name: "cluster minimal", method: "POST", path: "/v1/clusters", body: cluster(""), specValid: true, want: 409},
		{name: "cluster name of 63", method: "POST", path: "/v1/clusters", body: `{"name":"` + strings.Repeat("a", 63) + `","control_planes":1,"workers":1,"node_size":"small"}`, specValid: true, want: 409},
		{name: "cluster name of 64", method: "POST", path: "/v1/clusters", body: `{"name":"` + strings.Repeat("a", 64) + `","control_planes":1,"workers":1,"node_size":"small"}`, want: 400},
		{name: "cluster name with a leading hyphen", method: "POST", path: "/v1/clusters", body: `{"name":"-a","control_planes":1,"workers":1,"node_size":"small"}`, want: 400},
		{name: "cluster name with an underscore", method: "POST", path: "/v1/clusters", body: `{"name":"a_b","control_planes":1,"workers":1,"node_size":"small"}`, want: 400},
		{name: "cluster name empty", method: "POST", path: "/v1/clusters", body: `{"name":"","control_planes":1,"workers":1,"node_size":"small"}`, want: 400},
		{name: "cluster without a name", method: "POST", path: "/v1/clusters", body: `{"control_planes":1,"workers":1,"node_size":"small"}`, want: 400},
		{name: "cluster with 3 control planes", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":3,"workers":1,"node_size":"small"}`, specValid: true, want: 409},
		{name: "cluster with 2 control planes", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":2,"workers":1,"node_size":"small"}`, want: 400},
		{name: "cluster with control planes as a string", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":"1","workers":1,"node_size":"small"}`, want: 400},
		{name: "cluster with 1000 workers", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":1,"workers":1000,"node_size":"small"}`, specValid: true, want: 409},
		{name: "cluster with 1001 workers", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":1,"workers":1001,"node_size":"small"}`, want: 400},
		{name: "cluster with 0 workers", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":1,"workers":0,"node_size":"small"}`, want: 400},
		{name: "cluster with fractional workers", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":1,"workers":1.5,"node_size":"small"}`, want: 400},
		{name: "cluster of an unknown size", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":1,"workers":1,"node_size":"huge"}`, want: 400},
		{name: "cluster of size xlarge", method: "POST", path: "/v1/clusters", body: `{"name":"c","control_planes":1,"workers":1,"node_size":"xlarge"}`, specValid: true, want: 409},
		{name: "cluster in an unknown phase", method: "POST", path: "/v1/clusters", body: cluster(`,"phase":"cloud"`), want: 400},
		{name: "cluster managed on infra_managed", method: "POST", path: "/v1/clusters", body: cluster(`,"phase":"managed","infra_id":"infra_managed"`), specValid: true, want: 409},
		{name: "cluster managed on another infra", method: "POST", path: "/v1/clusters", body: cluster(`,"infra_id":"` + infra + `"`), want: 400},
		{name: "cluster onpremise on its infra", method: "POST", path: "/v1/clusters", body: cluster(`,"phase":"onpremise","infra_id":"` + infra + `"`), specValid: true, want: 409},
		{name: "cluster onpremise without infra", method: "POST", path: "/v1/clusters", body: cluster(`,"phase":"onpremise"`), want: 400},
		{name: "cluster baremetal on the managed pool", method: "POST", path: "/v1/clusters", body: cluster(`,"phase":"baremetal","infra_id":"infra_managed"`), want: 400},
		{name: "cluster baremetal on an onpremise infra", method: "POST", path: "/v1/clusters", body: cluster(`,"phase":"baremetal","infra_id":"` + infra + `"`), specValid: true, want: 400, why: "the infra's kind is state"},
		{name: "cluster on an offered version", method: "POST", path: "/v1/clusters", body: cluster(`,"kubernetes_version":"v1.36.6"`), specValid: true, want: 409},
		{name: "cluster on a version not offered", method: "POST", path: "/v1/clusters", body: cluster(`,"kubernetes_version":"v1.99.0"`), specValid: true, want: 400, why: "the catalog is configuration"},
		{name: "cluster on a malformed version", method: "POST", path: "/v1/clusters", body: cluster(`,"kubernetes_version":"1.36.6"`), want: 400},
		{name: "cluster with an unknown field", method: "POST", path: "/v1/clusters", body: cluster(`,"region":"eu"`), want: 400},
		{name: "cluster body an array", method: "POST", path: "/v1/clusters", body: `[]`, want: 400},
		{name: "cluster body null", method: "POST", path: "/v1/clusters", body: `null`, want: 400},
		{name: "cluster without a body", method: "POST", path: "/v1/clusters", want: 400},

		{name: "patch workers", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"workers":2}`, specValid: true, want: 404},
		{name: "patch node size", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"node_size":"large"}`, specValid: true, want: 404},
		{name: "patch both", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"workers":1000,"node_size":"small"}`, specValid: true, want: 404},
		{name: "patch 0 workers", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"workers":0}`, want: 400},
		{name: "patch 1001 workers", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"workers":1001}`, want: 400},
		{name: "patch an unknown size", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"workers":2,"node_size":"tiny"}`, want: 400},
		{name: "patch the name", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"name":"x"}`, want: 400},
		{name: "patch control planes", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"control_planes":3}`, want: 400},
		{name: "patch nothing", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{}`, want: 400},
		{name: "patch workers as a string", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"workers":"2"}`, want: 400},

		{name: "upgrade", method: "POST", path: "/v1/clusters/cls_missing/upgrade", body: `{"kubernetes_version":"v1.37.2"}`, specValid: true, want: 404},
		{name: "upgrade without a version", method: "POST", path: "/v1/clusters/cls_missing/upgrade", body: `{}`, want: 400},
		{name: "upgrade to latest", method: "POST", path: "/v1/clusters/cls_missing/upgrade", body: `{"kubernetes_version":"latest"}`, want: 400},
		{name: "upgrade with an unknown field", method: "POST", path: "/v1/clusters/cls_missing/upgrade", body: `{"kubernetes_version":"v1.37.2","force":true}`, want: 400},
		{name: "upgrade to a version not offered", method: "POST", path: "/v1/clusters/cls_missing/upgrade", body: `{"kubernetes_version":"v1.99.0"}`, specValid: true, want: 400, why: "the catalog is configuration"},

		{name: "token minimal", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"]}`, specValid: true, want: 201},
		{name: "token of every field", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read","write"],"scope":"cluster:*","expires":"12h","plan":"pro"}`, specValid: true, want: 201},
		{name: "token without permissions", method: "POST", path: "/v1/tokens", body: `{"name":"ci"}`, want: 400},
		{name: "token with no permission", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":[]}`, want: 400},
		{name: "token with an unknown permission", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["root"]}`, want: 400},
		{name: "token with a bad scope", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"scope":"everything"}`, want: 400},
		{name: "token for a missing cluster", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"scope":"cluster:cls_missing"}`, specValid: true, want: 400, why: "which clusters exist is state"},
		{name: "admin token scoped to clusters", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read","admin"],"scope":"cluster:*"}`, want: 400},
		{name: "admin token", method: "POST", path: "/v1/tokens", body: `{"name":"ops","permissions":["admin"],"scope":"*","plan":"enterprise"}`, specValid: true, want: 201},
		{name: "token for 3650 days", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"expires":"3650d"}`, specValid: true, want: 201},
		{name: "token for 3651 days", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"expires":"3651d"}`, specValid: true, want: 400, why: "the 3650d bound is stated in the description"},
		{name: "token for 0 days", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"expires":"0d"}`, want: 400},
		{name: "token for a year", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"expires":"1y"}`, want: 400},
		{name: "token that never expires", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"expires":null}`, specValid: true, want: 201},
		{name: "token on an unknown plan", method: "POST", path: "/v1/tokens", body: `{"name":"ci","permissions":["read"],"plan":"gold"}`, want: 400},
		{name: "token name of 128", method: "POST", path: "/v1/tokens", body: `{"name":"` + strings.Repeat("n", 128) + `","permissions":["read"]}`, specValid: true, want: 201},
		{name: "token name of 129", method: "POST", path: "/v1/tokens", body: `{"name":"` + strings.Repeat("n", 129) + `","permissions":["read"]}`, want: 400},
		{name: "token name of spaces", method: "POST", path: "/v1/tokens", body: `{"name":"   ","permissions":["read"]}`, want: 400},
		{name: "token name with a tab", method: "POST", path: "/v1/tokens", body: `{"name":"a\tb","permissions":["read"]}`, want: 400},
		{name: "token name with spaces inside", method: "POST", path: "/v1/tokens", body: `{"name":" deploy bot ","permissions":["read"]}`, specValid: true, want: 201},

		{name: "infra minimal", method: "POST", path: "/v1/infras", body: `{"name":"i1","kind":"baremetal"}`, specValid: true, want: 201},
		{name: "infra of every field", method: "POST", path: "/v1/infras", body: `{"name":"i2","kind":"onpremise","network":{"cidr":"10.1.0.0/16","gateway":"10.1.0.1","dns":["10.1.0.2","2001:db8::53"],"mtu":9216},"vip_pool":"10.1.255.0/24"}`, specValid: true, want: 201},
		{name: "infra with a taken name", method: "POST", path: "/v1/infras", body: `{"name":"i1","kind":"baremetal"}`, specValid: true, want: 409},
		{name: "infra of kind managed", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"managed"}`, want: 400},
		{name: "infra without kind", method: "POST", path: "/v1/infras", body: `{"name":"i3"}`, want: 400},
		{name: "infra with a bad name", method: "POST", path: "/v1/infras", body: `{"name":"site a","kind":"baremetal"}`, want: 400},
		{name: "infra with mtu 575", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"baremetal","network":{"mtu":575}}`, want: 400},
		{name: "infra with a bad cidr", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"baremetal","network":{"cidr":"ten"}}`, want: 400},
		{name: "infra with a bad gateway", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"baremetal","network":{"gateway":"gw"}}`, want: 400},
		{name: "infra with a bad dns", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"baremetal","network":{"dns":["dns.example"]}}`, want: 400},
		{name: "infra with a gateway outside", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"baremetal","network":{"cidr":"10.0.0.0/24","gateway":"10.9.0.1"}}`, specValid: true, want: 400, why: "a rule across two fields, stated in the description"},
		{name: "infra with a bad vip pool", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"baremetal","vip_pool":"pool"}`, want: 400},
		{name: "infra with a vip pool of no address", method: "POST", path: "/v1/infras", body: `{"name":"i3","kind":"baremetal","vip_pool":"10.0.0.0/31"}`, specValid: true, want: 400, why: "usable addresses are stated in the description"},

		{name: "join token", method: "POST", path: "/v1/infras/infra_missing/join-tokens", body: `{"expires":"12h","max_uses":1000000}`, specValid: true, want: 404},
		{name: "join token with an empty object", method: "POST", path: "/v1/infras/infra_missing/join-tokens", body: `{}`, specValid: true, want: 404},
		{name: "join token without a body", method: "POST", path: "/v1/infras/infra_missing/join-tokens", specValid: true, want: 404},
		{name: "join token for 12", method: "POST", path: "/v1/infras/infra_missing/join-tokens", body: `{"expires":"12"}`, want: 400},
		{name: "join token for 366 days", method: "POST", path: "/v1/infras/infra_missing/join-tokens", body: `{"expires":"366d"}`, specValid: true, want: 400, why: "the 365d bound is stated in the description"},
		{name: "join token of 0 uses", method: "POST", path: "/v1/infras/infra_missing/join-tokens", body: `{"max_uses":0}`, want: 400},
		{name: "join token of 1000001 uses", method: "POST", path: "/v1/infras/infra_missing/join-tokens", body: `{"max_uses":1000001}`, want: 400},
		{name: "join token with an unknown field", method: "POST", path: "/v1/infras/infra_missing/join-tokens", body: `{"uses":1}`, want: 400},

		{name: "clusters page 1000000", method: "GET", path: "/v1/clusters?page=1000000", specValid: true, want: 200},
		{name: "clusters page 1000001", method: "GET", path: "/v1/clusters?page=1000001", want: 400},
		{name: "clusters page 0", method: "GET", path: "/v1/clusters?page=0", want: 400},
		{name: "clusters per_page 100", method: "GET", path: "/v1/clusters?per_page=100", specValid: true, want: 200},
		{name: "clusters per_page 101", method: "GET", path: "/v1/clusters?per_page=101", want: 400},
		{name: "clusters per_page abc", method: "GET", path: "/v1/clusters?per_page=abc", want: 400},
		{name: "clusters of every status filter", method: "GET", path: "/v1/clusters?status=deleting&page=2&per_page=1", specValid: true, want: 200},
		{name: "clusters in an unknown status", method: "GET", path: "/v1/clusters?status=gone", want: 400},
		{name: "clusters with an undeclared parameter", method: "GET", path: "/v1/clusters?sort=name", want: 400},
		{name: "clusters with a repeated parameter", method: "GET", path: "/v1/clusters?page=1&page=2", want: 400},
		{name: "hosts offline of any infra", method: "GET", path: "/v1/hosts?state=offline&infra_id=anything", specValid: true, want: 200},
		{name: "hosts in an unknown state", method: "GET", path: "/v1/hosts?state=asleep", want: 400},
		{name: "events since 0", method: "GET", path: events + "?since=0", specValid: true, want: 404},
		{name: "events since the largest seq", method: "GET", path: events + "?since=4611686018427387904", specValid: true, want: 404},
		{name: "events since beyond", method: "GET", path: events + "?since=4611686018427387905", want: 400},
		{name: "events since -1", method: "GET", path: events + "?since=-1", want: 400},
		{name: "events followed", method: "GET", path: events + "?follow=true&since=3", specValid: true, want: 404},
		{name: "events follow=yes", method: "GET", path: events + "?follow=yes", want: 400},
		{name: "events resumed", method: "GET", path: events + "?follow=1", header: map[string]string{"Last-Event-ID": "12"}, specValid: true, want: 404},
		{name: "events resumed from a bad id", method: "GET", path: events + "?follow=1", header: map[string]string{"Last-Event-ID": "twelve"}, want: 400},
		{name: "kubeconfig for a year", method: "GET", path: "/v1/clusters/cls_missing/kubeconfig?ttl=365d", specValid: true, want: 404},
		{name: "kubeconfig for 52 weeks", method: "GET", path: "/v1/clusters/cls_missing/kubeconfig?ttl=52w", specValid: true, want: 404},
		{name: "kubeconfig for 366 days", method: "GET", path: "/v1/clusters/cls_missing/kubeconfig?ttl=366d", specValid: true, want: 400, why: "the one-year bound is stated in the description"},
		{name: "kubeconfig for 0 hours", method: "GET", path: "/v1/clusters/cls_missing/kubeconfig?ttl=0h", want: 400},
		{name: "healthz with a parameter", method: "GET", path: "/healthz?probe=1", want: 400},
		{name: "healthz stale", method: "GET", path: "/healthz?stale=1", want: 400},

		{name: "clusters stale=1", method: "GET", path: "/v1/clusters?stale=1", specValid: true, want: 200},
		{name: "clusters stale=true", method: "GET", path: "/v1/clusters?stale=true&page=1", specValid: true, want: 200},
		{name: "clusters stale=0", method: "GET", path: "/v1/clusters?stale=0", specValid: true, want: 200},
		{name: "clusters stale=false", method: "GET", path: "/v1/clusters?stale=false", specValid: true, want: 200},
		{name: "clusters stale=yes", method: "GET", path: "/v1/clusters?stale=yes", want: 400},
		{name: "clusters stale empty", method: "GET", path: "/v1/clusters?stale=", want: 400},
		{name: "clusters stale twice", method: "GET", path: "/v1/clusters?stale=1&stale=1", want: 400},
		{name: "events stale", method: "GET", path: events + "?stale=1&since=2", specValid: true, want: 404},
		{name: "kubernetes versions stale", method: "GET", path: "/v1/kubernetes/versions?stale=1", specValid: true, want: 200},
		{name: "members stale", method: "GET", path: "/v1/coordinator/members?stale=true", specValid: true, want: 200},
		{name: "write with stale", method: "PATCH", path: "/v1/clusters/cls_missing?stale=1", body: `{"workers":2}`, want: 400},

		{name: "write with a key", method: "PATCH", path: "/v1/clusters/cls_missing", body: `{"workers":2}`, header: map[string]string{"Idempotency-Key": "req-1"}, specValid: true, want: 404},
		{name: "write with a key of 255", method: "DELETE", path: "/v1/clusters/cls_missing", header: map[string]string{"Idempotency-Key": strings.Repeat("k", 255)}, specValid: true, want: 404},
		{name: "write with a key of 256", method: "DELETE", path: "/v1/clusters/cls_missing", header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, want: 400},
		{name: "write with a key holding a space", method: "DELETE", path: "/v1/clusters/cls_missing", header: map[string]string{"Idempotency-Key": "a b"}, want: 400},
		{name: "write with a non-ASCII key", method: "DELETE", path: "/v1/clusters/cls_missing", header: map[string]string{"Idempotency-Key": "clé"}, want: 400},
		{name: "read with a key", method: "GET", path: "/v1/clusters", header: map[string]string{"Idempotency-Key": "req-2"}, specValid: true, want: 400,
			why: "the header is declared on writes only; the description says a GET refuses it"},

		{name: "member with every field", method: "POST", path: "/v1/coordinator/members", body: `{"id":"node-2","raft_address":"127.0.0.1:0","http_address":"127.0.0.1:8080","grpc_address":"127.0.0.1:9090"}`,
			specValid: true, want: 400, why: "host:port with a non-zero port is stated in the description"},
		{name: "member on a malformed raft address", method: "POST", path: "/v1/coordinator/members", body: `{"id":"node-2","raft_address":"nowhere"}`,
			specValid: true, want: 400, why: "host:port is stated in the description"},
		{name: "member without raft address", method: "POST", path: "/v1/coordinator/members", body: `{"id":"node-2"}`, want: 400},
		{name: "member with an empty raft address", method: "POST", path: "/v1/coordinator/members", body: `{"id":"node-2","raft_address":""}`, want: 400},
		{name: "member without id", method: "POST", path: "/v1/coordinator/members", body: `{"raft_address":"127.0.0.1:1"}`, want: 400},
		{name: "member with an id of 129", method: "POST", path: "/v1/coordinator/members", body: `{"id":"` + strings.Repeat("n", 129) + `","raft_address":"127.0.0.1:1"}`, want: 400},
		{name: "member with a space in its id", method: "POST", path: "/v1/coordinator/members", body: `{"id":"node 2","raft_address":"127.0.0.1:1"}`, want: 400},
		{name: "member with an unknown field", method: "POST", path: "/v1/coordinator/members", body: `{"id":"node-2","raft_address":"127.0.0.1:1","voter":true}`, want: 400},
		{name: "member without a body", method: "POST", path: "/v1/coordinator/members", want: 400},
		{name: "accept a missing host", method: "POST", path: "/v1/hosts/host_missing/accept", specValid: true, want: 404},
		{name: "accept a missing host with a key", method: "POST", path: "/v1/hosts/host_missing/accept", header: map[string]string{"Idempotency-Key": "accept-1"}, specValid: true, want: 404},
		{name: "accept a host with a parameter", method: "POST", path: "/v1/hosts/host_missing/accept?force=1", want: 400},
		{name: "remove a missing member", method: "DELETE", path: "/v1/coordinator/members/node-9", specValid: true, want: 404},
		{name: "remove a member with a parameter", method: "DELETE", path: "/v1/coordinator/members/node-9?force=1", want: 400},
		{name: "openapi with a parameter", method: "GET", path: "/v1/openapi.json?v=2", want: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			header := http.Header{}
			for k, val := range tc.header {
				header.Set(k, val)
			}
			specErr := v.CheckRequest(tc.method, tc.path, header, body)
			if (specErr == nil) != tc.specValid {
				t.Errorf("spec says valid=%v, want %v: %v", specErr == nil, tc.specValid, specErr)
			}
			token := c.AdminToken
			if tc.path == "/healthz?probe=1" {
				token = ""
			}
			r := a.do(t, request{method: tc.method, path: tc.path, token: token, body: body, header: tc.header})
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			// The invariant itself: spec-valid requests are never refused as malformed except
			// for the documented reasons, spec-invalid ones always are.
			if tc.specValid && r.status == http.StatusBadRequest && tc.why == "" {
				t.Errorf("the spec accepts this request but the server refuses it: %s", r.body)
			}
			if !tc.specValid && r.status != http.StatusBadRequest {
				t.Errorf("the spec refuses this request but the server answers %d", r.status)
			}
		})
	}
}
