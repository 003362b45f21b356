// Package apitest checks real HTTP exchanges against the OpenAPI contract (api/openapi.yaml),
// so that any package's tests can fail when the server's answers drift from the document
// clients are written against. It validates JSON bodies with JSON Schema 2020-12, formats
// asserted, resolving $refs inside the one document.
package apitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/deployme/deployme/api"
)

// specURL names the document inside the schema compiler; nothing is fetched from it.
const specURL = "https://deployme.invalid/v1/openapi.json"

// methods are the operation keys of a path item, in the order an Allow header sorts them.
var methods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}

// Operation is one method and path of the spec.
type Operation struct {
	Method, Path string
	// ID is the operationId.
	ID string
	// Access is the x-access extension: public, token, cluster-read, cluster-write,
	// global-read or admin.
	Access string
	// Public tells whether the operation overrides the global security with none.
	Public bool
	// Statuses are the documented response statuses, ascending.
	Statuses []int
	// Pointer is the JSON pointer of the operation object in the document.
	Pointer string
}

// Exchange is one validated answer, recorded so tests can tell what they exercised.
type Exchange struct {
	Method, Path string // Path is the spec's template, "" for a path the spec does not list
	Status       int
}

// Validator checks requests and answers against the spec. It is safe for concurrent use.
type Validator struct {
	doc   map[string]any
	paths []string // templates, as in the document

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema
	seen     map[Exchange]int
}

// NewValidator loads the embedded spec; it fails the test if the spec cannot be loaded.
func NewValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := New()
	if err != nil {
		t.Fatalf("load OpenAPI spec: %v", err)
	}
	return v
}

// New loads the embedded spec.
func New() (*Validator, error) {
	raw, err := api.SpecJSON()
	if err != nil {
		return nil, fmt.Errorf("spec to JSON: %w", err)
	}
	// The schema library's own decoder keeps numbers as json.Number, which it needs to
	// compare integers exactly.
	docAny, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode spec: %w", err)
	}
	doc, ok := docAny.(map[string]any)
	if !ok {
		return nil, errors.New("spec is not a JSON object")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// Formats are annotations by default in 2020-12; the contract means them (date-time).
	c.AssertFormat()
	if err := c.AddResource(specURL, doc); err != nil {
		return nil, fmt.Errorf("add spec to schema compiler: %w", err)
	}
	v := &Validator{doc: doc, compiler: c, schemas: map[string]*jsonschema.Schema{}, seen: map[Exchange]int{}}
	paths, _ := doc["paths"].(map[string]any)
	for p := range paths {
		v.paths = append(v.paths, p)
	}
	slices.Sort(v.paths)
	return v, nil
}

// Doc is the decoded spec (numbers as json.Number). Callers must not modify it.
func (v *Validator) Doc() map[string]any { return v.doc }

// Operations lists the spec's operations sorted by path then method.
func (v *Validator) Operations() []Operation {
	var out []Operation
	for _, p := range v.paths {
		item, _ := v.doc["paths"].(map[string]any)[p].(map[string]any)
		for _, m := range methods {
			op, ok := item[strings.ToLower(m)].(map[string]any)
			if !ok {
				continue
			}
			o := Operation{Method: m, Path: p, Pointer: Pointer("paths", p, strings.ToLower(m))}
			o.ID, _ = op["operationId"].(string)
			o.Access, _ = op["x-access"].(string)
			if sec, ok := op["security"].([]any); ok && len(sec) == 0 {
				o.Public = true
			}
			resps, _ := op["responses"].(map[string]any)
			for code := range resps {
				if n, err := strconv.Atoi(code); err == nil {
					o.Statuses = append(o.Statuses, n)
				}
			}
			slices.Sort(o.Statuses)
			out = append(out, o)
		}
	}
	return out
}

// Seen returns how many times each (method, template, status) was validated by Check.
func (v *Validator) Seen() map[Exchange]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[Exchange]int, len(v.seen))
	for k, n := range v.seen {
		out[k] = n
	}
	return out
}

// Pointer builds a JSON pointer from unescaped tokens.
func Pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// Schema compiles the schema at a JSON pointer of the document (e.g.
// "/components/schemas/Cluster"); $refs resolve within the document.
func (v *Validator) Schema(pointer string) (*jsonschema.Schema, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.schemas[pointer]; ok {
		return s, nil
	}
	// The fragment is percent-decoded by the compiler, and path templates hold braces.
	var frag strings.Builder
	for i, tok := range strings.Split(pointer, "/") {
		if i > 0 {
			frag.WriteByte('/')
		}
		frag.WriteString(url.PathEscape(tok))
	}
	s, err := v.compiler.Compile(specURL + "#" + frag.String())
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", pointer, err)
	}
	v.schemas[pointer] = s
	return s, nil
}

// lookup returns the node at a JSON pointer.
func (v *Validator) lookup(pointer string) (any, bool) { return Lookup(v.doc, pointer) }

// Lookup returns the node of a decoded JSON document at a JSON pointer (RFC 6901).
func Lookup(doc any, pointer string) (any, bool) {
	node := doc
	if pointer == "" {
		return node, true
	}
	for _, tok := range strings.Split(pointer, "/")[1:] {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			var ok bool
			if node, ok = n[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			node = n[i]
		default:
			return nil, false
		}
	}
	return node, true
}

// resolve follows $ref (non-schema objects: responses, parameters, headers) to the object
// and its pointer.
func (v *Validator) resolve(pointer string) (map[string]any, string, error) {
	for range 16 {
		node, ok := v.lookup(pointer)
		if !ok {
			return nil, "", fmt.Errorf("spec has nothing at %s", pointer)
		}
		m, ok := node.(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("spec node at %s is not an object", pointer)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, pointer, nil
		}
		if !strings.HasPrefix(ref, "#/") {
			return nil, "", fmt.Errorf("%s: only local $refs are supported, not %q", pointer, ref)
		}
		pointer = ref[1:]
	}
	return nil, "", fmt.Errorf("$ref chain too long at %s", pointer)
}

// Match returns the spec's path template for a concrete path such as
// /v1/clusters/cls_x/nodes (a query string is ignored). A template with more literal
// segments wins over one with more parameters.
func (v *Validator) Match(path string) (string, bool) {
	path, _, _ = strings.Cut(path, "?")
	segs := strings.Split(path, "/")
	best, bestLit := "", -1
	for _, tmpl := range v.paths {
		ts := strings.Split(tmpl, "/")
		if len(ts) != len(segs) {
			continue
		}
		lit, ok := 0, true
		for i, t := range ts {
			if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
				if segs[i] == "" {
					ok = false
					break
				}
				continue
			}
			if t != segs[i] {
				ok = false
				break
			}
			lit++
		}
		if ok && lit > bestLit {
			best, bestLit = tmpl, lit
		}
	}
	return best, bestLit >= 0
}

// allowed lists the methods the spec gives a path template, as an Allow header would.
func (v *Validator) allowed(tmpl string) []string {
	item, _ := v.doc["paths"].(map[string]any)[tmpl].(map[string]any)
	var out []string
	for _, m := range methods {
		if _, ok := item[strings.ToLower(m)]; ok {
			out = append(out, m)
		}
	}
	return out
}

// Check validates one answer: the operation for method and the concrete path, the response
// for status (an undocumented status is an error), its required headers and their values,
// the Content-Type, and the body against the response schema. For a path the spec does not
// list, or a method it does not list for the path, the answer must be the documented
// NotFound / MethodNotAllowed (with an Allow header equal to the spec's methods),
// Unauthorized or TooManyRequests response. body may be a prefix of an event stream: only
// complete events are checked.
func (v *Validator) Check(method, path string, status int, header http.Header, body []byte) error {
	tmpl, ok := v.Match(path)
	where := fmt.Sprintf("%s %s -> %d", method, path, status)
	var respPtr string
	switch {
	case !ok:
		generic := map[int]string{401: "Unauthorized", 404: "NotFound", 429: "TooManyRequests"}
		name, ok := generic[status]
		if !ok {
			return fmt.Errorf("%s: the spec lists no such path, and %d is not how an unknown path is answered", where, status)
		}
		respPtr = Pointer("components", "responses", name)
	default:
		item, _ := v.doc["paths"].(map[string]any)[tmpl].(map[string]any)
		if _, ok := item[strings.ToLower(method)]; !ok {
			generic := map[int]string{401: "Unauthorized", 405: "MethodNotAllowed", 429: "TooManyRequests"}
			name, ok := generic[status]
			if !ok {
				return fmt.Errorf("%s: the spec has no %s on %s, and %d is not how an unlisted method is answered", where, method, tmpl, status)
			}
			if status == http.StatusMethodNotAllowed {
				got := splitList(header.Get("Allow"))
				if want := v.allowed(tmpl); !slices.Equal(got, want) {
					return fmt.Errorf("%s: Allow is %q, the spec lists %q for %s", where, header.Get("Allow"), strings.Join(want, ", "), tmpl)
				}
			}
			respPtr = Pointer("components", "responses", name)
			break
		}
		opPtr := Pointer("paths", tmpl, strings.ToLower(method))
		where = fmt.Sprintf("%s %s (%s) -> %d", method, path, tmpl, status)
		resps, _ := v.lookup(opPtr + "/responses")
		rm, _ := resps.(map[string]any)
		code := strconv.Itoa(status)
		switch {
		case rm[code] != nil:
		case rm[code[:1]+"XX"] != nil:
			code = code[:1] + "XX"
		case rm["default"] != nil:
			code = "default"
		default:
			return fmt.Errorf("%s: status %d is not documented for %s %s", where, status, method, tmpl)
		}
		respPtr = opPtr + Pointer("responses", code)
	}
	if ok {
		v.record(Exchange{Method: method, Path: tmpl, Status: status})
	} else {
		v.record(Exchange{Method: method, Status: status})
	}
	if err := v.checkResponse(respPtr, header, body); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

func (v *Validator) record(e Exchange) {
	v.mu.Lock()
	v.seen[e]++
	v.mu.Unlock()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (v *Validator) checkResponse(respPtr string, header http.Header, body []byte) error {
	resp, respPtr, err := v.resolve(respPtr)
	if err != nil {
		return err
	}
	var errs []error
	hdrs, _ := resp["headers"].(map[string]any)
	for _, name := range sortedKeys(hdrs) {
		h, hPtr, err := v.resolve(respPtr + Pointer("headers", name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vals := header.Values(name)
		if len(vals) == 0 {
			if req, _ := h["required"].(bool); req {
				errs = append(errs, fmt.Errorf("header %s is required but missing", name))
			}
			continue
		}
		if len(vals) > 1 {
			errs = append(errs, fmt.Errorf("header %s is sent %d times", name, len(vals)))
			continue
		}
		if _, ok := h["schema"]; ok {
			if err := v.validateString(hPtr+"/schema", vals[0]); err != nil {
				errs = append(errs, fmt.Errorf("header %s: %w", name, err))
			}
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) != 0 {
			errs = append(errs, fmt.Errorf("the spec documents no body, got %d bytes: %.200q", len(body), body))
		}
		return errors.Join(errs...)
	}
	ct := header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("Content-Type %q: %v (the spec lists %q)", ct, err, sortedKeys(content)))...)
	}
	if _, ok := content[mt]; !ok {
		return errors.Join(append(errs, fmt.Errorf("Content-Type %q is not one the spec lists: %q", mt, sortedKeys(content)))...)
	}
	mtPtr := respPtr + Pointer("content", mt)
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if err := v.validateJSON(mtPtr+"/schema", body); err != nil {
			errs = append(errs, fmt.Errorf("body: %w", err))
		}
	case mt == "text/event-stream":
		if err := v.checkEventStream(mtPtr, body); err != nil {
			errs = append(errs, err)
		}
	default:
		if err := v.validateValue(mtPtr+"/schema", string(body)); err != nil {
			errs = append(errs, fmt.Errorf("body: %w", err))
		}
	}
	return errors.Join(errs...)
}

// checkEventStream validates the data of each complete event against the x-event-data
// schema of the media type.
func (v *Validator) checkEventStream(mtPtr string, body []byte) error {
	mtObj, _ := v.lookup(mtPtr)
	m, _ := mtObj.(map[string]any)
	if _, ok := m["x-event-data"]; !ok {
		return nil
	}
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	frames := strings.Split(text, "\n\n")
	// The last piece is an event still being received (or empty).
	frames = frames[:len(frames)-1]
	var errs []error
	for i, f := range frames {
		var data []string
		for _, line := range strings.Split(f, "\n") {
			if strings.HasPrefix(line, ":") {
				continue // a comment (keepalive)
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "data":
				data = append(data, value)
			case "id", "event", "retry", "":
			default:
				errs = append(errs, fmt.Errorf("event %d: unknown field %q", i, field))
			}
		}
		if data == nil {
			continue
		}
		if err := v.validateJSON(mtPtr+"/x-event-data", []byte(strings.Join(data, "\n"))); err != nil {
			errs = append(errs, fmt.Errorf("event %d data: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func (v *Validator) validateJSON(schemaPtr string, body []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %v: %.200q", err, body)
	}
	return v.validateValue(schemaPtr, inst)
}

func (v *Validator) validateValue(schemaPtr string, inst any) error {
	s, err := v.Schema(schemaPtr)
	if err != nil {
		return err
	}
	if err := s.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			// The detailed form names each failing keyword and instance location.
			return fmt.Errorf("%#v", ve)
		}
		return err
	}
	return nil
}

// validateString validates a header, query or path value, which is text on the wire: as
// an integer where the schema wants one, else as a string.
func (v *Validator) validateString(schemaPtr, s string) error {
	sch, err := v.Schema(schemaPtr)
	if err != nil {
		return err
	}
	if wantsInteger(sch) {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		return v.validateValue(schemaPtr, json.Number(s))
	}
	return v.validateValue(schemaPtr, s)
}

// wantsInteger tells whether a schema, through $ref and allOf, has type integer.
func wantsInteger(s *jsonschema.Schema) bool {
	for range 16 {
		if s == nil {
			return false
		}
		if s.Types != nil {
			return slices.Contains(s.Types.ToStrings(), "integer")
		}
		if s.Ref != nil {
			s = s.Ref
			continue
		}
		if len(s.AllOf) > 0 {
			s = s.AllOf[0]
			continue
		}
		return false
	}
	return false
}

// CheckRequest validates a request the way a client written against the spec would build
// it: the operation exists; each query parameter is declared (the server rejects unknown
// ones), given once, and valid; declared headers and path parameters are valid; the body is
// present when required, absent when there is none, and valid against the schema.
func (v *Validator) CheckRequest(method, target string, header http.Header, body []byte) error {
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("target %q: %v", target, err)
	}
	tmpl, ok := v.Match(u.Path)
	if !ok {
		return fmt.Errorf("%s %s: the spec lists no such path", method, u.Path)
	}
	opPtr := Pointer("paths", tmpl, strings.ToLower(method))
	op, ok := v.lookup(opPtr)
	if !ok {
		return fmt.Errorf("%s %s: the spec has no %s on %s", method, u.Path, method, tmpl)
	}
	where := fmt.Sprintf("%s %s", method, target)
	var errs []error
	params := map[[2]string]string{} // (in, name) -> pointer of the resolved parameter
	for _, base := range []string{Pointer("paths", tmpl), opPtr} {
		node, _ := v.lookup(base + "/parameters")
		list, _ := node.([]any)
		for i := range list {
			p, pPtr, err := v.resolve(base + "/parameters/" + strconv.Itoa(i))
			if err != nil {
				return err
			}
			in, _ := p["in"].(string)
			name, _ := p["name"].(string)
			if in == "header" {
				name = http.CanonicalHeaderKey(name)
			}
			params[[2]string{in, name}] = pPtr
		}
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		errs = append(errs, fmt.Errorf("malformed query: %v", err))
	}
	for _, name := range sortedKeys(query) {
		pPtr, ok := params[[2]string{"query", name}]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("query parameter %q is not declared", name))
		case len(query[name]) > 1:
			errs = append(errs, fmt.Errorf("query parameter %q is given %d times", name, len(query[name])))
		default:
			if err := v.validateString(pPtr+"/schema", query[name][0]); err != nil {
				errs = append(errs, fmt.Errorf("query parameter %q: %w", name, err))
			}
		}
	}
	segs, tsegs := strings.Split(u.Path, "/"), strings.Split(tmpl, "/")
	for i, t := range tsegs {
		if name, ok := strings.CutPrefix(t, "{"); ok {
			name = strings.TrimSuffix(name, "}")
			if pPtr, ok := params[[2]string{"path", name}]; ok {
				if err := v.validateValue(pPtr+"/schema", segs[i]); err != nil {
					errs = append(errs, fmt.Errorf("path parameter %q: %w", name, err))
				}
			} else {
				errs = append(errs, fmt.Errorf("path parameter %q is not declared", name))
			}
		}
	}
	for key, pPtr := range params {
		if key[0] != "header" {
			continue
		}
		if val := header.Get(key[1]); val != "" {
			if err := v.validateString(pPtr+"/schema", val); err != nil {
				errs = append(errs, fmt.Errorf("header %s: %w", key[1], err))
			}
		}
	}
	_, hasBody := op.(map[string]any)["requestBody"]
	switch {
	case !hasBody && len(body) > 0:
		errs = append(errs, fmt.Errorf("the spec takes no request body, got %d bytes", len(body)))
	case hasBody:
		rb, rbPtr, err := v.resolve(opPtr + "/requestBody")
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(body)) == 0 {
			if req, _ := rb["required"].(bool); req {
				errs = append(errs, errors.New("the request body is required"))
			}
			break
		}
		if err := v.validateJSON(rbPtr+Pointer("content", "application/json", "schema"), body); err != nil {
			errs = append(errs, fmt.Errorf("request body: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", where, errors.Join(errs...))
	}
	return nil
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Transport returns an http.RoundTripper that validates every answer passing through base
// (http.DefaultTransport when nil) and reports drift with t.Errorf, so a test written with
// the typed client checks the contract as a side effect:
//
//	c := client.New(url, token).WithHTTPClient(&http.Client{Transport: v.Transport(t, nil)})
//
// An event stream is checked on its status and headers only: its body never ends.
func (v *Validator) Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &checkingTransport{v: v, t: t, base: base}
}

type checkingTransport struct {
	v    *Validator
	t    testing.TB
	base http.RoundTripper
}

func (c *checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		if err := c.v.Check(req.Method, req.URL.Path, resp.StatusCode, resp.Header, nil); err != nil {
			c.t.Errorf("answer drifts from api/openapi.yaml:\n%v", err)
		}
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read answer to check it: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := c.v.Check(req.Method, req.URL.Path, resp.StatusCode, resp.Header, body); err != nil {
		c.t.Errorf("answer drifts from api/openapi.yaml:\n%v", err)
	}
	return resp, nil
}
