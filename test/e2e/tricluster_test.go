package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/poll"
)

// triMember is one replica of a 3-process cluster: its node (data dir, ports), its
// current process, and whether the test currently considers it running.
type triMember struct {
	id   string
	n    *node
	p    *proc
	up   atomic.Bool
	args []string // the flags of every start after the first (no --join)
}

// triCluster is 3 coordinator processes: the first bootstraps with a known admin token,
// the two others join it with that token.
type triCluster struct {
	t       *testing.T
	secret  string
	members []*triMember
	// slow scales deadlines: the race build of the binary is several times slower.
	slow time.Duration
}

// triScale is the factor applied to the fault-handling deadlines.
func triScale() time.Duration {
	if raceEnabled {
		return 3
	}
	return 1
}

// triStart starts the cluster and waits until it has a leader and 3 reachable voters.
// extra flags are given to every replica.
func triStart(t *testing.T, extra ...string) *triCluster {
	t.Helper()
	c := &triCluster{t: t, secret: "dpl_e2e_tri_admin_token_0123456789abcdef", slow: triScale()}
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(c.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		m := &triMember{id: fmt.Sprintf("n%d", i+1), n: newNode(t)}
		m.args = append([]string{"--node-id", m.id, "--admin-token-file", tokenFile}, extra...)
		first := m.args
		if i > 0 {
			first = append(append([]string{}, m.args...), "--join", c.members[0].n.url())
		}
		m.p = m.n.start(first, nil)
		m.p.waitReady(m.n.url())
		m.up.Store(true)
		c.members = append(c.members, m)
	}
	c.waitHealthy(60 * time.Second * c.slow)
	return c
}

// client is a client of m's HTTP API with a bounded request time.
func (c *triCluster) client(m *triMember) *client.Client {
	return client.New(m.n.url(), c.secret).WithHTTPClient(&http.Client{Timeout: 10 * time.Second * c.slow})
}

// quickClient is for status polls: short timeout, so a stopped process does not stall a poll.
func (c *triCluster) quickClient(m *triMember) *client.Client {
	return client.New(m.n.url(), c.secret).WithHTTPClient(&http.Client{Timeout: time.Second})
}

// leader returns the member that, by its own account, leads (nil if none does). A
// replica's own view of being leader is the one that is never stale for long.
func (c *triCluster) leader(except *triMember) *triMember {
	for _, m := range c.members {
		if m == except || !m.up.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ml, err := c.quickClient(m).Members(ctx)
		cancel()
		if err == nil && ml.LeaderID == m.id {
			return m
		}
	}
	return nil
}

// waitLeader polls until a member other than except leads and serves a linearizable
// read (which needs its term's barrier and a quorum).
func (c *triCluster) waitLeader(except *triMember, d time.Duration) *triMember {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var l *triMember
	err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		l = c.leader(except)
		if l == nil {
			return false, nil
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		_, err := c.quickClient(l).ListInfras(rctx)
		return err == nil, nil
	})
	if err != nil {
		c.t.Fatalf("no leader (other than %v) serving within %v: %v", except, d, err)
	}
	return l
}

// waitHealthy polls until a leader reports 3 reachable voters.
func (c *triCluster) waitHealthy(d time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last string
	err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		l := c.leader(nil)
		if l == nil {
			last = "no leader"
			return false, nil
		}
		mctx, mcancel := context.WithTimeout(ctx, 2*time.Second)
		defer mcancel()
		ml, err := c.quickClient(l).Members(mctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%+v", ml.Items)
		if len(ml.Items) != 3 {
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
		c.t.Fatalf("cluster not healthy (3 reachable voters) within %v: %v; last members: %s", d, err, last)
	}
}

// kill SIGKILLs m's process and reaps it.
func (c *triCluster) kill(m *triMember) {
	c.t.Helper()
	m.up.Store(false)
	m.p.kill()
}

// restart starts m again on its data dir (it rejoins by itself) and waits for /readyz.
func (c *triCluster) restart(m *triMember) {
	c.t.Helper()
	m.p = m.n.start(m.args, nil)
	m.p.waitReady(m.n.url())
	m.up.Store(true)
}

// stopProc SIGSTOPs m's process; a cleanup sends SIGCONT first, so the process cleanup's
// SIGKILL (registered earlier, run later) finds it running.
func (c *triCluster) stopProc(m *triMember) {
	c.t.Helper()
	p := m.p
	c.t.Cleanup(func() { p.signal(syscall.SIGCONT) })
	m.up.Store(false)
	p.signal(syscall.SIGSTOP)
}

func (c *triCluster) contProc(m *triMember) {
	m.p.signal(syscall.SIGCONT)
	m.up.Store(true)
}

// triRefused tells whether a request certainly never reached the server: the connection
// was refused, so nothing was sent.
func triRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// triUnavailable tells whether err is a 503 answer.
func triUnavailable(err error) bool {
	var e *client.APIError
	return errors.As(err, &e) && e.Status == http.StatusServiceUnavailable && e.Body.Code == v1.CodeUnavailable
}

func (m *triMember) String() string {
	if m == nil {
		return "<none>"
	}
	return m.id
}
