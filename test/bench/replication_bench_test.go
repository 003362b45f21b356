package bench

// BenchmarkReplication measures replicated writes: REST writes against 1 and 3 in-process
// replicas, the same load in the same run against a 3-member etcd (Debian's etcd-server,
// optional: without the binary its rows are skipped with a printed note), and leader
// failover unavailability. Its rows go to the second table printed by TestMain.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/internal/poll"
)

// replRow is one row of the replication table.
type replRow struct {
	system   string
	replicas int
	clients  int
	r        result
	ratio    float64 // ours/etcd writes/s; 0 when not compared
}

var (
	replMu    sync.Mutex
	replRows  []replRow
	replNotes []string
	// failover unavailability samples and the writer count that measured them.
	failover        []time.Duration
	stopDurs        []time.Duration
	failoverWriters int
)

// replOps is each write cell's fixed op count, by client count, so percentiles compare.
var replOps = map[int]int{1: 1000, 8: 2000, 64: 2000}

const (
	failoverKills   = 10
	failoverWriterN = 4
	etcdValueSize   = 256
)

func replNote(format string, args ...any) {
	replMu.Lock()
	replNotes = append(replNotes, fmt.Sprintf(format, args...))
	replMu.Unlock()
}

// BenchmarkReplication ignores b.N (run with -benchtime 1x): every cell is a fixed number of
// writes.
func BenchmarkReplication(b *testing.B) {
	ours := map[[2]int]result{} // (replicas, clients) -> result
	for _, n := range []int{1, 3} {
		c := clustertest.Start(b, clustertest.Options{Replicas: n})
		for _, clients := range concurrency {
			ours[[2]int{n, clients}] = oursWrites(b, c, clients, replOps[clients])
		}
		if n == 3 {
			measureFailover(b, c)
		}
		c.StopAll()
	}
	etcd := map[int]result{}
	if bin, err := exec.LookPath("etcd"); err != nil {
		replNote("etcd rows skipped: no etcd binary on PATH (apt-get install -y etcd-server)")
	} else if ec, err := startEtcd(b, bin, 3); err != nil {
		replNote("etcd rows skipped: %v", err)
	} else {
		replNote("etcd: %s, 3 members on 127.0.0.1, v3 JSON gateway /v3/kv/put, %d-byte values", ec.version, etcdValueSize)
		for _, clients := range concurrency {
			etcd[clients] = etcdWrites(b, ec, clients, replOps[clients])
		}
		ec.stop()
	}
	for _, n := range []int{1, 3} {
		for _, clients := range concurrency {
			row := replRow{system: "deployme", replicas: n, clients: clients, r: ours[[2]int{n, clients}]}
			if e, ok := etcd[clients]; ok && n == 3 && e.reqPerSec > 0 {
				row.ratio = row.r.reqPerSec / e.reqPerSec
			}
			replMu.Lock()
			replRows = append(replRows, row)
			replMu.Unlock()
		}
	}
	for _, clients := range concurrency {
		if e, ok := etcd[clients]; ok {
			replMu.Lock()
			replRows = append(replRows, replRow{system: "etcd", replicas: 3, clients: clients, r: e})
			replMu.Unlock()
		}
	}
}

// benchHTTP is a keep-alive HTTP client sized for 64 concurrent callers per host.
func benchHTTP(timeout time.Duration) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128, MaxIdleConns: 512}, Timeout: timeout}
}

// freshWriter makes a fresh enterprise admin token (POST /v1/tokens needs admin) and returns
// one client per replica using it, after the token works on every running replica (a
// follower knows it once it has applied the entry).
func freshWriter(b *testing.B, c *clustertest.Cluster, hc *http.Client) []*client.Client {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := c.Leader(30 * time.Second).Client().WithHTTPClient(hc)
	tok, err := admin.CreateToken(ctx, v1.CreateTokenRequest{Name: ptr("bench-writer"), Permissions: ptr([]string{"admin", "read", "write"}), Plan: ptr("enterprise")})
	if err != nil {
		b.Fatalf("create writer token: %v", err)
	}
	var out []*client.Client
	for _, r := range c.Replicas {
		cl := r.Client().WithHTTPClient(hc).WithToken(tok.Secret)
		out = append(out, cl)
		if !r.Running() {
			continue
		}
		err := poll.Until(ctx, 5*time.Millisecond, func() (bool, error) {
			_, err := cl.GetToken(ctx, tok.ID)
			return err == nil, nil
		})
		if err != nil {
			b.Fatalf("writer token not usable on %s: %v", r.ID, err)
		}
	}
	return out
}

// tokenName is a 128-character name: with permissions, scope, expiry and plan the request
// body is about 256 bytes, like the etcd puts.
var tokenName = strings.Repeat("n", 118)

func writeReq(k int64) v1.CreateTokenRequest {
	return v1.CreateTokenRequest{
		Name:        ptr(fmt.Sprintf("%s%010d", tokenName, k)),
		Permissions: ptr([]string{"read"}),
		Scope:       ptr("*"),
		Expires:     ptr("90d"),
		Plan:        ptr("community"),
	}
}

var writeSeq atomic.Int64

// oursWrites sends ops POST /v1/tokens round-robin over every replica from clients goroutines.
func oursWrites(b *testing.B, c *clustertest.Cluster, clients, ops int) result {
	b.Helper()
	hc := benchHTTP(30 * time.Second)
	defer hc.CloseIdleConnections()
	cls := freshWriter(b, c, hc)
	ctx := context.Background()
	var rr atomic.Int64
	return run(b, fmt.Sprintf("write/%d replicas", len(c.Replicas)), clients, ops, func() error {
		i := rr.Add(1)
		_, err := cls[int(i)%len(cls)].CreateToken(ctx, writeReq(writeSeq.Add(1)))
		return err
	})
}

// measureFailover stops the leader failoverKills times under a continuous write load and
// records, each time, the delay from the stop to the first successful write issued after it.
func measureFailover(b *testing.B, c *clustertest.Cluster) {
	b.Helper()
	hc := benchHTTP(10 * time.Second)
	defer hc.CloseIdleConnections()
	var cls atomic.Pointer[[]*client.Client]
	setWriter := func() {
		w := freshWriter(b, c, hc)
		cls.Store(&w)
	}
	setWriter()

	// Writers record the end time of every successful write that started after killAt.
	var killAt atomic.Int64 // UnixNano; 0 = no kill pending
	var firstOK atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ctx := context.Background()
	for w := range failoverWriterN {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := c.Replicas[i%len(c.Replicas)]
				if !r.Running() {
					continue // a client that knows the member is down tries the next one
				}
				all := *cls.Load()
				start := time.Now().UnixNano()
				_, err := all[r.Index].CreateToken(ctx, writeReq(writeSeq.Add(1)))
				if err == nil {
					if k := killAt.Load(); k != 0 && start >= k {
						firstOK.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	for kill := range failoverKills {
		// A fresh token per round keeps each token far below its 10,000 writes a minute.
		setWriter()
		leader := c.Leader(30 * time.Second)
		firstOK.Store(0)
		// Only writes issued once the stop has returned count (the stopping leader may still
		// commit while it shuts down), but the delay is measured from the stop call.
		t0 := time.Now()
		leader.Stop()
		stopDurs = append(stopDurs, time.Since(t0))
		killAt.Store(time.Now().UnixNano())
		wctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := poll.Until(wctx, time.Millisecond, func() (bool, error) { return firstOK.Load() != 0, nil })
		cancel()
		killAt.Store(0)
		if err != nil {
			b.Errorf("failover %d: no successful write within 60s of stopping %s", kill+1, leader.ID)
		} else {
			failover = append(failover, time.Duration(firstOK.Load()-t0.UnixNano()))
		}
		leader.Restart()
		c.WaitVoters(3)
	}
	failoverWriters = failoverWriterN
}

// --- etcd

type etcdCluster struct {
	version string
	clients []string // client URLs
	cmds    []*exec.Cmd
	dirs    []string
	once    sync.Once
}

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startEtcd starts an n-member etcd cluster as child processes on 127.0.0.1 and waits until
// every member is healthy. It is stopped (by PID, data dirs removed) when the benchmark ends.
func startEtcd(b *testing.B, bin string, n int) (*etcdCluster, error) {
	b.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %v", bin, err)
	}
	ver := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	ec := &etcdCluster{version: ver}
	b.Cleanup(ec.stop)
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	for i := range n {
		dir, err := os.MkdirTemp("", "bench-etcd-")
		if err != nil {
			return nil, err
		}
		ec.dirs = append(ec.dirs, dir)
		curl := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		purl := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("e%d", i),
			"--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", curl, "--advertise-client-urls", curl,
			"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", "bench", "--initial-cluster-state", "new",
		)
		logf, err := os.Create(filepath.Join(dir, "etcd.log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, fmt.Errorf("start etcd: %v", err)
		}
		logf.Close()
		ec.cmds = append(ec.cmds, cmd)
		ec.clients = append(ec.clients, curl)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, u := range ec.clients {
		err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
			resp, err := hc.Get(u + "/health")
			if err != nil {
				return false, nil
			}
			defer resp.Body.Close()
			var h struct {
				Health string `json:"health"`
			}
			return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true", nil
		})
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(ec.dirs[0], "etcd.log"))
			ec.stop()
			return nil, fmt.Errorf("etcd at %s not healthy within 60s; member 0 log tail: %s", u, tail(string(log), 400))
		}
	}
	return ec, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop kills the members this benchmark started, by PID, and removes their data dirs.
func (ec *etcdCluster) stop() {
	ec.once.Do(func() {
		for _, cmd := range ec.cmds {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		for _, d := range ec.dirs {
			_ = os.RemoveAll(d)
		}
	})
}

// etcdWrites puts ops 256-byte values through the v3 JSON gateway, round-robin over members.
func etcdWrites(b *testing.B, ec *etcdCluster, clients, ops int) result {
	b.Helper()
	hc := benchHTTP(30 * time.Second)
	defer hc.CloseIdleConnections()
	value := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("v"), etcdValueSize))
	var rr atomic.Int64
	return run(b, "etcd put", clients, ops, func() error {
		i := rr.Add(1)
		key := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "bench/%010d", writeSeq.Add(1)))
		body := `{"key":"` + key + `","value":"` + value + `"}`
		resp, err := hc.Post(ec.clients[int(i)%len(ec.clients)]+"/v3/kv/put", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd put: %d %s", resp.StatusCode, tail(string(data), 200))
		}
		if !bytes.Contains(data, []byte(`"header"`)) {
			return errors.New("etcd put: no header in answer")
		}
		return nil
	})
}

// --- the second table

func printReplicationTable() {
	fmt.Printf("\nReplicated writes (deployme: POST /v1/tokens, ~256-byte body; etcd: 256-byte puts), %d CPUs, %s RAM, %s (%s/%s)\n\n",
		runtime.NumCPU(), memTotal(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Println("| system   | replicas | clients |   ops | writes/s |   p50 ms |   p99 ms | errors | ours/etcd |")
	fmt.Println("|----------|---------:|--------:|------:|---------:|---------:|---------:|-------:|----------:|")
	for _, r := range replRows {
		ratio := "-"
		if r.ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.ratio)
		}
		fmt.Printf("| %-8s | %8d | %7d | %5d | %8.0f | %8.2f | %8.2f | %6d | %9s |\n", r.system, r.replicas, r.clients, r.r.ops, r.r.reqPerSec,
			float64(r.r.p50.Microseconds())/1000, float64(r.r.p99.Microseconds())/1000, r.r.errors, ratio)
	}
	fmt.Println()
	if len(failover) > 0 {
		s := slices.Clone(failover)
		slices.Sort(s)
		sd := slices.Clone(stopDurs)
		slices.Sort(sd)
		fmt.Printf("Leader failover, 3 replicas, %d writers, leader stopped %d times: unavailability (stop call to first successful write issued after the stop returned) median %.0f ms, max %.0f ms; the stop itself took median %.0f ms, max %.0f ms\n",
			failoverWriters, len(s), ms(median(s)), ms(s[len(s)-1]), ms(median(sd)), ms(sd[len(sd)-1]))
		var each []string
		for _, d := range failover {
			each = append(each, fmt.Sprintf("%.0f", ms(d)))
		}
		fmt.Printf("Failover samples in kill order (ms): %s\n", strings.Join(each, ", "))
	}
	for _, n := range replNotes {
		fmt.Println(n)
	}
	fmt.Println()
}

// median of a sorted, non-empty slice.
func median(s []time.Duration) time.Duration {
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
