package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/deployme/deployme/api/v1"
)

// FuzzDecodeBody feeds arbitrary bodies to the strict decoder with the request types of the
// busiest endpoints: it must never panic, every refusal must be an API error with a 4xx code,
// and every accepted body must be a JSON object of known fields that decodes the same after
// a round trip.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"prod","control_planes":3,"workers":5,"node_size":"large"}`,
		`{"name":"prod","control_planes":3,"workers":5,"node_size":"large","phase":"onpremise","infra_id":"infra_1","kubernetes_version":"v1.31.2"}`,
		`{"name":"ci","permissions":["read","write"],"scope":"cluster:*","expires":"90d","plan":"pro"}`,
		`{"name":"paris","kind":"onpremise","network":{"cidr":"10.0.0.0/24","gateway":"10.0.0.1","dns":["1.1.1.1"],"mtu":9000}}`,
		`{"network":{"mtuu":1}}`, `{"network":{"mtu":"x"}}`, `{"network":null}`, `{"name":null}`,
		``, ` `, `null`, `[]`, `"x"`, `1`, `{`, `{"name":"a"} {}`, `{"nmae":"a"}`, `{"NAME":"a"}`,
		`{"workers":"5"}`, `{"workers":1e400}`, `{"workers":-9223372036854775809}`, `{"permissions":"read"}`,
		`{"permissions":[1]}`, `{"name":"a","name":2}`, `{"name":"\ud800"}`, "{\"name\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Add(bytes.Repeat([]byte(" "), MaxBodyBytes+1))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body, &v1.CreateClusterRequest{}, false)
		checkDecode(t, body, &v1.CreateTokenRequest{}, false)
		checkDecode(t, body, &v1.CreateInfraRequest{}, false)
		checkDecode(t, body, &v1.CreateJoinTokenRequest{}, true)
	})
}

func checkDecode[T any](t *testing.T, body []byte, dst *T, optional bool) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	err := decode(r, dst, optional)
	if err != nil {
		var e *v1.Error
		if !errors.As(err, &e) || e.Code == "" || e.Status() < 400 || e.Status() >= 500 {
			t.Fatalf("decode(%q) into %T: %v; want an API error with a 4xx code", body, dst, err)
		}
		return
	}
	if strings.TrimSpace(string(body)) == "" {
		if !optional {
			t.Fatalf("decode of an empty body into %T succeeded", dst)
		}
		return
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil || fields == nil {
		t.Fatalf("decode(%q) into %T accepted something that is not a JSON object", body, dst)
	}
	known := jsonFields(reflect.TypeOf(dst).Elem())
	for k := range fields {
		if _, ok := known[k]; !ok {
			t.Fatalf("decode(%q) into %T accepted the unknown field %q", body, dst, k)
		}
	}
	out, err := json.Marshal(dst)
	if err != nil {
		t.Fatalf("marshal %+v: %v", dst, err)
	}
	again := new(T)
	if err := decode(httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(out)), again, optional); err != nil {
		t.Fatalf("decode(%q) gave %+v, whose encoding %s does not decode: %v", body, dst, out, err)
	}
	if !reflect.DeepEqual(dst, again) {
		t.Fatalf("decode(%q) = %+v, but after a round trip %+v", body, dst, again)
	}
}
