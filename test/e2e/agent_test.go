package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/poll"
)

// agentProc is a running bin/agent.
type agentProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(agentBin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{t: t, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-a.exited
		}
	})
	return a
}

func (a *agentProc) stop() {
	a.t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		a.t.Fatalf("agent did not stop on SIGTERM; output:\n%s", tail(a.out.String(), 3000))
	}
}

// memTotal is this machine's MemTotal from /proc/meminfo, in bytes.
func memTotal(t *testing.T) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Skip("no /proc/meminfo: the agent inventory test needs Linux")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

// TestAgentJoinsEndToEnd runs the real binaries: infra -> join token -> bin/agent with the
// token registers this machine with its true inventory; stopped, the host goes offline; a
// restart without the token keeps the same host ID and brings it back; a wrong token
// registers nothing.
func TestAgentJoinsEndToEnd(t *testing.T) {
	n := newNode(t)
	p := n.start([]string{"--liveness-ttl", "2s", "--liveness-grace", "1s"}, nil)
	p.waitReady(n.url())
	cl := n.client()
	ctx := context.Background()
	infra, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptrTo("site"), Kind: ptrTo("onpremise")})
	if err != nil {
		t.Fatal(err)
	}
	// The agent CA is created by a leader loop just after start; the join command carries
	// its fingerprint once it exists.
	var jt *v1.JoinToken
	waitUntil(t, 20*time.Second, "a join command pinning the agent CA", func() bool {
		jt, err = cl.CreateJoinToken(ctx, infra.ID, v1.CreateJoinTokenRequest{})
		return err == nil && strings.Contains(jt.Command, "--ca-hash ")
	})
	caHash := strings.Fields(jt.Command[strings.Index(jt.Command, "--ca-hash "):])[1]
	stateDir := t.TempDir()
	args := []string{"--coordinator", n.grpcAddr, "--state-dir", stateDir, "--labels", "rack=r7,zone=a"}

	a := startAgent(t, append(args, "--join-token", jt.Secret, "--ca-hash", caHash)...)
	var host v1.Host
	waitUntil(t, 30*time.Second, "the host to register", func() bool {
		hosts, err := cl.ListHosts(ctx, client.ListOptions{InfraID: infra.ID})
		if err != nil || hosts.Total != 1 {
			return false
		}
		host = hosts.Items[0]
		return len(host.NICs) > 0
	})
	// The inventory is this machine's.
	name, _ := os.Hostname()
	if host.Hostname != name || host.CPUs != runtime.NumCPU() || host.MemoryBytes != memTotal(t) {
		t.Errorf("host = %s, %d CPUs, %d bytes; this machine is %s, %d CPUs, %d bytes",
			host.Hostname, host.CPUs, host.MemoryBytes, name, runtime.NumCPU(), memTotal(t))
	}
	if host.Labels["rack"] != "r7" || host.Labels["zone"] != "a" || host.State != v1.HostAvailable {
		t.Errorf("host labels %v, state %s; want rack=r7, zone=a, available", host.Labels, host.State)
	}
	for _, f := range []string{"identity.json", "agent.key", "agent.crt"} {
		if st, err := os.Stat(stateDir + "/" + f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}

	// The leader records which replica holds the agent's stream (once, not per heartbeat).
	waitUntil(t, 20*time.Second, "the host to show the replica it is connected to", func() bool {
		h, err := cl.GetHost(ctx, host.ID)
		return err == nil && h.ConnectedTo != ""
	})

	// Stopped agent: offline after its lease (2 s) runs out.
	a.stop()
	waitUntil(t, 30*time.Second, "the host to go offline", func() bool {
		h, err := cl.GetHost(ctx, host.ID)
		return err == nil && h.State == v1.HostOffline
	})

	// Restarted without the token: the same identity, back online.
	back := startAgent(t, args...)
	waitUntil(t, 30*time.Second, "the host to come back", func() bool {
		h, err := cl.GetHost(ctx, host.ID)
		return err == nil && h.State == v1.HostAvailable
	})
	if hosts, _ := cl.ListHosts(ctx, client.ListOptions{InfraID: infra.ID}); hosts.Total != 1 {
		t.Fatalf("%d hosts after the restart, want the same single host", hosts.Total)
	}

	// Decommissioned: the coordinator refuses the host's certificate, and the agent stops
	// retrying and exits 1.
	if err := cl.DecommissionHost(ctx, host.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-back.exited:
		if code := back.cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("agent of a decommissioned host exited %d, want 1", code)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("agent of a decommissioned host kept running; output:\n%s", tail(back.out.String(), 2000))
	}

	// A wrong token registers nothing, and the agent says so with exit code 1.
	bad := startAgent(t, "--coordinator", n.grpcAddr, "--state-dir", t.TempDir(), "--join-token", "dpj_wrong", "--ca-hash", caHash)
	select {
	case <-bad.exited:
		if code := bad.cmd.ProcessState.ExitCode(); code != 1 {
			t.Errorf("agent with a wrong token exited %d, want 1", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("agent with a wrong token kept running; output:\n%s", tail(bad.out.String(), 2000))
	}
	if hosts, _ := cl.ListHosts(ctx, client.ListOptions{}); hosts.Total != 1 {
		t.Fatalf("%d hosts after a wrong token, want 1", hosts.Total)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := poll.Until(ctx, 100*time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

func ptrTo[T any](v T) *T { return &v }
