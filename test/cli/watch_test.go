// Package cli runs the deployme binary against a real coordinator process in development
// mode (simulated hosts, sped up), the way a user would: under a pseudo-terminal, where
// `cluster create --wait` redraws a progress bar, and through a pipe, where it prints plain
// lines.
package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/state"
	"github.com/deployme/deployme/internal/poll"
)

// TestCreateWait creates a cluster with --wait under a pty and then, once it is deleted,
// through a pipe, and checks each time what the user sees and the kubeconfig written.
func TestCreateWait(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coordinator and deployme binaries; skipped with -short")
	}
	bin := buildBinaries(t)
	co := startCoordinator(t, filepath.Join(bin, "coordinator"))
	co.waitHosts(t, 2)
	deployme := filepath.Join(bin, "deployme")
	home := t.TempDir()
	// Nothing of the machine's own configuration may leak in: a clean HOME, and the API
	// and token from the environment, as in CI.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TERM=xterm", "DEPLOYME_API=" + co.url, "DEPLOYME_TOKEN=" + co.token}
	stepName := `(install|preflight|prepare|pki|init|cni|etcd-cleanup|credentials|join|ready|etcd-check)`
	// The dev coordinator's store holds the version: every node installs it first.
	steps := len(state.NodePlan(state.RoleInitControlPlane, true)) + len(state.NodePlan(state.RoleWorker, true))

	t.Run("terminal", func(t *testing.T) {
		kc := filepath.Join(t.TempDir(), "demo.kubeconfig")
		out, code := runPTY(t, env, deployme, createArgs(kc)...)
		if code != 0 {
			t.Fatalf("exit %d; output:\n%s", code, out)
		}
		for _, want := range []struct{ what, re string }{
			{"a progress bar", `\d+% \|[█ ]{30}\| \(\d+/\d+\)`},
			{"the full bar at the end", fmt.Sprintf(`demo running \d+s\s+100%% \|█{30}\| \(%d/%d\)`, steps, steps)},
			{"a redraw in place", `\x1b\[\d+A\x1b\[J`},
			{"a node at a named step", `dev-\d\s+(control-plane-init|worker)\s+` + stepName},
			{"the end", `Cluster demo \(cls_[a-z0-9]+\) is running: 2 node\(s\)`},
		} {
			if !regexp.MustCompile(want.re).MatchString(out) {
				t.Errorf("no %s (%s) in the output:\n%q", want.what, want.re, out)
			}
		}
		co.checkKubeconfig(t, kc)
	})

	// Both hosts are in demo: delete it (waiting, which frees them) before the second run.
	id := co.clusterID(t, "demo")
	out, errOut, code := runPipe(t, env, deployme, "cluster", "delete", id, "--wait", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("cluster delete --wait: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.HasSuffix(out, "Cluster "+id+" deleted\n") {
		t.Errorf("cluster delete --wait printed:\n%s", out)
	}

	t.Run("pipe", func(t *testing.T) {
		kc := filepath.Join(t.TempDir(), "demo.kubeconfig")
		out, errOut, code := runPipe(t, env, deployme, createArgs(kc)...)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if strings.Contains(out+errOut, "\x1b") {
			t.Errorf("escape sequences without a terminal:\n%q", out)
		}
		if strings.Contains(out, "% |") {
			t.Errorf("a progress bar without a terminal:\n%s", out)
		}
		for _, want := range []struct{ what, re string }{
			{"the status when it starts", `(?m)^cluster demo: provisioning$`},
			{"a node at a named step", `(?m)^dev-\d (control-plane-init|worker): ` + stepName},
			{"the status when it ends", `(?m)^cluster demo: running$`},
			{"the end", `(?m)^Cluster demo \(cls_[a-z0-9]+\) is running: 2 node\(s\)`},
			{"the kubeconfig's path", `(?m)^Kubeconfig written to ` + regexp.QuoteMeta(kc) + `$`},
		} {
			if !regexp.MustCompile(want.re).MatchString(out) {
				t.Errorf("no %s (%s) in the output:\n%s", want.what, want.re, out)
			}
		}
		// Plain output changes only when something does: no line comes twice in a row.
		lines := strings.Split(out, "\n")
		for i := 1; i < len(lines); i++ {
			if lines[i] != "" && lines[i] == lines[i-1] {
				t.Errorf("line %q printed twice in a row", lines[i])
			}
		}
		co.checkKubeconfig(t, kc)

		// The same credentials fetched again, to a file and merged into $KUBECONFIG.
		id := co.clusterID(t, "demo")
		file := filepath.Join(t.TempDir(), "f.kubeconfig")
		if out, errOut, code := runPipe(t, env, deployme, "cluster", "kubeconfig", id, "--ttl", "1h", "-f", file); code != 0 {
			t.Fatalf("cluster kubeconfig -f: exit %d\n%s%s", code, out, errOut)
		}
		co.checkKubeconfig(t, file)
		merged := filepath.Join(t.TempDir(), "kube", "config")
		if out, errOut, code := runPipe(t, append(env, "KUBECONFIG="+merged), deployme, "cluster", "kubeconfig", id, "--merge"); code != 0 {
			t.Fatalf("cluster kubeconfig --merge: exit %d\n%s%s", code, out, errOut)
		}
		co.checkKubeconfig(t, merged)
		if cfg, err := clientcmd.LoadFromFile(merged); err != nil {
			t.Error(err)
		} else if cfg.CurrentContext != "demo" {
			t.Errorf("merged kubeconfig: current context %q, want demo", cfg.CurrentContext)
		}
	})
}

func createArgs(kubeconfig string) []string {
	return []string{"cluster", "create", "demo", "--control-planes", "1", "--workers", "1", "--node-size", "small",
		"--wait", "--timeout", "3m", "--kubeconfig-out", kubeconfig}
}

// buildBinaries builds the coordinator and deployme into a temporary directory, from the
// module root (found with `go env GOMOD`, so the test runs from any directory).
func buildBinaries(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/coordinator", "./cmd/deployme")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// coordinator is a coordinator process in development mode.
type coordinator struct {
	url, token string
	stderr     *syncBuffer
}

// freeAddrs picks n distinct free loopback ports. The listeners are all open at once, so
// the kernel cannot hand out one port twice, and closed just before the ports are used.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

func startCoordinator(t *testing.T, bin string) *coordinator {
	t.Helper()
	data := t.TempDir()
	addrs := freeAddrs(t, 3)
	cmd := exec.Command(bin, "--dev", "--dev-agents", "2", "--dev-time-scale", "0.05", "--data-dir", data,
		"--http-addr", addrs[0], "--grpc-addr", addrs[1], "--raft-addr", addrs[2], "--log-level", "warn")
	// Our own DEPLOYME_ variables would set the coordinator's flags too.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEPLOYME_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	co := &coordinator{url: "http://" + addrs[0], stderr: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = io.Discard, co.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		// By its PID: a clean stop first, a kill if it hangs.
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("coordinator stderr:\n%s", tail(co.stderr.String(), 4000))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-exited:
			return false, errors.New("coordinator exited before it was ready")
		default:
		}
		resp, err := hc.Get(co.url + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
		if resp.StatusCode != http.StatusOK || err != nil {
			return false, nil
		}
		co.token = strings.TrimSpace(string(tok))
		return true, nil
	})
	if err != nil {
		t.Fatalf("waiting for the coordinator: %v\nstderr:\n%s", err, tail(co.stderr.String(), 4000))
	}
	return co
}

func (co *coordinator) client() *client.Client { return client.New(co.url, co.token) }

// waitHosts waits until n simulated hosts are available.
func (co *coordinator) waitHosts(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := poll.Until(ctx, 100*time.Millisecond, func() (bool, error) {
		l, err := co.client().ListHosts(ctx, client.ListOptions{State: v1.HostAvailable})
		return err == nil && l.Total >= n, nil
	})
	if err != nil {
		t.Fatalf("%d hosts never became available: %v", n, err)
	}
}

func (co *coordinator) clusterID(t *testing.T, name string) string {
	t.Helper()
	l, err := co.client().ListClusters(context.Background(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range l.Items {
		if c.Name == name {
			return c.ID
		}
	}
	t.Fatalf("no cluster named %s", name)
	return ""
}

// checkKubeconfig loads the kubeconfig written by the CLI and checks that it points at the
// cluster's endpoint.
func (co *coordinator) checkKubeconfig(t *testing.T, path string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	cl, err := co.client().GetCluster(context.Background(), co.clusterID(t, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.Clusters[ctx.Cluster] == nil {
		t.Fatalf("kubeconfig has no current context with a cluster: %+v", cfg)
	}
	if got := cfg.Clusters[ctx.Cluster].Server; got != cl.Endpoint {
		t.Errorf("kubeconfig server %q, want the cluster's endpoint %q", got, cl.Endpoint)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

// runPTY runs a command with a pseudo-terminal as its stdin, stdout and stderr, and returns
// everything it wrote and its exit code.
func runPTY(t *testing.T, env []string, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	// The copy ends with an error (EIO on Linux) once the command has exited and the
	// terminal's other side is closed; what was written before is read first.
	go func() { io.Copy(&out, ptmx); close(copied) }()
	err = cmd.Wait()
	<-copied
	return out.String(), exitCode(t, err)
}

// runPipe runs a command with pipes for stdout and stderr.
func runPipe(t *testing.T, env []string, bin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	code := exitCode(t, cmd.Run())
	return out.String(), errOut.String(), code
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

// syncBuffer is a bytes.Buffer the process's output goroutine and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
