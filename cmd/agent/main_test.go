package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/deployme/deployme/agent/agenttest"
	"github.com/deployme/deployme/internal/buildinfo"
)

// TestRunUsage covers what run decides before connecting anywhere: exit codes and messages
// for bad usage, flags from the environment, and a runtime failure that needs no
// coordinator (no identity and no join token).
func TestRunUsage(t *testing.T) {
	emptyState := filepath.Join(t.TempDir(), "state")
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "version", args: []string{"--version"}, wantCode: 0, wantStdout: buildinfo.String()},
		{name: "version from the environment", env: map[string]string{"DEPLOYME_VERSION": "true"}, wantCode: 0, wantStdout: buildinfo.String()},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStderr: "-join-token"},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: 2, wantStderr: "nope"},
		{name: "stray argument", args: []string{"--coordinator", "127.0.0.1:1", "start"}, wantCode: 2, wantStderr: `unexpected argument "start"`},
		{name: "no coordinator", args: []string{"--state-dir", emptyState}, wantCode: 2, wantStderr: "--coordinator"},
		{name: "only commas", args: []string{"--coordinator", " , ", "--state-dir", emptyState}, wantCode: 2, wantStderr: "--coordinator"},
		{name: "bad labels", args: []string{"--coordinator", "127.0.0.1:1", "--labels", "rack"}, wantCode: 2, wantStderr: "--labels"},
		{name: "bad labels from the environment", args: []string{"--coordinator", "127.0.0.1:1"}, env: map[string]string{"DEPLOYME_LABELS": "a=b,,c=d"}, wantCode: 2, wantStderr: "--labels"},
		{name: "bad CA hash", args: []string{"--coordinator", "127.0.0.1:1", "--ca-hash", "md5:00"}, wantCode: 2, wantStderr: "sha256:"},
		{name: "bad log level", args: []string{"--coordinator", "127.0.0.1:1", "--log-level", "loud"}, wantCode: 2, wantStderr: "--log-level"},
		{name: "empty root", args: []string{"--coordinator", "127.0.0.1:1", "--root="}, wantCode: 2, wantStderr: "--root"},
		{name: "empty state dir beats the environment", args: []string{"--coordinator", "127.0.0.1:1", "--state-dir="}, env: map[string]string{"DEPLOYME_STATE_DIR": emptyState}, wantCode: 2, wantStderr: "state directory is empty"},
		{name: "no identity and no join token", args: []string{"--coordinator", "127.0.0.1:1", "--state-dir", emptyState}, wantCode: 1, wantStderr: "join token"},
		{name: "coordinator and state dir from the environment", env: map[string]string{"DEPLOYME_COORDINATOR": "127.0.0.1:1", "DEPLOYME_STATE_DIR": emptyState}, wantCode: 1, wantStderr: "join token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			getenv := func(k string) string { return tc.env[k] }
			code := run(tc.args, getenv, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

// TestRunRefusedJoinToken: a coordinator that refuses the token makes the agent exit 1.
func TestRunRefusedJoinToken(t *testing.T) {
	f := agenttest.Start(t, agenttest.Options{})
	f.RefuseRegistrations(status.Error(codes.Unauthenticated, "unknown join token"))
	var stdout, stderr bytes.Buffer
	args := []string{"--coordinator", f.Addr, "--join-token", "wrong", "--ca-hash", f.CA.Hash(), "--state-dir", filepath.Join(t.TempDir(), "state")}
	if code := run(args, func(string) string { return "" }, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "registration refused") {
		t.Errorf("stderr %q does not say the registration was refused", stderr.String())
	}
}
