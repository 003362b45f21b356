// Package vip checks the control-plane VIP end to end on real links: a coordinator, four
// agents (bin/agent, each in a network namespace of its own, with the strict fake kubeadm
// at the edge) and a client, all on one bridge in namespaces the test creates and deletes.
// It needs root and iproute2, and skips without them.
package vip

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Binaries built once for the package: the coordinator, the agent and the fake kubeadm
// (also the fake kubectl, by its name).
var coordinatorBin, agentBin, fakeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() || os.Geteuid() != 0 {
		// The tests skip with their own message.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "deployme-vip-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range []struct {
		out *string
		pkg string
		as  string
	}{
		{&coordinatorBin, "./cmd/coordinator", "coordinator"},
		{&agentBin, "./cmd/agent", "agent"},
		{&fakeBin, "./test/fakekube", "kubeadm"},
	} {
		if *b.out, err = build(dir, b.pkg, b.as); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	if err := os.Symlink("kubeadm", filepath.Join(dir, "kubectl")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(dir, pkg, name string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}
