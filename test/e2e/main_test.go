// Package e2e holds durability tests. restart_test.go runs the real coordinator binary as a
// separate process on 127.0.0.1 ports and a temporary data dir, stops it cleanly or kills it
// with SIGKILL, and checks that everything acknowledged survives, from the Raft log and from
// snapshots. durability_inprocess_test.go covers what the binary cannot be given over REST
// (hosts, and so clusters) with the in-process harness.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// coordinatorBin and agentBin are the binaries built once for every process test ("" in
// -short mode).
var coordinatorBin, agentBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "deployme-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	coordinatorBin, err = build(dir, "coordinator")
	if err == nil {
		agentBin, err = build(dir, "agent")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles cmd/coordinator from the module root, found with `go env GOMOD` so the
// tests work from any directory.
func build(dir, name string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	bin := filepath.Join(dir, name)
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/"+name)...)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
	}
	return bin, nil
}
