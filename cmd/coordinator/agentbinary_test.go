package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestAgentBinaryFlag: the binary /install.sh hands to hosts defaults to the agent that
// make build and the packages put beside the coordinator.
func TestAgentBinaryFlag(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip("no executable path on this platform")
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--help"}, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	want := "default " + strconv.Quote(filepath.Join(filepath.Dir(exe), "agent"))
	if !strings.Contains(stderr.String(), "-agent-binary") || !strings.Contains(stderr.String(), want) {
		t.Errorf("--help does not list -agent-binary with %s:\n%s", want, stderr.String())
	}
}
