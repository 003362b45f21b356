package netnstest

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a program running inside a namespace, started by Start.
type Proc struct {
	Name   string
	Cmd    interface{ Wait() error }
	out    *syncBuffer
	exited chan struct{}
	pid    int
}

// Start runs bin with args inside ns (`ip netns exec`, which execs: the PID is the
// program's own) with env added to this process's environment. When the test ends it gets
// SIGTERM, then SIGKILL after 15 s; its output is logged if the test failed.
func Start(t testing.TB, ns *NS, name string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	out := &syncBuffer{}
	cmd := ns.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: name, Cmd: cmd, out: out, exited: make(chan struct{}), pid: cmd.Process.Pid}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, Tail(out.String(), 6000))
		}
	})
	return p
}

// Output is what the program printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited is closed once the program has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM and waits up to grace, then SIGKILL. It is a no-op once the program
// has exited.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.exited
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.exited
}

// HTTPClient is an HTTP client whose connections are opened inside ns, one per request (so
// a request after an address moved goes where ARP now says).
func (n *NS) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return n.Dial(network, addr)
		},
	}}
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
