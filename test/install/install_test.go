// Package install runs the agent install script the way an operator does, against a real
// in-process coordinator (coordinator/clustertest): the script is fetched from
// /install.sh over HTTP and piped into sh with the arguments of a join token's command,
// and it downloads the agent binary from the coordinator on 127.0.0.1. Every run stages
// the installation under a temporary --prefix: nothing outside it is touched, systemctl
// never runs, and the one run without --prefix does so as an unprivileged user.
package install

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/internal/envflag"
	"github.com/deployme/deployme/internal/poll"
	"github.com/deployme/deployme/internal/units"
)

const (
	binPath      = "usr/local/bin/deployme-agent"
	defaultsPath = "etc/default/deployme-agent"
	unitPath     = "etc/systemd/system/deployme-agent.service"
	statePath    = "var/lib/deployme-agent"
)

const debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n"

// env is one coordinator serving an agent binary, and the script it serves.
type env struct {
	c      *clustertest.Cluster
	agent  []byte
	script []byte
	// url is where hosts are told to reach the coordinator's HTTP (--advertise-http).
	url string
}

// start runs a coordinator serving a fresh random "agent binary", advertising its HTTP at
// advertise (host:port; "" for its listen address).
func start(t *testing.T, advertise string) *env {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the install script supports linux/amd64 hosts; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh on this machine")
	}
	agent := make([]byte, 1<<20)
	if _, err := rand.Read(agent); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(path, agent, 0o755); err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) {
		cfg.AgentBinary = path
		cfg.AdvertiseHTTP = advertise
	}})
	if advertise == "" {
		advertise = strings.TrimPrefix(c.URL(), "http://")
	}
	resp, err := http.Get(c.URL() + "/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	script, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /install.sh: %d %v: %s", resp.StatusCode, err, script)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/x-shellscript") {
		t.Fatalf("GET /install.sh: Content-Type %q", ct)
	}
	return &env{c: c, agent: agent, script: script, url: "http://" + advertise}
}

// joinArgs creates an infra and a join token through the API and returns the arguments of
// the token's command, the part after `sh -s --`: what an operator pastes.
func (e *env) joinArgs(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The agent CA is created by a leader loop right after bootstrap; the command pins it
	// once it exists.
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		return e.c.Service().AgentCAFingerprint() != "", nil
	}); err != nil {
		t.Fatalf("no agent CA: %v", err)
	}
	name, kind := "site-"+strconv.FormatInt(time.Now().UnixNano(), 36), "onpremise"
	infra, err := e.c.Client().CreateInfra(ctx, v1.CreateInfraRequest{Name: &name, Kind: &kind})
	if err != nil {
		t.Fatal(err)
	}
	jt, err := e.c.Client().CreateJoinToken(ctx, infra.ID, v1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	head, args, ok := strings.Cut(jt.Command, " | sh -s -- ")
	if want := "curl -sfL " + e.url + "/install.sh"; !ok || head != want {
		t.Fatalf("command %q does not pipe %s into sh -s --", jt.Command, want)
	}
	return strings.Fields(args)
}

type result struct {
	code           int
	stdout, stderr string
}

// run pipes the script into `sh -s -- args`, as `curl ... | sh -s -- args` does, with
// TMPDIR pointing at tmp (checked empty afterwards: the script cleans up after itself).
func (e *env) run(t *testing.T, tmp string, cred *syscall.Credential, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-s", "--"}, args...)...)
	cmd.Stdin = bytes.NewReader(e.script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp, "LC_ALL=C"}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("sh: %v", err)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("the script left %d file(s) in TMPDIR, first %s", len(left), left[0].Name())
	}
	return r
}

// host is a staged host file system: a --prefix with an os-release.
func host(t *testing.T, osRelease string) string {
	t.Helper()
	root := t.TempDir()
	if osRelease != "" {
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/os-release"), []byte(osRelease), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// files lists every path under root, relative, directories included.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if got := fi.Mode() & (fs.ModePerm | fs.ModeDir); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// defaults reads the settings file as systemd's EnvironmentFile does: KEY=value lines.
func defaults(t *testing.T, root string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, defaultsPath))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("defaults line %q is not KEY=value", line)
		}
		out[k] = v
	}
	return out
}

func flagValue(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func TestInstall(t *testing.T) {
	e := start(t, "")
	args := e.joinArgs(t)
	caHash := flagValue(args, "--ca-hash")
	if !strings.HasPrefix(caHash, "sha256:") || flagValue(args, "--coordinator") != e.c.GRPCAddr() {
		t.Fatalf("join command arguments %q lack the coordinator or the CA hash", args)
	}

	t.Run("install", func(t *testing.T) {
		root := host(t, debian)
		r := e.run(t, t.TempDir(), nil, append(args, "--labels", "rack=r1,zone=a", "--prefix", root, "--no-start")...)
		if r.code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		wantMode(t, filepath.Join(root, binPath), 0o755)
		wantMode(t, filepath.Join(root, defaultsPath), 0o600)
		wantMode(t, filepath.Join(root, unitPath), 0o644)
		wantMode(t, filepath.Join(root, statePath), fs.ModeDir|0o700)

		got, err := os.ReadFile(filepath.Join(root, binPath))
		if err != nil {
			t.Fatal(err)
		}
		if sha(got) != sha(e.agent) {
			t.Errorf("installed binary sha256 %s, want the coordinator's %s", sha(got), sha(e.agent))
		}
		unit, err := os.ReadFile(filepath.Join(root, unitPath))
		if err != nil {
			t.Fatal(err)
		}
		if string(unit) != units.Agent {
			t.Errorf("installed unit differs from internal/units/deployme-agent.service:\n%s", unit)
		}
		want := map[string]string{
			"DEPLOYME_COORDINATOR": e.c.GRPCAddr(),
			"DEPLOYME_JOIN_TOKEN":  flagValue(args, "--join-token"),
			"DEPLOYME_CA_HASH":     caHash,
			"DEPLOYME_STATE_DIR":   "/var/lib/deployme-agent",
			"DEPLOYME_LABELS":      "rack=r1,zone=a",
		}
		if d := defaults(t, root); !maps.Equal(d, want) {
			t.Errorf("defaults file %v, want %v", d, want)
		}
		// Each setting is a variable the agent reads for one of its flags.
		for flag, key := range map[string]string{"coordinator": "DEPLOYME_COORDINATOR", "join-token": "DEPLOYME_JOIN_TOKEN",
			"ca-hash": "DEPLOYME_CA_HASH", "state-dir": "DEPLOYME_STATE_DIR", "labels": "DEPLOYME_LABELS"} {
			if envflag.EnvName(flag) != key {
				t.Errorf("--%s is read from %s, not %s", flag, envflag.EnvName(flag), key)
			}
		}
		// Nothing else: no systemctl was run, nothing was written outside these.
		wantFiles := []string{"etc", "etc/default", defaultsPath, "etc/os-release", "etc/systemd", "etc/systemd/system", unitPath,
			"usr", "usr/local", "usr/local/bin", binPath, "var", "var/lib", statePath}
		if got := files(t, root); !slices.Equal(got, wantFiles) {
			t.Errorf("files under the prefix:\n%q\nwant\n%q", got, wantFiles)
		}
	})

	t.Run("again, keeping the identity", func(t *testing.T) {
		root := host(t, debian)
		if r := e.run(t, t.TempDir(), nil, append(args, "--prefix", root, "--no-start")...); r.code != 0 {
			t.Fatalf("first install: exit %d: %s", r.code, r.stderr)
		}
		identity := filepath.Join(root, statePath, "identity.json")
		if err := os.WriteFile(identity, []byte(`{"host_id":"host_1"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, statePath), 0o755); err != nil {
			t.Fatal(err)
		}
		r := e.run(t, t.TempDir(), nil, append(args, "--prefix", root, "--no-start", "--labels", "zone=b")...)
		if r.code != 0 {
			t.Fatalf("second install: exit %d: %s", r.code, r.stderr)
		}
		if _, err := os.Stat(identity); err != nil {
			t.Errorf("the host's identity is gone after a reinstall: %v", err)
		}
		wantMode(t, filepath.Join(root, statePath), fs.ModeDir|0o700)
		if got := defaults(t, root)["DEPLOYME_LABELS"]; got != "zone=b" {
			t.Errorf("labels %q after a reinstall, want zone=b", got)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		root := host(t, debian)
		if r := e.run(t, t.TempDir(), nil, append(args, "--prefix", root, "--no-start")...); r.code != 0 {
			t.Fatalf("install: exit %d: %s", r.code, r.stderr)
		}
		identity := filepath.Join(root, statePath, "identity.json")
		if err := os.WriteFile(identity, []byte(`{"host_id":"host_1"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		r := e.run(t, t.TempDir(), nil, "--uninstall", "--prefix", root)
		if r.code != 0 {
			t.Fatalf("uninstall: exit %d: %s", r.code, r.stderr)
		}
		for _, p := range []string{binPath, defaultsPath, unitPath} {
			if _, err := os.Stat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s is still there after --uninstall (%v)", p, err)
			}
		}
		if _, err := os.Stat(identity); err != nil {
			t.Errorf("--uninstall removed the host's identity: %v", err)
		}
		if !strings.Contains(r.stdout, "kept") {
			t.Errorf("--uninstall does not say it kept the state directory: %s", r.stdout)
		}
		if r := e.run(t, t.TempDir(), nil, "--uninstall", "--purge", "--prefix", root); r.code != 0 {
			t.Fatalf("uninstall --purge: exit %d: %s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(root, statePath)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the state directory is still there after --purge (%v)", err)
		}
	})

	t.Run("operating systems", func(t *testing.T) {
		tests := []struct {
			name, osRelease string
			ok              bool
		}{
			{"debian", debian, true},
			{"ubuntu", "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n", true},
			{"rocky", "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", true},
			{"almalinux", "ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n", true},
			{"rhel", "ID=\"rhel\"\nID_LIKE=\"fedora\"\n", true},
			{"centos", "ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n", true},
			{"fedora", "ID=fedora\n", true},
			{"mint, like ubuntu", "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", true},
			{"alpine", "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.0\n", false},
			{"arch", "ID=arch\n", false},
			{"opensuse", "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n", false},
			{"an ID_LIKE that only contains a supported name", "ID=custom\nID_LIKE=\"notdebian\"\n", false},
			{"no os-release", "", false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				root := host(t, tc.osRelease)
				before := files(t, root)
				r := e.run(t, t.TempDir(), nil, append(args, "--prefix", root, "--no-start")...)
				if tc.ok {
					if r.code != 0 {
						t.Errorf("refused: exit %d: %s", r.code, r.stderr)
					}
					return
				}
				if r.code != 1 {
					t.Errorf("exit %d, want 1: %s", r.code, r.stderr)
				}
				if !strings.Contains(r.stderr, "operating system") {
					t.Errorf("the refusal does not name the operating system: %s", r.stderr)
				}
				if after := files(t, root); !slices.Equal(after, before) {
					t.Errorf("refused, yet files appeared: %q", after)
				}
			})
		}
	})

	t.Run("bad usage", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			want string
		}{
			{"no join token", []string{"--coordinator", e.c.GRPCAddr()}, "--join-token is required"},
			{"no coordinator", []string{"--join-token", "dpj_x"}, "--coordinator is required"},
			{"a token with a space", []string{"--coordinator", e.c.GRPCAddr(), "--join-token", "dpj_x DEPLOYME_ROOT=/"}, "--join-token"},
			{"a coordinator with a new line", []string{"--coordinator", e.c.GRPCAddr() + "\nDEPLOYME_X=1", "--join-token", "dpj_x"}, "--coordinator"},
			{"a short CA hash", []string{"--coordinator", e.c.GRPCAddr(), "--join-token", "dpj_x", "--ca-hash", "sha256:abc"}, "--ca-hash"},
			{"a CA hash without its prefix", []string{"--coordinator", e.c.GRPCAddr(), "--join-token", "dpj_x", "--ca-hash", strings.Repeat("a", 64)}, "--ca-hash"},
			{"labels with a quote", []string{"--coordinator", e.c.GRPCAddr(), "--join-token", "dpj_x", "--labels", `a="b"`}, "--labels"},
			{"an unknown option", []string{"--coordinator", e.c.GRPCAddr(), "--join-token", "dpj_x", "--force"}, "unknown argument: --force"},
			{"a value missing", []string{"--coordinator"}, "--coordinator needs a value"},
			{"purge without uninstall", []string{"--purge"}, "--purge goes with --uninstall"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				root := host(t, debian)
				// The staging options come first: the case of a missing value needs its
				// option last.
				r := e.run(t, t.TempDir(), nil, append([]string{"--prefix", root, "--no-start"}, tc.args...)...)
				if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
				}
				if got := files(t, root); !slices.Equal(got, []string{"etc", "etc/os-release"}) {
					t.Errorf("bad usage, yet files appeared: %q", got)
				}
			})
		}
	})

	// Without --prefix the script installs into / and runs systemctl: only root may. It
	// runs here as nobody (or as this unprivileged test), so even a broken check could
	// write nothing.
	t.Run("not root", func(t *testing.T) {
		var cred *syscall.Credential
		if os.Geteuid() == 0 {
			cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		}
		r := e.run(t, t.TempDir(), cred, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "must run as root") {
			t.Errorf("exit %d, stderr %q; want 1 and a request for root", r.code, r.stderr)
		}
	})
}

// TestInstallRefusesATamperedBinary: the script comes from the coordinator, but the binary
// reaches the host through a proxy that changes it. The coordinator advertises the proxy's
// address, so the script downloads through it.
func TestInstallRefusesATamperedBinary(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, ln.Addr().String())
	target, err := url.Parse(e.c.URL())
	if err != nil {
		t.Fatal(err)
	}
	var tampered atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/v1/agent/download" || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		body[len(body)/2] ^= 0xff
		tampered.Add(1)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	if !bytes.Contains(e.script, []byte("DEPLOYME_URL='"+e.url+"'")) {
		t.Fatalf("the script does not download from the advertised address %s", ln.Addr())
	}
	root := host(t, debian)
	r := e.run(t, t.TempDir(), nil, append(e.joinArgs(t), "--prefix", root, "--no-start")...)
	if tampered.Load() == 0 {
		t.Fatalf("the script never downloaded the binary through the proxy: exit %d: %s", r.code, r.stderr)
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "checksum mismatch: the download was tampered with or corrupted") {
		t.Errorf("stderr does not report the mismatch:\n%s", r.stderr)
	}
	if got := files(t, root); !slices.Equal(got, []string{"etc", "etc/os-release"}) {
		t.Errorf("a tampered binary was refused, yet files appeared: %q", got)
	}
}
