// Package api holds the REST contract: openapi.yaml (OpenAPI 3.1), embedded and served, the
// wire types (v1), the handlers (rest) and the Go client (client).
package api

import (
	_ "embed"
	"sync"

	"sigs.k8s.io/yaml"
)

//go:embed openapi.yaml
var specYAML []byte

var specJSON = sync.OnceValues(func() ([]byte, error) { return yaml.YAMLToJSON(specYAML) })

// SpecYAML is the OpenAPI document as written.
func SpecYAML() []byte { return specYAML }

// SpecJSON is the OpenAPI document as JSON, as served at /v1/openapi.json.
func SpecJSON() ([]byte, error) { return specJSON() }
