package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"

	v1 "github.com/deployme/deployme/api/v1"
)

// MaxBodyBytes is the largest request body accepted (413 above).
const MaxBodyBytes = 1 << 20

// decodeBody reads a JSON object into dst (a pointer to a struct of pointer fields) and
// refuses bodies over 1 MiB, malformed JSON, non-objects, unknown fields and wrong types,
// naming the field where there is one.
func decodeBody(r *http.Request, dst any) error { return decode(r, dst, false) }

// decodeOptionalBody is decodeBody for endpoints whose body may be empty (every field has a
// default).
func decodeOptionalBody(r *http.Request, dst any) error { return decode(r, dst, true) }

func decode(r *http.Request, dst any, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return v1.Errorf(v1.CodePayloadTooLarge, "request body is larger than %d bytes", MaxBodyBytes)
		}
		return v1.Errorf(v1.CodeInvalidRequest, "cannot read request body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return v1.Errorf(v1.CodeInvalidRequest, "request body is required (a JSON object)")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return v1.Errorf(v1.CodeInvalidRequest, "malformed JSON at byte %d", se.Offset).With("offset", se.Offset)
		}
		return v1.Errorf(v1.CodeInvalidRequest, "request body must be a JSON object")
	}
	if fields == nil {
		return v1.Errorf(v1.CodeInvalidRequest, "request body must be a JSON object")
	}
	if err := checkFields(fields, reflect.TypeOf(dst).Elem(), ""); err != nil {
		return err
	}
	if err := json.Unmarshal(body, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return v1.InvalidField(te.Field, "field %q must be %s", te.Field, jsonKind(te.Type))
		}
		return v1.Errorf(v1.CodeInvalidRequest, "invalid request body")
	}
	return nil
}

// checkFields refuses keys that t does not declare, descending into nested objects so that
// "network.mtuu" is named as precisely as "nmae".
func checkFields(fields map[string]json.RawMessage, t reflect.Type, prefix string) error {
	known := jsonFields(t)
	// Sorted, so a body with several bad keys always names the same one.
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		raw := fields[name]
		ft, ok := known[name]
		if !ok {
			return v1.InvalidField(prefix+name, "unknown field %q", prefix+name)
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			// Arrays of objects (network.bonds) are checked element by element.
			var items []json.RawMessage
			if json.Unmarshal(raw, &items) != nil {
				continue // the typed decode names the field
			}
			for i, item := range items {
				var nested map[string]json.RawMessage
				if json.Unmarshal(item, &nested) == nil && nested != nil {
					if err := checkFields(nested, ft.Elem(), fmt.Sprintf("%s%s[%d].", prefix, name, i)); err != nil {
						return err
					}
				}
			}
			continue
		}
		if ft.Kind() != reflect.Struct {
			continue
		}
		var nested map[string]json.RawMessage
		if json.Unmarshal(raw, &nested) == nil && nested != nil {
			if err := checkFields(nested, ft, prefix+name+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of a struct type's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = t.Field(i).Type
		}
	}
	return out
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of type " + t.String()
}
