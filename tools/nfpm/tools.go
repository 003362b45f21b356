//go:build tools

// Package tools pins nfpm's main package in this module's go.mod and go.sum, so that
// `make dist` builds github.com/goreleaser/nfpm/v2/cmd/nfpm at exactly the required
// version. The build tag keeps the file out of every ordinary build.
package tools

import _ "github.com/goreleaser/nfpm/v2/cmd/nfpm"
