package apitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/deployme/deployme/api/apitest"
	"github.com/deployme/deployme/api/rest"
)

// These tests hold the validator to its word on answers made up here, so that a contract
// test passing means the server conforms rather than that the validator looked away.

func TestMatch(t *testing.T) {
	v := apitest.NewValidator(t)
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"/v1/clusters", "/v1/clusters", true},
		{"/v1/clusters/cls_x", "/v1/clusters/{id}", true},
		{"/v1/clusters/cls_x/nodes", "/v1/clusters/{id}/nodes", true},
		{"/v1/clusters/cls_x/events?follow=1", "/v1/clusters/{id}/events", true},
		{"/v1/infras/infra_a/join-tokens/jt_b", "/v1/infras/{id}/join-tokens/{token_id}", true},
		{"/v1/kubernetes/versions", "/v1/kubernetes/versions", true},
		{"/healthz", "/healthz", true},
		{"/v1/clusters/", "", false},
		{"/v1/clusters/cls_x/pods", "", false},
		{"/v2/clusters", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, ok := v.Match(tc.path)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Match = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func headers(kv ...string) http.Header {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "100")
	h.Set("X-RateLimit-Remaining", "99")
	h.Set("X-RateLimit-Reset", "1767225600")
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			h.Del(kv[i])
			continue
		}
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const (
	jsonCT   = "application/json"
	notFound = `{"error":"not_found","message":"cluster cls_x not found"}`
	event    = `{"seq":1,"cluster_id":"cls_x","type":"cluster.created","message":"created","time":"2026-01-01T00:00:00.5Z"}`
)

func TestCheck(t *testing.T) {
	v := apitest.NewValidator(t)
	tests := []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		wantErr            string // "" for valid
	}{
		{"healthz", "GET", "/healthz", 200, headers("Content-Type", jsonCT), `{"status":"ok"}`, ""},
		{"healthz without a rate-limit header", "GET", "/healthz", 200, headers("Content-Type", jsonCT, "X-RateLimit-Limit", ""), `{"status":"ok"}`, "X-RateLimit-Limit is required"},
		{"healthz with a non-integer header", "GET", "/healthz", 200, headers("Content-Type", jsonCT, "X-RateLimit-Reset", "soon"), `{"status":"ok"}`, "not an integer"},
		{"healthz with a wrong body", "GET", "/healthz", 200, headers("Content-Type", jsonCT), `{"status":"fine"}`, "body"},
		{"healthz with an undocumented status", "GET", "/healthz", 201, headers("Content-Type", jsonCT), `{"status":"ok"}`, "not documented"},
		{"healthz answering 401", "GET", "/healthz", 401, headers("Content-Type", jsonCT), `{"error":"unauthorized","message":"no"}`, "not documented"},
		{"list with the wrong content type", "GET", "/v1/clusters", 200, headers("Content-Type", "text/plain"), `{}`, "Content-Type"},
		{"list without total", "GET", "/v1/clusters", 200, headers("Content-Type", jsonCT), `{"items":[],"page":1,"per_page":20}`, "total"},
		{"list", "GET", "/v1/clusters", 200, headers("Content-Type", "application/json; charset=utf-8"), `{"items":[],"total":0,"page":1,"per_page":20}`, ""},
		{"not found", "GET", "/v1/clusters/cls_x", 404, headers("Content-Type", jsonCT), notFound, ""},
		{"not found with the wrong code", "GET", "/v1/clusters/cls_x", 404, headers("Content-Type", jsonCT), `{"error":"forbidden","message":"no"}`, "body"},
		{"error with an unknown detail", "GET", "/v1/clusters/cls_x", 404, headers("Content-Type", jsonCT), `{"error":"not_found","message":"no","details":{"why":"gone"}}`, "body"},
		{"delete", "DELETE", "/v1/clusters/cls_x", 204, headers(), "", ""},
		{"delete with a body", "DELETE", "/v1/clusters/cls_x", 204, headers(), "{}", "no body"},
		{"capacity without counts", "POST", "/v1/clusters", 409, headers("Content-Type", jsonCT), `{"error":"insufficient_capacity","message":"no"}`, "body"},
		{"capacity", "POST", "/v1/clusters", 409, headers("Content-Type", jsonCT),
			`{"error":"insufficient_capacity","message":"no","details":{"needed":3,"available":1,"infra_id":"infra_managed","node_size":"small"}}`, ""},
		{"rate limited", "GET", "/v1/clusters", 429, headers("Content-Type", jsonCT, "Retry-After", "7"), `{"error":"rate_limited","message":"slow down"}`, ""},
		{"rate limited without Retry-After", "GET", "/v1/clusters", 429, headers("Content-Type", jsonCT), `{"error":"rate_limited","message":"slow down"}`, "Retry-After"},
		{"unlisted method", "PUT", "/v1/clusters", 405, headers("Content-Type", jsonCT, "Allow", "GET, POST"), `{"error":"method_not_allowed","message":"no"}`, ""},
		{"unlisted method with a wrong Allow", "PUT", "/v1/clusters", 405, headers("Content-Type", jsonCT, "Allow", "GET"), `{"error":"method_not_allowed","message":"no"}`, "Allow"},
		{"unlisted method answered 200", "PUT", "/v1/clusters", 200, headers("Content-Type", jsonCT), `{}`, "unlisted method"},
		{"unknown path", "GET", "/v1/nothing", 404, headers("Content-Type", jsonCT), `{"error":"not_found","message":"no"}`, ""},
		{"unknown path answered 200", "GET", "/v1/nothing", 200, headers("Content-Type", jsonCT), `{}`, "no such path"},
		{"event stream", "GET", "/v1/clusters/cls_x/events?follow=1", 200, headers("Content-Type", "text/event-stream"),
			": keepalive\n\nid: 1\nevent: cluster.created\ndata: " + event + "\n\nid: 2\ndata: {\"seq\"", ""},
		{"event stream with bad data", "GET", "/v1/clusters/cls_x/events?follow=1", 200, headers("Content-Type", "text/event-stream"),
			"id: 1\ndata: {\"seq\":0}\n\n", "event 0 data"},
		{"kubeconfig", "GET", "/v1/clusters/cls_x/kubeconfig", 200, headers("Content-Type", "application/yaml", "Content-Disposition", `attachment; filename="kubeconfig.yaml"`),
			"apiVersion: v1\nkind: Config\n", ""},
		{"kubeconfig as JSON", "GET", "/v1/clusters/cls_x/kubeconfig", 200, headers("Content-Type", jsonCT, "Content-Disposition", `attachment; filename="kubeconfig.yaml"`), `{}`, "Content-Type"},
		{"metrics", "GET", "/metrics", 200, headers("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), "# HELP x\n", ""},
		{"token list leaking a secret", "GET", "/v1/tokens", 200, headers("Content-Type", jsonCT),
			`{"items":[{"id":"tok_a","name":"n","permissions":["read"],"scope":"*","plan":"pro","expires_at":null,"created_at":"2026-01-01T00:00:00Z","token":"dpl_x"}]}`, "body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Check(tc.method, tc.path, tc.status, tc.header, []byte(tc.body))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("no error, want one mentioning %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckRequest(t *testing.T) {
	v := apitest.NewValidator(t)
	tests := []struct {
		name, method, target, body string
		header                     http.Header
		wantErr                    string
	}{
		{"list", "GET", "/v1/clusters?page=2&per_page=5&status=running", "", nil, ""},
		{"undeclared parameter", "GET", "/v1/clusters?sort=name", "", nil, "not declared"},
		{"repeated parameter", "GET", "/v1/clusters?page=1&page=2", "", nil, "2 times"},
		{"non-integer page", "GET", "/v1/clusters?page=two", "", nil, "not an integer"},
		{"body on a GET", "GET", "/v1/clusters", "{}", nil, "no request body"},
		{"missing body", "POST", "/v1/clusters", "", nil, "required"},
		{"optional body", "POST", "/v1/infras/infra_x/join-tokens", "", nil, ""},
		{"bad header", "GET", "/v1/clusters/cls_x/events?follow=1", "", http.Header{"Last-Event-Id": {"x"}}, "Last-Event-Id"},
		{"unknown operation", "PUT", "/v1/clusters", "", nil, "no PUT"},
		{"create", "POST", "/v1/clusters", `{"name":"a","control_planes":3,"workers":2,"node_size":"large"}`, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			err := v.CheckRequest(tc.method, tc.target, h, []byte(tc.body))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("no error, want one mentioning %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// recorder is a testing.TB that keeps what Errorf reports instead of failing.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestTransport(t *testing.T) {
	v := apitest.NewValidator(t)
	tests := []struct {
		name    string
		handler http.Handler
		drift   bool
	}{
		// The real handler answers /healthz without touching its backend.
		{"real handler", rest.New(nil, rest.DefaultConfig()), false},
		{"drifted handler", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"status":"ok"}`) // no rate-limit headers
		}), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			rec := &recorder{TB: t}
			hc := &http.Client{Transport: v.Transport(rec, nil)}
			resp, err := hc.Get(srv.URL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !strings.Contains(string(body), `"ok"`) {
				t.Errorf("the transport must hand the body on intact: %q, %v", body, err)
			}
			if got := len(rec.errs) > 0; got != tc.drift {
				t.Errorf("drift reported = %v, want %v: %q", got, tc.drift, rec.errs)
			}
		})
	}
}
