// Package api_test holds the REST contract's acceptance tests: every request goes over real
// HTTP on 127.0.0.1 to an in-process coordinator (clustertest), and answers are read both as
// typed structs and as plain maps, so a key the contract does not list, or one it lists that
// is missing, fails the test instead of being silently dropped by a struct decode.
package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/api/client"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
)

// start runs a single-replica coordinator. The bootstrap admin secret it would print goes
// nowhere: the harness reads it from the data dir, and secrets have no place in test logs.
func start(t *testing.T) *clustertest.Cluster {
	t.Helper()
	return clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) { cfg.Stdout = io.Discard }})
}

func ptr[T any](v T) *T { return &v }

// send makes one request. A transport error fails the test at once: it is also how a panic
// in a handler shows up, since net/http recovers it by dropping the connection.
func send(t *testing.T, cl *client.Client, method, path string, body any) *client.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.Do(ctx, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// objectOf decodes a JSON object body into a map, keeping numbers as float64 like any
// generic client would.
func objectOf(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		t.Fatalf("body is not a JSON object (%v): %.300q", err, body)
	}
	return m
}

// strict decodes body into a T refusing unknown keys and trailing data, so the typed view
// of an answer is as strict as the server is with requests.
func strict[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T: %v; body: %.300q", v, err, body)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("decode %T: trailing data after the value; body: %.300q", v, body)
	}
	return v
}

// keys returns the sorted keys of an object, for cmp.Diff against the contract's key set.
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sorted returns a sorted copy, so wanted key sets can be written in reading order.
func sorted(s ...string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// expectKeys fails when the object's keys differ from want in either direction.
func expectKeys(t *testing.T, what string, m map[string]any, want []string) {
	t.Helper()
	if diff := cmp.Diff(sorted(want...), keys(m)); diff != "" {
		t.Errorf("%s: keys differ from the contract (-want +got):\n%s", what, diff)
	}
}

// stateOf is every FSM table as JSON: the byte-for-byte picture of what the coordinator
// holds, which a rejected request must leave untouched.
func stateOf(t *testing.T, c *clustertest.Cluster) []byte {
	t.Helper()
	b, err := json.Marshal(c.Server().FSM().Tables())
	if err != nil {
		t.Fatalf("marshal tables: %v", err)
	}
	return b
}

// diffJSON explains a difference between two JSON documents readably.
func diffJSON(a, b []byte) string {
	var x, y any
	_ = json.Unmarshal(a, &x)
	_ = json.Unmarshal(b, &y)
	return cmp.Diff(x, y)
}
