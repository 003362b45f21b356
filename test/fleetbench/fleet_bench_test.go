// Package fleetbench measures an agent fleet against real coordinator processes: N simulated
// agents (the real agent/coordclient client, one per host, in this test process, each with its
// own state directory and a tiny fixed inventory) register with a join token and then hold
// one mutual-TLS stream each, against 1 and then 3 replicas of bin/coordinator on 127.0.0.1.
// `make bench-fleet` runs it and prints one table: time to register all agents, coordinator
// RSS and CPU at steady heartbeat (in total and per 1,000 agents), Raft writes per second at
// steady state (heartbeats are not Raft writes, so about 0), and, with 3 replicas, the time
// for every agent to hold a stream again after one replica is restarted.
//
// N is DEPLOYME_FLEET_AGENTS (default 2000, a few minutes); the acceptance target is
// DEPLOYME_FLEET_AGENTS=10000 with the coordinator under 1 GiB RSS. DEPLOYME_FLEET_REPLICAS
// picks the cluster sizes (default "1,3").
package fleetbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/coordclient"
	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/poll"
)

const (
	// registerConcurrency bounds the agents registering (and opening their first stream) at
	// once, as a fleet being rolled out would.
	registerConcurrency = 64
	// steadyWindow is the deliberate measurement window at steady heartbeat.
	steadyWindow = 30 * time.Second
	adminSecret  = "dpl_fleetbench_admin_token_0123456789abcdef"
)

var (
	coordinatorBin string
	fdNote         string

	rowsMu sync.Mutex
	rows   []row
	notes  []string
)

// row is one line of the table.
type row struct {
	replicas, agents int
	failed           int           // agents whose Run ended with an error
	registerAll      time.Duration // start of the fleet to GET /v1/hosts total == N
	connectAll       time.Duration // start of the fleet to every agent holding a stream
	baseRSS, rss     int64         // bytes, summed over replicas: before the fleet, at steady state
	maxRSS           int64         // the largest single replica at steady state
	cpuPct           float64       // percent of one core, summed over replicas, over the window
	raftWritesPerSec float64
	heartbeat        string        // interval the coordinator gave the agents
	settle           time.Duration // all connected to the Raft index standing still for 3 s
	reconnectAll     time.Duration
	moved            int // agents that were on the restarted replica
	restartDown      time.Duration
}

func note(format string, args ...any) {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	notes = append(notes, fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) {
	flag.Parse()
	fdNote = raiseFileLimit()
	dir, err := os.MkdirTemp("", "deployme-fleetbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	coordinatorBin, err = build(dir, "coordinator")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if len(rows) > 0 || len(notes) > 0 {
		printTable()
	}
	os.Exit(code)
}

// raiseFileLimit sets the soft RLIMIT_NOFILE to the hard one; the coordinators started
// later inherit it. Every agent holds a socket here and one in a coordinator.
func raiseFileLimit() string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "getrlimit: " + err.Error()
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "setrlimit: " + err.Error()
	}
	return fmt.Sprintf("open-file limit %d", lim.Cur)
}

func fileLimit() uint64 {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

func build(dir, name string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/"+name)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
	}
	return bin, nil
}

func agentsFromEnv() (int, error) {
	s := os.Getenv("DEPLOYME_FLEET_AGENTS")
	if s == "" {
		return 2000, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("DEPLOYME_FLEET_AGENTS=%q: want a positive integer", s)
	}
	return n, nil
}

// BenchmarkFleet ignores b.N: one fleet of N agents against 1 replica, then against 3.
func BenchmarkFleet(b *testing.B) {
	n, err := agentsFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	// Each agent needs a socket here and one in a coordinator, plus a few files while it
	// registers; a fleet that cannot fit is said so, not silently shrunk.
	if need := uint64(n) + 1024; fileLimit() < need {
		note("%d agents need about %d open files per process; the limit is %d (%s): agents beyond it fail to connect", n, need, fileLimit(), fdNote)
	}
	replicaSets := []int{1, 3}
	if s := os.Getenv("DEPLOYME_FLEET_REPLICAS"); s != "" {
		replicaSets = nil
		for f := range strings.SplitSeq(s, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || k < 1 {
				b.Fatalf("DEPLOYME_FLEET_REPLICAS=%q: want a comma-separated list of replica counts", s)
			}
			replicaSets = append(replicaSets, k)
		}
	}
	for _, replicas := range replicaSets {
		b.Run(fmt.Sprintf("replicas=%d/agents=%d", replicas, n), func(b *testing.B) {
			r := runFleet(b, replicas, n)
			rowsMu.Lock()
			rows = append(rows, r)
			rowsMu.Unlock()
		})
	}
}

// --- coordinator processes

type member struct {
	b                            *testing.B
	id, dataDir                  string
	httpAddr, grpcAddr, raftAddr string
	args                         []string // flags of every start after the first
	cmd                          *exec.Cmd
	stderr                       *syncBuffer
	done                         chan struct{}
	ready                        bool
}

// freeAddrs picks n distinct free loopback ports, holding each until all are picked (closed
// one by one, the kernel may hand the same port out twice).
func freeAddrs(b *testing.B, n int) []string {
	b.Helper()
	out := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

func (m *member) url() string { return "http://" + m.httpAddr }

func (m *member) client() *client.Client {
	return client.New(m.url(), adminSecret).WithHTTPClient(&http.Client{Timeout: 10 * time.Second})
}

func (m *member) start(extra ...string) {
	b := m.b
	b.Helper()
	args := append([]string{"--node-id", m.id, "--data-dir", m.dataDir, "--http-addr", m.httpAddr,
		"--grpc-addr", m.grpcAddr, "--raft-addr", m.raftAddr, "--log-level", "warn"}, m.args...)
	cmd := exec.Command(coordinatorBin, append(args, extra...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEPLOYME_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	m.stderr = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = m.stderr, m.stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start coordinator: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	stderr := m.stderr
	b.Cleanup(func() {
		select {
		case <-done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if b.Failed() {
			b.Logf("coordinator %s pid %d output:\n%s", m.id, cmd.Process.Pid, tail(stderr.String(), 4000))
		}
	})
	m.waitReady()
}

func (m *member) waitReady() {
	m.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-m.done:
			return false, errors.New("coordinator exited before it was ready")
		default:
		}
		resp, err := hc.Get(m.url() + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		m.b.Fatalf("%s /readyz: %v\n%s", m.id, err, tail(m.stderr.String(), 4000))
	}
}

// stop is SIGTERM and a bounded wait for the exit.
func (m *member) stop() {
	m.b.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(60 * time.Second):
		m.b.Fatalf("coordinator %s pid %d did not exit within 60s of SIGTERM", m.id, m.cmd.Process.Pid)
	}
}

func startCluster(b *testing.B, replicas int) []*member {
	b.Helper()
	tokenFile := filepath.Join(b.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(adminSecret+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var ms []*member
	all := freeAddrs(b, 3*replicas)
	for i := range replicas {
		addrs := all[3*i : 3*i+3]
		m := &member{b: b, id: fmt.Sprintf("n%d", i+1), dataDir: b.TempDir(),
			httpAddr: addrs[0], grpcAddr: addrs[1], raftAddr: addrs[2],
			args: []string{"--admin-token-file", tokenFile}}
		if i == 0 {
			m.start()
		} else {
			m.start("--join", ms[0].url())
		}
		ms = append(ms, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		l := leader(ms)
		if l == nil {
			return false, nil
		}
		ml, err := l.client().Members(ctx)
		if err != nil || len(ml.Items) != replicas {
			return false, nil
		}
		for _, it := range ml.Items {
			if !it.Voter || !it.Reachable {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		b.Fatalf("cluster of %d not healthy: %v", replicas, err)
	}
	return ms
}

// leader is the member that says it leads, or nil.
func leader(ms []*member) *member {
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ml, err := m.client().Members(ctx)
		cancel()
		if err == nil && ml.LeaderID == m.id {
			return m
		}
	}
	return nil
}

// --- /proc and /metrics

// procStat returns utime+stime in clock ticks and VmRSS in bytes.
func procStat(pid int) (ticks uint64, rss int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64) // field 14
	st, _ := strconv.ParseUint(f[12], 10, 64) // field 15
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			rss = kb << 10
		}
	}
	return ut + st, rss, nil
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func sampleAll(b *testing.B, ms []*member) (ticks uint64, rss, maxRSS int64) {
	b.Helper()
	for _, m := range ms {
		t, r, err := procStat(m.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		ticks += t
		rss += r
		maxRSS = max(maxRSS, r)
	}
	return ticks, rss, maxRSS
}

// raftLastIndex reads deployme_raft_last_index from m's /metrics.
func raftLastIndex(ctx context.Context, m *member) (float64, error) {
	resp, err := m.client().Do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return 0, err
	}
	if resp.Status != http.StatusOK {
		return 0, fmt.Errorf("/metrics: HTTP %d", resp.Status)
	}
	for line := range strings.SplitSeq(string(resp.Body), "\n") {
		if v, ok := strings.CutPrefix(line, "deployme_raft_last_index "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, errors.New("no deployme_raft_last_index in /metrics")
}

// --- simulated agents

// tracker follows one agent's stream through the client's own log records: "connected"
// after Welcome, "coordinator stream ended, reconnecting" when a session ends. It is the
// slog.Handler of that agent's client, so coordclient needs no hook.
type tracker struct {
	mu          sync.Mutex
	connected   bool
	addr        string
	connectedAt time.Time
	heartbeat   string
	first       chan struct{} // closed at the first connection
	once        sync.Once
}

func (t *tracker) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (t *tracker) WithAttrs([]slog.Attr) slog.Handler           { return t }
func (t *tracker) WithGroup(string) slog.Handler                { return t }

func (t *tracker) Handle(_ context.Context, r slog.Record) error {
	switch {
	case r.Message == "connected":
		var addr, hb string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "addr":
				addr = a.Value.String()
			case "heartbeat_interval":
				hb = a.Value.String()
			}
			return true
		})
		t.mu.Lock()
		t.connected, t.addr, t.connectedAt, t.heartbeat = true, addr, time.Now(), hb
		t.mu.Unlock()
		t.once.Do(func() { close(t.first) })
	case strings.HasPrefix(r.Message, "coordinator stream ended"):
		t.mu.Lock()
		t.connected = false
		t.mu.Unlock()
	}
	return nil
}

func (t *tracker) state() (connected bool, addr string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.connected, t.addr, t.connectedAt
}

type fleet struct {
	trackers []*tracker
	failed   atomic.Int64
	firstErr atomic.Pointer[string]
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

func startFleet(b *testing.B, n int, grpcAddrs []string, secret, caHash string) *fleet {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cancel: cancel}
	root := b.TempDir()
	sem := make(chan struct{}, registerConcurrency)
	for i := range n {
		tr := &tracker{first: make(chan struct{})}
		f.trackers = append(f.trackers, tr)
		// Round-robin: agent i tries replica i mod k first.
		addrs := make([]string, 0, len(grpcAddrs))
		for j := range grpcAddrs {
			addrs = append(addrs, grpcAddrs[(i+j)%len(grpcAddrs)])
		}
		inv := &inventory.Inventory{
			Hostname: fmt.Sprintf("fleet-%05d", i), OSRelease: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0",
			CPUs: 2, CPUModel: "sim", MemoryBytes: 4 << 30,
			Disks: []inventory.Disk{{Name: "vda", SizeBytes: 20 << 30}},
			NICs:  []inventory.NIC{{Name: "eth0", MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff), Up: true}},
		}
		cfg := coordclient.DefaultConfig()
		cfg.Coordinators = addrs
		cfg.JoinToken = secret
		cfg.CAHash = caHash
		cfg.StateDir = filepath.Join(root, strconv.Itoa(i))
		cfg.Inventory = func(context.Context) (*inventory.Inventory, error) { return inv, nil }
		cfg.Logger = slog.New(tr)
		// The inventory never changes: a long interval keeps this process's work to
		// heartbeats, as on a quiet fleet.
		cfg.InventoryInterval = time.Hour
		c, err := coordclient.New(cfg)
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			runDone := make(chan struct{})
			go func() {
				// The slot is given back once the agent holds its first stream (or gave up).
				select {
				case <-tr.first:
				case <-runDone:
				case <-ctx.Done():
				}
				<-sem
			}()
			err := c.Run(ctx)
			close(runDone)
			if err != nil {
				f.failed.Add(1)
				s := err.Error()
				f.firstErr.CompareAndSwap(nil, &s)
			}
		}()
	}
	return f
}

func (f *fleet) connected() int {
	k := 0
	for _, t := range f.trackers {
		if c, _, _ := t.state(); c {
			k++
		}
	}
	return k
}

func (f *fleet) stop(b *testing.B) {
	f.cancel()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Errorf("agents did not stop within 2 minutes")
	}
}

// --- the scenario

func runFleet(b *testing.B, replicas, n int) row {
	r := row{replicas: replicas, agents: n}
	ms := startCluster(b, replicas)
	l := leader(ms)
	if l == nil {
		b.Fatal("no leader")
	}
	ctx := context.Background()
	cl := l.client()
	infra, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("fleet"), Kind: ptr("onpremise")})
	if err != nil {
		b.Fatal(err)
	}
	var jt *v1.JoinToken
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	err = poll.Until(wctx, 50*time.Millisecond, func() (bool, error) {
		jt, err = cl.CreateJoinToken(wctx, infra.ID, v1.CreateJoinTokenRequest{MaxUses: ptr(n)})
		return err == nil && strings.Contains(jt.Command, "--ca-hash "), nil
	})
	wcancel()
	if err != nil {
		b.Fatalf("no join command pinning the agent CA: %v (last: %v)", err, jt)
	}
	caHash := strings.Fields(jt.Command[strings.Index(jt.Command, "--ca-hash "):])[1]
	_, r.baseRSS, _ = sampleAll(b, ms)

	var grpcAddrs []string
	for _, m := range ms {
		grpcAddrs = append(grpcAddrs, m.grpcAddr)
	}
	start := time.Now()
	f := startFleet(b, n, grpcAddrs, jt.Secret, caHash)
	defer f.stop(b)

	// Registered: the hosts API counts N. Connected: every client says it holds a stream.
	// Bounded: 10 minutes plus 100 ms per agent.
	limit := 10*time.Minute + time.Duration(n)*100*time.Millisecond
	rctx, rcancel := context.WithTimeout(ctx, limit)
	defer rcancel()
	last := 0
	// Agents whose Run ended gave up for good (a refused registration); the rest of the
	// run is measured with the agents that hold streams, and the table says how many failed.
	err = poll.Until(rctx, 200*time.Millisecond, func() (bool, error) {
		want := n - int(f.failed.Load())
		if r.registerAll == 0 {
			hosts, err := cl.ListHosts(rctx, client.ListOptions{InfraID: infra.ID, PerPage: 1})
			if err == nil {
				last = hosts.Total
				if hosts.Total >= want {
					r.registerAll = time.Since(start)
				}
			}
		}
		if r.registerAll != 0 && f.connected() == want {
			r.connectAll = time.Since(start)
			return true, nil
		}
		return false, nil
	})
	r.failed = int(f.failed.Load())
	if r.failed > 0 {
		msg := ""
		if p := f.firstErr.Load(); p != nil {
			msg = *p
		}
		note("%d replica(s), %d agents: %d agents gave up (first error: %s); %d hosts registered", replicas, n, r.failed, msg, last)
	}
	if err != nil {
		note("%d replica(s), %d agents: not all registered and connected (%v): %d hosts registered, %d connected, %d failed",
			replicas, n, err, last, f.connected(), r.failed)
		b.Errorf("fleet incomplete: %v", err)
		return r
	}
	b.Logf("%d replica(s): %d agents registered in %v, all connected in %v", replicas, n, r.registerAll, r.connectAll)

	// Steady state starts once the writes that follow connections (hosts recorded as
	// connected to a replica) are done: the Raft index has not moved for 3 s. Bounded: if
	// it never settles, the window is measured anyway and the rate says so.
	settleStart := time.Now()
	li0, err := raftLastIndex(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
	still := time.Now()
	err = poll.Until(sctx, 500*time.Millisecond, func() (bool, error) {
		li, err := raftLastIndex(sctx, l)
		if err != nil {
			return false, nil
		}
		if li != li0 {
			li0, still = li, time.Now()
			return false, nil
		}
		return time.Since(still) >= 3*time.Second, nil
	})
	scancel()
	r.settle = time.Since(settleStart)
	if err != nil {
		note("%d replica(s), %d agents: the Raft index was still moving 3 minutes after all agents connected", replicas, n)
	}
	t0, _, _ := sampleAll(b, ms)
	w0 := time.Now()
	time.Sleep(steadyWindow)
	t1, rss, maxRSS := sampleAll(b, ms)
	wall := time.Since(w0).Seconds()
	li1, err := raftLastIndex(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	r.rss, r.maxRSS = rss, maxRSS
	r.cpuPct = float64(t1-t0) / clockTicks / wall * 100
	r.raftWritesPerSec = (li1 - li0) / wall
	r.heartbeat = f.trackers[n-1].heartbeat
	if c := f.connected(); c != n-r.failed {
		note("%d replica(s), %d agents: %d held a stream at the end of the steady window", replicas, n, c)
	}

	if replicas > 1 {
		r.reconnectAll, r.moved, r.restartDown = restartOne(b, ms, f)
	}
	return r
}

// restartOne restarts a follower (SIGTERM, then the same data dir and ports) and returns
// the time from the SIGTERM until every agent holds a stream again, with every agent that
// was on that follower connected anew after the SIGTERM.
func restartOne(b *testing.B, ms []*member, f *fleet) (reconnect time.Duration, moved int, down time.Duration) {
	b.Helper()
	l := leader(ms)
	var victim *member
	for _, m := range ms {
		if m != l {
			victim = m
			break
		}
	}
	var on []*tracker
	for _, t := range f.trackers {
		if _, addr, _ := t.state(); addr == victim.grpcAddr {
			on = append(on, t)
		}
	}
	t0 := time.Now()
	victim.stop()
	victim.start()
	down = time.Since(t0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n := len(f.trackers) - int(f.failed.Load())
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		for _, t := range on {
			if c, _, at := t.state(); !c || !at.After(t0) {
				return false, nil
			}
		}
		if f.connected() != n {
			return false, nil
		}
		reconnect = time.Since(t0)
		return true, nil
	})
	if err != nil {
		note("restart of %s: not every agent reconnected within 5 minutes (%d of %d connected)", victim.id, f.connected(), n)
		b.Errorf("reconnect after restart: %v", err)
	}
	return reconnect, len(on), down
}

// --- output

func printTable() {
	fmt.Printf("\nAgent fleet (simulated agents: agent/coordclient in the test process; coordinators: bin/coordinator processes on 127.0.0.1), %d CPUs, %s RAM, %s (%s/%s), %s\n\n",
		runtime.NumCPU(), memTotal(), runtime.Version(), runtime.GOOS, runtime.GOARCH, fdNote)
	fmt.Println("| replicas | agents | failed | register all s | all streams s | heartbeat | RSS MiB (max replica) | RSS MiB per 1k agents | CPU % | CPU % per 1k agents | Raft idle after s | Raft writes/s | reconnect all s (agents moved) |")
	fmt.Println("|---------:|-------:|-------:|---------------:|--------------:|----------:|----------------------:|----------------------:|------:|--------------------:|------------------:|--------------:|-------------------------------:|")
	for _, r := range rows {
		k := float64(r.agents) / 1000
		rec := "-"
		if r.replicas > 1 && r.reconnectAll > 0 {
			rec = fmt.Sprintf("%.1f (%d; replica down+up %.1f s)", r.reconnectAll.Seconds(), r.moved, r.restartDown.Seconds())
		}
		if r.rss == 0 {
			fmt.Printf("| %8d | %6d | %6d | incomplete (see notes) |\n", r.replicas, r.agents, r.failed)
			continue
		}
		fmt.Printf("| %8d | %6d | %6d | %14.1f | %13.1f | %9s | %10.0f (%6.0f)     | %21.1f | %5.1f | %19.2f | %17.1f | %13.2f | %30s |\n",
			r.replicas, r.agents, r.failed, r.registerAll.Seconds(), r.connectAll.Seconds(), r.heartbeat,
			mib(r.rss), mib(r.maxRSS), mib(r.rss-r.baseRSS)/k, r.cpuPct, r.cpuPct/k, r.settle.Seconds(), r.raftWritesPerSec, rec)
	}
	fmt.Println()
	fmt.Println("RSS is summed over replicas at the end of the steady window; per 1k agents is (RSS - RSS before the fleet) / agents × 1000.")
	fmt.Printf("CPU is utime+stime of the coordinator processes over the %v steady window, in %% of one core, summed over replicas.\n", steadyWindow)
	fmt.Println("Raft idle after: from all agents connected until the leader's deployme_raft_last_index stood still for 3 s (the")
	fmt.Println("writes recording which replica each host is connected to); the steady window starts then.")
	fmt.Println("Raft writes/s is the leader's deployme_raft_last_index delta over the steady window.")
	for _, s := range notes {
		fmt.Println("Note:", s)
	}
	fmt.Println()
}

func mib(v int64) float64 { return float64(v) / (1 << 20) }

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func ptr[T any](v T) *T { return &v }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
