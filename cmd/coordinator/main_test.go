package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/deployme/deployme/internal/buildinfo"
)

// TestRunUsage covers what run decides before starting anything: exit codes and messages
// for bad usage, and flags read from the environment. Starting for real is covered by the
// end-to-end tests in test/e2e, which run the built binary.
func TestRunUsage(t *testing.T) {
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
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStderr: "-raft-snapshot-threshold"},
		{name: "help names the artifact store", args: []string{"--help"}, wantCode: 0, wantStderr: "-kube-artifacts"},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: 2, wantStderr: "nope"},
		{name: "stray argument", args: []string{"serve"}, wantCode: 2, wantStderr: `unexpected argument "serve"`},
		{name: "bad value in the environment", env: map[string]string{"DEPLOYME_RAFT_SNAPSHOT_THRESHOLD": "many"}, wantCode: 2, wantStderr: "DEPLOYME_RAFT_SNAPSHOT_THRESHOLD"},
		{name: "bad log level", args: []string{"--log-level", "loud", "--version=false"}, wantCode: 2, wantStderr: "--log-level"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantCode: 2, wantStderr: "--log-format"},
		{name: "empty node id", args: []string{"--node-id="}, wantCode: 2, wantStderr: "node ID is empty"},
		{name: "an empty node id on the command line beats the environment", args: []string{"--node-id="}, env: map[string]string{"DEPLOYME_NODE_ID": "n1"}, wantCode: 2, wantStderr: "node ID is empty"},
		{name: "advertise without a fixed port", args: []string{"--advertise-http", "127.0.0.1:0"}, wantCode: 2, wantStderr: "advertise-http"},
		{name: "join is refused clearly", args: []string{"--join", "http://127.0.0.1:1"}, wantCode: 2, wantStderr: "--join"},
		{name: "join from the environment", env: map[string]string{"DEPLOYME_JOIN": "http://127.0.0.1:1"}, wantCode: 2, wantStderr: "--join"},
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
