package api_test

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/deployme/deployme/api"
	"github.com/deployme/deployme/api/apitest"
	"github.com/deployme/deployme/api/rest"
	v1 "github.com/deployme/deployme/api/v1"
)

// TestSpecIsOpenAPI31 checks the document is what DESIGN.md promises clients: OpenAPI 3.1.0
// with JSON Schema 2020-12, bearer auth by default, and that what is served equals what is
// written (a strict YAML read, so a duplicated key cannot silently drop half a path).
func TestSpecIsOpenAPI31(t *testing.T) {
	strict, err := yaml.YAMLToJSONStrict(api.SpecYAML())
	if err != nil {
		t.Fatalf("openapi.yaml does not parse strictly: %v", err)
	}
	served, err := api.SpecJSON()
	if err != nil {
		t.Fatalf("SpecJSON: %v", err)
	}
	if !bytes.Equal(strict, served) {
		t.Errorf("the served JSON differs from a strict reading of openapi.yaml")
	}
	var doc struct {
		OpenAPI           string `json:"openapi"`
		JSONSchemaDialect string `json:"jsonSchemaDialect"`
		Info              struct {
			Title   string `json:"title"`
			Version string `json:"version"`
		} `json:"info"`
		Security   []map[string][]string `json:"security"`
		Components struct {
			SecuritySchemes map[string]struct {
				Type   string `json:"type"`
				Scheme string `json:"scheme"`
			} `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(served, &doc); err != nil {
		t.Fatalf("decode spec: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"openapi", doc.OpenAPI, "3.1.0"},
		{"jsonSchemaDialect", doc.JSONSchemaDialect, "https://json-schema.org/draft/2020-12/schema"},
		{"info.version", doc.Info.Version, "v1"},
		{"security", doc.Security, []map[string][]string{{"bearer": {}}}},
		{"bearer scheme", doc.Components.SecuritySchemes["bearer"].Type + " " + doc.Components.SecuritySchemes["bearer"].Scheme, "http bearer"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, c.got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.name, diff)
			}
		})
	}
}

// TestSpecValidatesAgainstOpenAPISchema checks the document's structure (operation,
// parameter, response, header objects, and so on) against the OpenAPI Initiative's JSON
// Schema for 3.1 documents, testdata/oas-3.1-schema-2022-10-07.json (Apache-2.0, from
// github.com/OAI/OpenAPI-Specification schemas/v3.1/schema.json). The schemas inside the
// document are compiled separately (TestSpecSchemasCompile).
func TestSpecValidatesAgainstOpenAPISchema(t *testing.T) {
	f, err := os.Open("testdata/oas-3.1-schema-2022-10-07.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const metaURL = "https://spec.openapis.org/oas/3.1/schema/2022-10-07"
	if err := c.AddResource(metaURL, meta); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(metaURL)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := api.SpecJSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(doc); err != nil {
		t.Errorf("openapi.yaml is not a valid OpenAPI 3.1 document:\n%#v", err)
	}
}

// TestSpecRoutesMatchServer keeps the spec and the route table equal both ways: a route
// without an operation is undocumented API; an operation without a route is a lie.
func TestSpecRoutesMatchServer(t *testing.T) {
	var registered []string
	for _, r := range rest.New(nil, rest.DefaultConfig()).Routes() {
		registered = append(registered, r.Method+" "+r.Pattern)
	}
	var specified []string
	for _, op := range apitest.NewValidator(t).Operations() {
		specified = append(specified, op.Method+" "+op.Path)
	}
	slices.Sort(registered)
	slices.Sort(specified)
	if len(registered) == 0 {
		t.Fatal("the server registers no routes")
	}
	for _, r := range registered {
		if _, found := slices.BinarySearch(specified, r); !found {
			t.Errorf("route %s is registered but missing from api/openapi.yaml", r)
		}
	}
	for _, s := range specified {
		if _, found := slices.BinarySearch(registered, s); !found {
			t.Errorf("operation %s is in api/openapi.yaml but the server does not register it", s)
		}
	}
	if t.Failed() {
		t.Logf("diff (-server +spec):\n%s", cmp.Diff(registered, specified))
	}
}

// TestSpecOperations checks what every operation must declare, given how the handler's
// dispatch works: 429 wherever a token is needed (the limiter runs before anything else;
// health probes only peek at it), 401 likewise, 403
// wherever access can be denied, 400 and 413 wherever a body is read, 404 wherever a path
// names an object.
func TestSpecOperations(t *testing.T) {
	v := apitest.NewValidator(t)
	ids := map[string]string{}
	for _, op := range v.Operations() {
		t.Run(op.Method+" "+op.Path, func(t *testing.T) {
			node, _ := lookup(v.Doc(), op.Pointer)
			obj := node.(map[string]any)
			if op.ID == "" {
				t.Error("no operationId")
			} else if prev, dup := ids[op.ID]; dup {
				t.Errorf("operationId %q is also used by %s", op.ID, prev)
			}
			ids[op.ID] = op.Method + " " + op.Path
			if d, _ := obj["description"].(string); d == "" {
				t.Error("no description (it states the permission and scope needed)")
			}
			has := func(status int) bool { return slices.Contains(op.Statuses, status) }
			want := map[int]bool{}
			probe := op.Path == "/healthz" || op.Path == "/readyz"
			// Hosts being installed have no token; their downloads draw on the per-IP
			// anonymous budget, so unlike the probes they can be 429.
			install := op.Path == "/install.sh" || strings.HasPrefix(op.Path, "/v1/agent/download")
			// Machines booting from the network have no token either (iPXE fetches scripts,
			// kernel and initrd); like the probes they are not rate limited.
			boot := strings.HasPrefix(op.Path, "/boot/")
			// Hosts fetch Kubernetes binaries by content hash, with no token either.
			artifacts := strings.HasPrefix(op.Path, "/artifacts/")
			public := probe || install || boot || artifacts
			if probe && (has(401) || has(429)) {
				t.Error("a health probe declares 401 or 429, which it never answers")
			}
			if install {
				want[429] = true
				if has(401) {
					t.Error("an installation download declares 401, which it never answers")
				}
			}
			if public != op.Public {
				t.Errorf("security override: public=%v, want %v (only the health probes, the agent installation, network boot and the artifact store take no token)", op.Public, public)
			}
			if _, ok := obj["security"]; ok && !public {
				t.Error("overrides the global bearer security")
			}
			switch op.Access {
			case "public":
				if !public {
					t.Error("x-access public on an operation that needs a token")
				}
			case "token":
				want[401], want[429] = true, true
			case "cluster-read", "cluster-write", "global-read", "admin":
				want[401], want[403], want[429] = true, true, true
			default:
				t.Errorf("x-access %q is not one of public, token, cluster-read, cluster-write, global-read, admin", op.Access)
			}
			if op.Access == "token" && has(403) {
				t.Error("declares 403, but any valid token may call it")
			}
			// Every authenticated call reads ?stale= (GET) or Idempotency-Key (the others)
			// before its handler, so can answer 400 for them, and can answer 503 when no
			// leader is reachable.
			if !public {
				want[400], want[503] = true, true
				refs := map[string]bool{}
				node, _ := lookup(v.Doc(), op.Pointer+"/parameters")
				list, _ := node.([]any)
				for _, p := range list {
					if ref, ok := p.(map[string]any)["$ref"].(string); ok {
						refs[ref] = true
					}
				}
				const stale, idem = "#/components/parameters/Stale", "#/components/parameters/IdempotencyKey"
				isGet := op.Method == "GET"
				if refs[stale] != isGet {
					t.Errorf("declares the stale parameter: %v, want %v (GET only)", refs[stale], isGet)
				}
				if refs[idem] == isGet {
					t.Errorf("declares the Idempotency-Key header: %v, want %v (POST, PATCH, DELETE)", refs[idem], !isGet)
				}
				if isGet {
					resp := resolve(t, v.Doc(), op.Pointer+apitest.Pointer("responses", "200"))
					headers, _ := resp["headers"].(map[string]any)
					ref, _ := headers["X-Deployme-Read"].(map[string]any)["$ref"].(string)
					if want := "#/components/headers/X-Deployme-Read"; ref != want {
						t.Errorf("200 header X-Deployme-Read: $ref %q, want %q", ref, want)
					}
				}
			}
			if _, ok := obj["requestBody"]; ok {
				want[400], want[413] = true, true
			}
			if strings.Contains(op.Path, "{") {
				want[404] = true
			}
			for status := range want {
				if !has(status) {
					t.Errorf("does not declare %d", status)
				}
			}
			// Every template variable is a declared path parameter and the other way round.
			var inPath, declared []string
			for _, seg := range strings.Split(op.Path, "/") {
				if name, ok := strings.CutPrefix(seg, "{"); ok {
					inPath = append(inPath, strings.TrimSuffix(name, "}"))
				}
			}
			for _, base := range []string{apitest.Pointer("paths", op.Path), op.Pointer} {
				node, _ := lookup(v.Doc(), base+"/parameters")
				list, _ := node.([]any)
				for i := range list {
					p := resolve(t, v.Doc(), base+"/parameters/"+strconv.Itoa(i))
					if p["in"] == "path" {
						declared = append(declared, p["name"].(string))
						if p["required"] != true {
							t.Errorf("path parameter %v is not required", p["name"])
						}
					}
				}
			}
			slices.Sort(inPath)
			slices.Sort(declared)
			if diff := cmp.Diff(inPath, declared); diff != "" {
				t.Errorf("path parameters (-template +declared):\n%s", diff)
			}
			var success int
			for _, s := range op.Statuses {
				if s >= 200 && s < 300 {
					success++
				}
			}
			if success != 1 {
				t.Errorf("declares %d success statuses, want exactly one", success)
			}
		})
	}
}

// TestSpecResponsesCarryRateLimitHeaders: the dispatcher sets the three headers before
// anything else, so every response object must promise them.
func TestSpecResponsesCarryRateLimitHeaders(t *testing.T) {
	v := apitest.NewValidator(t)
	var ptrs []string
	for _, op := range v.Operations() {
		for _, s := range op.Statuses {
			ptrs = append(ptrs, op.Pointer+apitest.Pointer("responses", strconv.Itoa(s)))
		}
	}
	comps, _ := v.Doc()["components"].(map[string]any)["responses"].(map[string]any)
	for name := range comps {
		ptrs = append(ptrs, apitest.Pointer("components", "responses", name))
	}
	for _, p := range ptrs {
		t.Run(p, func(t *testing.T) {
			resp := resolve(t, v.Doc(), p)
			headers, _ := resp["headers"].(map[string]any)
			for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
				ref, _ := headers[h].(map[string]any)["$ref"].(string)
				if want := "#/components/headers/" + h; ref != want {
					t.Errorf("header %s: $ref %q, want %q", h, ref, want)
				}
			}
		})
	}
}

// TestSpecSchemasCompile compiles every schema of the document: components, parameters,
// headers, request and response bodies, event data.
func TestSpecSchemasCompile(t *testing.T) {
	v := apitest.NewValidator(t)
	ptrs := schemaPointers(v.Doc())
	if len(ptrs) < 100 {
		t.Fatalf("found only %d schemas; the walk is broken", len(ptrs))
	}
	for _, p := range ptrs {
		if _, err := v.Schema(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// schemaPointers walks the non-schema parts of the document and returns where schemas sit.
func schemaPointers(doc map[string]any) []string {
	var out []string
	var walk func(node any, ptr string)
	walk = func(node any, ptr string) {
		switch n := node.(type) {
		case map[string]any:
			for k, child := range n {
				p := ptr + apitest.Pointer(k)
				if k == "schema" || k == "x-event-data" || ptr == "/components/schemas" {
					out = append(out, p)
					continue
				}
				walk(child, p)
			}
		case []any:
			for i, child := range n {
				walk(child, ptr+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "")
	slices.Sort(out)
	return out
}

// TestSpecSchemasStrict: every object schema closes its properties, so an answer that
// grows a field fails validation until the spec says so; and required names only declared
// properties.
func TestSpecSchemasStrict(t *testing.T) {
	v := apitest.NewValidator(t)
	open := map[string]bool{
		// The served document itself: it has many more keys than the few checked.
		"/components/schemas/OpenAPIDocument": true,
	}
	for _, p := range schemaPointers(v.Doc()) {
		node, _ := lookup(v.Doc(), p)
		walkSchema(node, p, func(s map[string]any, ptr string) {
			props, hasProps := s["properties"].(map[string]any)
			if s["type"] == "object" && hasProps && !open[ptr] && s["additionalProperties"] != false {
				t.Errorf("%s: object schema without additionalProperties: false", ptr)
			}
			if req, ok := s["required"].([]any); ok && hasProps && s["type"] == "object" {
				for _, r := range req {
					if _, ok := props[r.(string)]; !ok {
						t.Errorf("%s: required %q is not a property", ptr, r)
					}
				}
			}
		})
	}
}

// walkSchema calls fn on a schema and each of its subschemas.
func walkSchema(node any, ptr string, fn func(map[string]any, string)) {
	s, ok := node.(map[string]any)
	if !ok {
		return
	}
	fn(s, ptr)
	for _, kw := range []string{"properties", "patternProperties", "$defs"} {
		m, _ := s[kw].(map[string]any)
		for k, sub := range m {
			walkSchema(sub, ptr+apitest.Pointer(kw, k), fn)
		}
	}
	for _, kw := range []string{"allOf", "anyOf", "oneOf"} {
		l, _ := s[kw].([]any)
		for i, sub := range l {
			walkSchema(sub, ptr+"/"+kw+"/"+strconv.Itoa(i), fn)
		}
	}
	for _, kw := range []string{"items", "additionalProperties", "not", "if", "then", "else", "contains"} {
		walkSchema(s[kw], ptr+"/"+kw, fn)
	}
}

// TestSpecSchemasMatchGoTypes keeps the schemas and the Go wire types equal: the same JSON
// names, the same JSON types, required exactly where Go always emits the field (no
// omitempty), and nullable exactly where Go can emit null (a pointer without omitempty).
func TestSpecSchemasMatchGoTypes(t *testing.T) {
	v := apitest.NewValidator(t)
	tests := []struct {
		schema string
		goType any
		// request: the Go fields are pointers that only tell "absent" from zero, so
		// requiredness comes from validation, not from the type.
		request bool
		// exclude: Go fields the schema leaves out (secrets a list never shows).
		exclude []string
		// alsoRequired: omitempty fields the schema requires anyway.
		alsoRequired []string
	}{
		{schema: "Cluster", goType: v1.Cluster{}},
		{schema: "ClusterList", goType: v1.ClusterList{}},
		{schema: "Node", goType: v1.Node{}},
		{schema: "NodeList", goType: v1.NodeList{}},
		{schema: "Event", goType: v1.Event{}},
		{schema: "EventList", goType: v1.EventList{}},
		{schema: "KubernetesVersion", goType: v1.KubernetesVersion{}},
		{schema: "KubernetesVersionList", goType: v1.KubernetesVersionList{}},
		{schema: "Token", goType: v1.Token{}, exclude: []string{"token"}},
		{schema: "CreatedToken", goType: v1.Token{}, alsoRequired: []string{"token"}},
		{schema: "TokenList", goType: v1.TokenList{}},
		{schema: "Network", goType: v1.Network{}},
		{schema: "Infra", goType: v1.Infra{}},
		{schema: "InfraList", goType: v1.InfraList{}},
		{schema: "JoinToken", goType: v1.JoinToken{}, exclude: []string{"token", "command"}},
		{schema: "CreatedJoinToken", goType: v1.JoinToken{}, alsoRequired: []string{"token", "command"}},
		{schema: "JoinTokenList", goType: v1.JoinTokenList{}},
		{schema: "Disk", goType: v1.Disk{}},
		{schema: "NIC", goType: v1.NIC{}},
		{schema: "Host", goType: v1.Host{}},
		{schema: "HostList", goType: v1.HostList{}},
		{schema: "Member", goType: v1.Member{}},
		{schema: "MemberList", goType: v1.MemberList{}},
		{schema: "Error", goType: v1.Error{}},
		{schema: "CreateClusterRequest", goType: v1.CreateClusterRequest{}, request: true},
		{schema: "PatchClusterRequest", goType: v1.PatchClusterRequest{}, request: true},
		{schema: "UpgradeClusterRequest", goType: v1.UpgradeClusterRequest{}, request: true},
		{schema: "CreateTokenRequest", goType: v1.CreateTokenRequest{}, request: true},
		{schema: "CreateInfraRequest", goType: v1.CreateInfraRequest{}, request: true},
		{schema: "CreateJoinTokenRequest", goType: v1.CreateJoinTokenRequest{}, request: true},
		{schema: "AddMemberRequest", goType: v1.AddMemberRequest{}},
	}
	for _, tc := range tests {
		t.Run(tc.schema, func(t *testing.T) {
			ptr := apitest.Pointer("components", "schemas", tc.schema)
			s := resolve(t, v.Doc(), ptr)
			props, _ := s["properties"].(map[string]any)
			var gotProps, gotRequired []string
			for name := range props {
				gotProps = append(gotProps, name)
			}
			req, _ := s["required"].([]any)
			for _, r := range req {
				gotRequired = append(gotRequired, r.(string))
			}
			var wantProps, wantRequired []string
			rt := reflect.TypeOf(tc.goType)
			for i := range rt.NumField() {
				f := rt.Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "" || name == "-" || slices.Contains(tc.exclude, name) {
					continue
				}
				wantProps = append(wantProps, name)
				// omitzero leaves the field out like omitempty does (a zero time.Time
				// included), so either makes it optional.
				optList := strings.Split(opts, ",")
				omitempty := slices.Contains(optList, "omitempty") || slices.Contains(optList, "omitzero")
				if !omitempty || slices.Contains(tc.alsoRequired, name) {
					wantRequired = append(wantRequired, name)
				}
				t.Run(name, func(t *testing.T) {
					checkJSONType(t, v.Doc(), props[name], f.Type, tc.request, omitempty)
				})
			}
			slices.Sort(gotProps)
			slices.Sort(wantProps)
			if diff := cmp.Diff(wantProps, gotProps); diff != "" {
				t.Errorf("properties of %s vs json tags of %T (-go +spec):\n%s", tc.schema, tc.goType, diff)
			}
			if tc.request {
				return
			}
			slices.Sort(gotRequired)
			slices.Sort(wantRequired)
			if diff := cmp.Diff(wantRequired, gotRequired); diff != "" {
				t.Errorf("required of %s vs fields without omitempty in %T (-go +spec):\n%s", tc.schema, tc.goType, diff)
			}
		})
	}
}

var timeType = reflect.TypeOf(time.Time{})

// checkJSONType compares a property schema's JSON type with what encoding/json emits for a
// Go type.
func checkJSONType(t *testing.T, doc map[string]any, prop any, gt reflect.Type, request, omitempty bool) {
	t.Helper()
	types := schemaTypes(doc, prop)
	nullable := slices.Contains(types, "null")
	types = slices.DeleteFunc(types, func(s string) bool { return s == "null" })
	isPtr := gt.Kind() == reflect.Pointer
	if isPtr {
		gt = gt.Elem()
	}
	var want string
	switch {
	case gt == timeType:
		want = "string"
		if !hasFormat(doc, prop, "date-time") {
			t.Errorf("a time.Time field must have format date-time")
		}
	case gt.Kind() == reflect.String:
		want = "string"
	case gt.Kind() == reflect.Bool:
		want = "boolean"
	case gt.Kind() >= reflect.Int && gt.Kind() <= reflect.Uint64:
		want = "integer"
	case gt.Kind() == reflect.Slice:
		want = "array"
	case gt.Kind() == reflect.Map, gt.Kind() == reflect.Struct:
		want = "object"
	default:
		t.Fatalf("no JSON type for Go type %v", gt)
	}
	if !slices.Equal(types, []string{want}) {
		t.Errorf("schema type %q, Go %v is emitted as %s", types, gt, want)
	}
	// Go emits null for a nil pointer it is not told to omit; a request accepts null for any
	// pointer, but the spec only promises it where DESIGN.md does (token expires).
	if !request {
		if goNull := isPtr && !omitempty; goNull != nullable {
			t.Errorf("nullable=%v in the spec, but Go can emit null: %v", nullable, goNull)
		}
	}
}

// schemaTypes returns a schema's "type", following $ref and allOf, or inferring it from
// const or enum.
func schemaTypes(doc map[string]any, node any) []string {
	s, ok := node.(map[string]any)
	if !ok {
		return nil
	}
	if ref, ok := s["$ref"].(string); ok {
		target, _ := lookup(doc, strings.TrimPrefix(ref, "#"))
		return schemaTypes(doc, target)
	}
	switch ty := s["type"].(type) {
	case string:
		return []string{ty}
	case []any:
		var out []string
		for _, x := range ty {
			out = append(out, x.(string))
		}
		return out
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			if ts := schemaTypes(doc, sub); ts != nil {
				return ts
			}
		}
	}
	var values []any
	if c, ok := s["const"]; ok {
		values = []any{c}
	}
	if e, ok := s["enum"].([]any); ok {
		values = e
	}
	var out []string
	for _, val := range values {
		var ty string
		switch val.(type) {
		case string:
			ty = "string"
		case bool:
			ty = "boolean"
		case json.Number, float64:
			ty = "integer"
		}
		if !slices.Contains(out, ty) {
			out = append(out, ty)
		}
	}
	return out
}

func hasFormat(doc map[string]any, node any, format string) bool {
	s, ok := node.(map[string]any)
	if !ok {
		return false
	}
	if ref, ok := s["$ref"].(string); ok {
		target, _ := lookup(doc, strings.TrimPrefix(ref, "#"))
		return hasFormat(doc, target, format)
	}
	return s["format"] == format
}

// TestSpecSchemaExamples pins down what some schemas mean, so that an edit that loosens
// them (a secret in a token list, an unknown error code) is caught here rather than in
// production.
func TestSpecSchemaExamples(t *testing.T) {
	v := apitest.NewValidator(t)
	cluster := `{"id":"cls_abc","name":"production","status":"running","phase":"managed","control_planes":3,"workers":5,
		"node_size":"large","node_count":8,"endpoint":"https://10.0.0.5:6443","kubernetes_version":"v1.37.2",
		"infra_id":"infra_managed","created_at":"2026-03-01T10:00:00Z","updated_at":"2026-03-01T10:05:00Z"}`
	token := `{"id":"tok_abc","name":"ci","permissions":["read"],"scope":"*","plan":"community","expires_at":null,"created_at":"2026-03-01T10:00:00Z"`
	member := `{"id":"node-1","raft_address":"127.0.0.1:7000","role":"leader","voter":true,"leader":true,"reachable":true,"applied_index":12`
	tests := []struct {
		name, schema, instance string
		valid                  bool
	}{
		{"seed cluster", "Cluster", cluster, true},
		{"cluster with an unknown field", "Cluster", strings.Replace(cluster, `"id"`, `"extra":1,"id"`, 1), false},
		{"cluster without endpoint", "Cluster", strings.Replace(cluster, `"endpoint":"https://10.0.0.5:6443",`, "", 1), false},
		{"cluster with a local time", "Cluster", strings.Replace(cluster, "10:05:00Z", "10:05:00+02:00", 1), false},
		{"cluster with 2 control planes", "Cluster", strings.Replace(cluster, `"control_planes":3`, `"control_planes":2`, 1), false},
		{"listed token", "Token", token + "}", true},
		{"listed token with its secret", "Token", token + `,"token":"dpl_abc"}`, false},
		{"listed token without expires_at", "Token", strings.Replace(token, `"expires_at":null,`, "", 1) + "}", false},
		{"created token", "CreatedToken", token + `,"token":"dpl_abc"}`, true},
		{"created token without secret", "CreatedToken", token + "}", false},
		{"error", "Error", `{"error":"not_found","message":"cluster cls_x not found"}`, true},
		{"error with details", "Error", `{"error":"invalid_request","message":"bad","details":{"field":"name"}}`, true},
		{"error with an unknown code", "Error", `{"error":"teapot","message":"no"}`, false},
		{"error without message", "Error", `{"error":"internal"}`, false},
		{"versions with no default", "KubernetesVersionList", `{"items":[{"version":"v1.37.2","default":false}]}`, false},
		{"versions with two defaults", "KubernetesVersionList", `{"items":[{"version":"v1.37.2","default":true},{"version":"v1.36.6","default":true}]}`, false},
		{"versions", "KubernetesVersionList", `{"items":[{"version":"v1.37.2","default":true},{"version":"v1.36.6","default":false}]}`, true},
		{"name of 63", "Name", strconv.Quote(strings.Repeat("a", 63)), true},
		{"name of 64", "Name", strconv.Quote(strings.Repeat("a", 64)), false},
		{"name ending in a hyphen", "Name", `"a-"`, false},
		{"name with an underscore", "Name", `"a_b"`, false},
		{"create managed with infra_managed", "CreateClusterRequest", `{"name":"a","control_planes":1,"workers":1,"node_size":"small","infra_id":"infra_managed"}`, true},
		{"create managed on another infra", "CreateClusterRequest", `{"name":"a","control_planes":1,"workers":1,"node_size":"small","infra_id":"infra_x"}`, false},
		{"create onpremise without infra", "CreateClusterRequest", `{"name":"a","control_planes":1,"workers":1,"node_size":"small","phase":"onpremise"}`, false},
		{"create onpremise on the managed pool", "CreateClusterRequest", `{"name":"a","control_planes":1,"workers":1,"node_size":"small","phase":"onpremise","infra_id":"infra_managed"}`, false},
		{"admin token scoped to clusters", "CreateTokenRequest", `{"name":"a","permissions":["admin"],"scope":"cluster:*"}`, false},
		{"write token scoped to clusters", "CreateTokenRequest", `{"name":"a","permissions":["write"],"scope":"cluster:*"}`, true},
		{"token name of spaces", "CreateTokenRequest", `{"name":"   ","permissions":["read"]}`, false},
		{"token name with a newline", "CreateTokenRequest", `{"name":"a\nb","permissions":["read"]}`, false},
		{"token that never expires", "CreateTokenRequest", `{"name":"a b","permissions":["read"],"expires":null}`, true},
		{"empty patch", "PatchClusterRequest", `{}`, false},
		{"unknown write outcome", "Error", `{"error":"unavailable","message":"lost the leader","details":{"outcome":"unknown"}}`, true},
		{"failed write outcome", "Error", `{"error":"unavailable","message":"lost the leader","details":{"outcome":"failed"}}`, false},
		{"leader member", "Member", member + "}", true},
		{"follower member", "Member", strings.Replace(member, `"role":"leader","voter":true,"leader":true`, `"role":"follower","voter":true,"leader":false`, 1) + `,"last_contact":"2026-03-01T10:00:00.123Z"}`, true},
		{"member contacted in local time", "Member", member + `,"last_contact":"2026-03-01T12:00:00+02:00"}`, false},
		{"member without reachable", "Member", strings.Replace(member, `,"reachable":true`, "", 1) + "}", false},
		{"member of an unknown role", "Member", strings.Replace(member, `"role":"leader"`, `"role":"candidate"`, 1) + "}", false},
		{"add member", "AddMemberRequest", `{"id":"node-2","raft_address":"10.0.0.2:7000","http_address":"10.0.0.2:8080","grpc_address":"10.0.0.2:9090"}`, true},
		{"add member without raft address", "AddMemberRequest", `{"id":"node-2"}`, false},
		{"add member with a space in its id", "AddMemberRequest", `{"id":"node 2","raft_address":"10.0.0.2:7000"}`, false},
		{"add member with an id of 129", "AddMemberRequest", `{"id":"` + strings.Repeat("n", 129) + `","raft_address":"10.0.0.2:7000"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := v.Schema(apitest.Pointer("components", "schemas", tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.instance))
			if err != nil {
				t.Fatalf("instance: %v", err)
			}
			err = s.Validate(inst)
			if (err == nil) != tc.valid {
				t.Errorf("valid = %v, want %v (%v)", err == nil, tc.valid, err)
			}
		})
	}
}

func lookup(doc map[string]any, ptr string) (any, bool) { return apitest.Lookup(doc, ptr) }

// resolve follows $refs to an object of the document.
func resolve(t *testing.T, doc map[string]any, ptr string) map[string]any {
	t.Helper()
	for range 16 {
		node, ok := lookup(doc, ptr)
		if !ok {
			t.Fatalf("nothing at %s", ptr)
		}
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("%s is not an object", ptr)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		ptr = strings.TrimPrefix(ref, "#")
	}
	t.Fatalf("$ref loop at %s", ptr)
	return nil
}
