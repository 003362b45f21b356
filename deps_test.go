// Package deployme_test enforces the import rules of STYLE.md on the whole module, from the
// package list `go list -deps -json ./...` reports (production code; tests may import
// more, and cmd/ and test/ may import anything).
package deployme_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const module = "github.com/deployme/deployme"

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath string
	Imports    []string // direct
	Deps       []string // transitive
}

// rule forbids some packages of ours (from) to depend on others.
type rule struct {
	// from tells whether a package (path relative to the module, e.g. "agent/steps") is
	// subject to the rule.
	from func(rel string) bool
	// forbidden tells whether an import path is off limits to it.
	forbidden func(importPath string) bool
	// direct checks only direct imports, of the package and of every package of ours it
	// depends on; otherwise the whole dependency closure is checked. Direct is for
	// standard-library transports that third-party dependencies (hashicorp/raft's metrics)
	// legitimately pull in.
	direct bool
	why    string
}

func under(prefix string) func(string) bool {
	return func(rel string) bool { return rel == prefix || strings.HasPrefix(rel, prefix+"/") }
}

func ours(importPath string) bool {
	return importPath == module || strings.HasPrefix(importPath, module+"/")
}

func oursUnder(prefix string) func(string) bool {
	return func(p string) bool { return ours(p) && under(prefix)(strings.TrimPrefix(p, module+"/")) }
}

func anyOf(preds ...func(string) bool) func(string) bool {
	return func(s string) bool {
		for _, p := range preds {
			if p(s) {
				return true
			}
		}
		return false
	}
}

func exactly(paths ...string) func(string) bool {
	return func(s string) bool { return slices.Contains(paths, s) }
}

func pathUnder(prefix string) func(string) bool {
	return func(s string) bool { return s == prefix || strings.HasPrefix(s, prefix+"/") }
}

// rules are STYLE.md's "Dependencies flow one way". cmd/ and test/ are subject to none.
var rules = []rule{
	{from: anyOf(under("agent"), under("pxe")), forbidden: oursUnder("coordinator"),
		why: "agent and pxe never import coordinator: they run on fleet hosts and boot images"},
	{from: under("api"), forbidden: oursUnder("coordinator"),
		why: "api is the REST contract only and never imports coordinator"},
	{from: exactly("coordinator/state"), forbidden: ours,
		why: "coordinator/state imports nothing of ours, so the FSM and the planner can use it anywhere"},
	{from: exactly("coordinator/fsm"), forbidden: anyOf(pathUnder("net/http"), pathUnder("google.golang.org/grpc"), oursUnder("api/rest")), direct: true,
		why: "coordinator/fsm never imports a transport: Apply must stay deterministic and free of I/O"},
	{from: exactly("coordinator/fsm"), forbidden: anyOf(pathUnder("google.golang.org/grpc"), oursUnder("api/rest")),
		why: "coordinator/fsm never imports a transport: Apply must stay deterministic and free of I/O"},
}

// check returns one message per forbidden dependency, naming the package, the forbidden
// import and the chain of imports that leads to it.
func check(pkgs []pkg) []string {
	byPath := map[string]pkg{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	var out []string
	for _, p := range pkgs {
		if !ours(p.ImportPath) {
			continue
		}
		rel := strings.TrimPrefix(p.ImportPath, module+"/")
		for _, r := range rules {
			if !r.from(rel) {
				continue
			}
			seen := map[string]bool{}
			if r.direct {
				// The package and each package of ours it depends on, direct imports only.
				for _, q := range append([]string{p.ImportPath}, p.Deps...) {
					if !ours(q) {
						continue
					}
					for _, imp := range byPath[q].Imports {
						if r.forbidden(imp) && !seen[imp] {
							seen[imp] = true
							out = append(out, violation(byPath, p.ImportPath, imp, r.why))
						}
					}
				}
				continue
			}
			for _, dep := range p.Deps {
				if r.forbidden(dep) && !seen[dep] {
					seen[dep] = true
					out = append(out, violation(byPath, p.ImportPath, dep, r.why))
				}
			}
		}
	}
	// The two fsm rules overlap on grpc; one message per offence is enough.
	slices.Sort(out)
	return slices.Compact(out)
}

func violation(byPath map[string]pkg, from, to, why string) string {
	return fmt.Sprintf("%s imports %s (via %s): %s", short(from), short(to), strings.Join(chain(byPath, from, to), " -> "), why)
}

func short(p string) string {
	if ours(p) {
		return strings.TrimPrefix(p, module+"/")
	}
	return p
}

// chain finds the shortest import chain from one package to another (breadth first).
func chain(byPath map[string]pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for p := to; p != ""; p = prev[p] {
				path = append([]string{short(p)}, path...)
			}
			return path
		}
		for _, imp := range byPath[cur].Imports {
			if _, ok := prev[imp]; !ok {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	return []string{short(from), "?", short(to)}
}

// goList runs `go list -deps -json ./...` in the module root (this directory).
func goList(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	// The checker is proved first on planted violations, so a pass on the module means
	// something.
	t.Run("checker catches planted violations", testCheckCatchesViolations)
	t.Run("module", testModule)
}

func testModule(t *testing.T) {
	pkgs := goList(t)
	// A broken listing would pass vacuously: make sure the rules' subjects are there.
	listed := map[string]bool{}
	for _, p := range pkgs {
		listed[p.ImportPath] = true
	}
	for _, want := range []string{"coordinator/state", "coordinator/fsm", "api/rest", "api/client", "cmd/coordinator"} {
		if !listed[module+"/"+want] {
			t.Fatalf("go list did not report %s; the check would prove nothing", want)
		}
	}
	for _, v := range check(pkgs) {
		t.Error(v)
	}
}

// testCheckCatchesViolations proves the checker on a fabricated module: each rule fires on
// a planted violation, names the offending import and its chain, and allowed imports
// (cmd importing everything, fsm depending on raft which uses net/http) pass.
func testCheckCatchesViolations(t *testing.T) {
	m := func(rel string) string { return module + "/" + rel }
	pkgs := []pkg{
		{ImportPath: m("agent/steps"), Imports: []string{m("internal/helper")}, Deps: []string{m("internal/helper"), m("coordinator/state")}},
		{ImportPath: m("internal/helper"), Imports: []string{m("coordinator/state")}, Deps: []string{m("coordinator/state")}},
		{ImportPath: m("pxe/tftp"), Imports: []string{"net"}, Deps: []string{"net"}},
		{ImportPath: m("api/client"), Imports: []string{m("api/v1"), m("coordinator/service")}, Deps: []string{m("api/v1"), m("coordinator/service"), m("coordinator/state")}},
		{ImportPath: m("api/v1"), Imports: []string{"time"}, Deps: []string{"time"}},
		{ImportPath: m("coordinator/service"), Imports: []string{m("coordinator/state")}, Deps: []string{m("coordinator/state")}},
		{ImportPath: m("coordinator/state"), Imports: []string{"time", m("internal/logkey")}, Deps: []string{"time", m("internal/logkey")}},
		{ImportPath: m("internal/logkey")},
		{ImportPath: m("coordinator/fsm"),
			Imports: []string{m("coordinator/state"), "github.com/hashicorp/raft", m("coordinator/fsm/wire")},
			Deps:    []string{m("coordinator/state"), m("internal/logkey"), "github.com/hashicorp/raft", "github.com/hashicorp/go-metrics", "net/http", m("coordinator/fsm/wire"), "google.golang.org/grpc"}},
		{ImportPath: m("coordinator/fsm/wire"), Imports: []string{"net/http", "google.golang.org/grpc"}, Deps: []string{"net/http", "google.golang.org/grpc"}},
		{ImportPath: "github.com/hashicorp/raft", Imports: []string{"github.com/hashicorp/go-metrics"}},
		{ImportPath: "github.com/hashicorp/go-metrics", Imports: []string{"net/http"}},
		{ImportPath: m("cmd/coordinator"), Imports: []string{m("coordinator/fsm"), m("api/client"), m("agent/steps")}},
	}
	fsmWhy := "coordinator/fsm never imports a transport: Apply must stay deterministic and free of I/O"
	want := []string{
		"agent/steps imports coordinator/state (via agent/steps -> internal/helper -> coordinator/state): agent and pxe never import coordinator: they run on fleet hosts and boot images",
		"api/client imports coordinator/service (via api/client -> coordinator/service): api is the REST contract only and never imports coordinator",
		"api/client imports coordinator/state (via api/client -> coordinator/service -> coordinator/state): api is the REST contract only and never imports coordinator",
		"coordinator/fsm imports google.golang.org/grpc (via coordinator/fsm -> coordinator/fsm/wire -> google.golang.org/grpc): " + fsmWhy,
		"coordinator/fsm imports net/http (via coordinator/fsm -> coordinator/fsm/wire -> net/http): " + fsmWhy,
		"coordinator/state imports internal/logkey (via coordinator/state -> internal/logkey): coordinator/state imports nothing of ours, so the FSM and the planner can use it anywhere",
	}
	if diff := cmp.Diff(want, check(pkgs)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	// Remove the planted violations: nothing is left to report, the allowed paths included.
	clean := []pkg{
		{ImportPath: m("coordinator/fsm"), Imports: []string{m("coordinator/state"), "github.com/hashicorp/raft"},
			Deps: []string{m("coordinator/state"), "github.com/hashicorp/raft", "github.com/hashicorp/go-metrics", "net/http"}},
		{ImportPath: m("coordinator/state"), Imports: []string{"time"}, Deps: []string{"time"}},
		{ImportPath: "github.com/hashicorp/raft", Imports: []string{"github.com/hashicorp/go-metrics"}},
		{ImportPath: "github.com/hashicorp/go-metrics", Imports: []string{"net/http"}},
		{ImportPath: m("api/rest"), Imports: []string{"net/http", m("api/v1")}, Deps: []string{"net/http", m("api/v1")}},
		{ImportPath: m("cmd/coordinator"), Imports: []string{m("coordinator/server")}, Deps: []string{m("coordinator/server"), m("coordinator/fsm"), "google.golang.org/grpc"}},
		{ImportPath: m("test/e2e"), Imports: []string{m("coordinator/clustertest")}, Deps: []string{m("coordinator/clustertest")}},
	}
	if got := check(clean); len(got) != 0 {
		t.Errorf("allowed imports reported:\n%s", strings.Join(got, "\n"))
	}
}
