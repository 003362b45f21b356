package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	"github.com/deployme/deployme/internal/poll"
)

// node is one coordinator's identity across restarts: its data dir and its ports.
type node struct {
	t                        *testing.T
	dataDir                  string
	httpAddr, grpcAddr, raft string
}

func newNode(t *testing.T) *node {
	t.Helper()
	if coordinatorBin == "" {
		t.Skip("process tests build and run the coordinator binary; skipped in -short mode")
	}
	a := freeAddrs(t, 3)
	return &node{t: t, dataDir: t.TempDir(), httpAddr: a[0], grpcAddr: a[1], raft: a[2]}
}

// freeAddr picks a free 127.0.0.1 port: the process must be told its port (it is what the
// Raft configuration records), and a restart must get the same one.
func freeAddr(t *testing.T) string { return freeAddrs(t, 1)[0] }

// freeAddrs picks n distinct free loopback ports. The listeners stay open until all are
// picked: closed one by one, the kernel may hand the same port out twice (a node once got
// one port for both HTTP and gRPC).
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

func (n *node) url() string { return "http://" + n.httpAddr }

// adminToken reads the token the coordinator generated at bootstrap.
func (n *node) adminToken() string {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dataDir, "admin-token"))
	if err != nil {
		n.t.Fatalf("read admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

func (n *node) client() *client.Client { return client.New(n.url(), n.adminToken()) }

// proc is one run of the coordinator binary.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{} // closed once the process is reaped
	state          *os.ProcessState
}

// start runs the coordinator on the node's data dir and ports. args come after the
// standard ones (so they can override them); env adds DEPLOYME_* variables. Unless args
// or env set it, --http-addr is the node's.
func (n *node) start(args []string, env map[string]string) *proc {
	n.t.Helper()
	full := []string{"--node-id", "e2e", "--data-dir", n.dataDir, "--grpc-addr", n.grpcAddr, "--raft-addr", n.raft, "--log-level", "warn"}
	if _, viaEnv := env["DEPLOYME_HTTP_ADDR"]; !viaEnv {
		full = append(full, "--http-addr", n.httpAddr)
	}
	full = append(full, args...)
	cmd := exec.Command(coordinatorBin, full...)
	// The developer's own DEPLOYME_* variables must not change what is tested.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEPLOYME_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{t: n.t, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start coordinator: %v", err)
	}
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		p.state = cmd.ProcessState
		close(p.done)
	}()
	// Whatever happens to the test, the process is ended (by its PID) and reaped.
	n.t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			n.t.Errorf("the race detector found a data race in coordinator pid %d", cmd.Process.Pid)
		}
		if n.t.Failed() {
			n.t.Logf("coordinator pid %d stderr:\n%s", cmd.Process.Pid, tail(p.stderr.String(), 4000))
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("signal %v to pid %d: %v", sig, p.cmd.Process.Pid, err)
	}
}

// waitExit waits for the process to end, with a bound so a hung process fails the test
// instead of the whole run.
func (p *proc) waitExit() *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.done:
		return p.state
	case <-time.After(30 * time.Second):
		p.t.Fatalf("coordinator pid %d did not exit within 30s", p.cmd.Process.Pid)
		return nil
	}
}

// stop is a clean stop: SIGTERM, then exit code 0.
func (p *proc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if st := p.waitExit(); st.ExitCode() != 0 {
		p.t.Fatalf("coordinator exited with %v after SIGTERM, want code 0; stderr:\n%s", st, tail(p.stderr.String(), 4000))
	}
}

// kill is a crash: SIGKILL, no chance to flush or close anything.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.waitExit()
}

// waitReady polls /readyz (never sleeps a fixed time) until it answers 200.
func (p *proc) waitReady(baseURL string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("coordinator exited (%v) before it was ready", p.state)
		default:
		}
		resp, err := hc.Get(baseURL + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		p.t.Fatalf("waiting for %s/readyz: %v; stderr:\n%s", baseURL, err, tail(p.stderr.String(), 4000))
	}
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
