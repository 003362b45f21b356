package envflag_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/internal/envflag"
)

func TestEnvName(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"data-dir", "DEPLOYME_DATA_DIR"},
		{"http-addr", "DEPLOYME_HTTP_ADDR"},
		{"raft-snapshot-threshold", "DEPLOYME_RAFT_SNAPSHOT_THRESHOLD"},
		{"pxe-dhcp-mode", "DEPLOYME_PXE_DHCP_MODE"},
		{"dev", "DEPLOYME_DEV"},
		{"node_id", "DEPLOYME_NODE_ID"},
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			if got := envflag.EnvName(tc.flag); got != tc.want {
				t.Errorf("EnvName(%q) = %q, want %q", tc.flag, got, tc.want)
			}
		})
	}
}

// values is what the test flag set ends up holding.
type values struct {
	Addr    string
	Dev     bool
	N       uint64
	Wait    time.Duration
	Default string
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    values
		wantErr string // part of the error, "" for none
	}{
		{
			name: "defaults without flags or environment",
			want: values{Addr: "127.0.0.1:8080", N: 8192, Wait: 30 * time.Second, Default: "d"},
		},
		{
			name: "environment sets flags not on the command line",
			env:  map[string]string{"DEPLOYME_HTTP_ADDR": "127.0.0.1:1", "DEPLOYME_DEV": "true", "DEPLOYME_RAFT_SNAPSHOT_THRESHOLD": "16", "DEPLOYME_RAFT_SNAPSHOT_INTERVAL": "200ms"},
			want: values{Addr: "127.0.0.1:1", Dev: true, N: 16, Wait: 200 * time.Millisecond, Default: "d"},
		},
		{
			name: "the command line wins",
			args: []string{"--http-addr", "127.0.0.1:2", "--raft-snapshot-threshold=3"},
			env:  map[string]string{"DEPLOYME_HTTP_ADDR": "127.0.0.1:1", "DEPLOYME_RAFT_SNAPSHOT_THRESHOLD": "16"},
			want: values{Addr: "127.0.0.1:2", N: 3, Wait: 30 * time.Second, Default: "d"},
		},
		{
			name: "the command line wins even when it repeats the default",
			args: []string{"--http-addr", "127.0.0.1:8080"},
			env:  map[string]string{"DEPLOYME_HTTP_ADDR": "127.0.0.1:1"},
			want: values{Addr: "127.0.0.1:8080", N: 8192, Wait: 30 * time.Second, Default: "d"},
		},
		{
			name: "a false bool on the command line beats a true one in the environment",
			args: []string{"--dev=false"},
			env:  map[string]string{"DEPLOYME_DEV": "1"},
			want: values{Addr: "127.0.0.1:8080", N: 8192, Wait: 30 * time.Second, Default: "d"},
		},
		{
			name: "an empty variable is ignored",
			env:  map[string]string{"DEPLOYME_HTTP_ADDR": ""},
			want: values{Addr: "127.0.0.1:8080", N: 8192, Wait: 30 * time.Second, Default: "d"},
		},
		{
			name: "other variables are ignored",
			env:  map[string]string{"HTTP_ADDR": "x", "DEPLOYME_HTTPADDR": "x", "deployme_http_addr": "x"},
			want: values{Addr: "127.0.0.1:8080", N: 8192, Wait: 30 * time.Second, Default: "d"},
		},
		{
			name:    "a bad value names the variable",
			env:     map[string]string{"DEPLOYME_RAFT_SNAPSHOT_THRESHOLD": "lots"},
			wantErr: `DEPLOYME_RAFT_SNAPSHOT_THRESHOLD="lots"`,
		},
		{
			name:    "a bad duration names the variable",
			env:     map[string]string{"DEPLOYME_RAFT_SNAPSHOT_INTERVAL": "soon"},
			wantErr: "DEPLOYME_RAFT_SNAPSHOT_INTERVAL",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got values
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.StringVar(&got.Addr, "http-addr", "127.0.0.1:8080", "")
			fs.BoolVar(&got.Dev, "dev", false, "")
			fs.Uint64Var(&got.N, "raft-snapshot-threshold", 8192, "")
			fs.DurationVar(&got.Wait, "raft-snapshot-interval", 30*time.Second, "")
			fs.StringVar(&got.Default, "default", "d", "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			var looked []string
			getenv := func(k string) string { looked = append(looked, k); return tc.env[k] }
			err := envflag.Apply(fs, getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Apply error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("flags (-want +got):\n%s", diff)
			}
			// Flags given on the command line are not even looked up.
			for _, a := range tc.args {
				name := strings.SplitN(strings.TrimLeft(a, "-"), "=", 2)[0]
				for _, k := range looked {
					if strings.HasPrefix(a, "-") && k == envflag.EnvName(name) {
						t.Errorf("%s was read although --%s was given", k, name)
					}
				}
			}
		})
	}
}
