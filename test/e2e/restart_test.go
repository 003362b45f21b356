package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/poll"
)

// TestCleanRestart: after SIGTERM (exit code 0) and a restart on the same data dir, every
// object is there, deleted ones stay deleted, and the admin token still works. It also
// checks the generated admin token: printed once on stdout at bootstrap, not on restart,
// and saved with mode 0600.
func TestCleanRestart(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	first := n.start(nil, nil)
	first.waitReady(n.url())
	cl := n.client()
	populate(t, cl)
	before := dumpState(t, cl)
	first.stop()

	secret := n.adminToken()
	if got := strings.Count(first.stdout.String(), secret); got != 1 {
		t.Errorf("the admin token appears %d times on the first run's stdout, want once:\n%s", got, first.stdout.String())
	}
	fi, err := os.Stat(filepath.Join(n.dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("admin-token file mode %v, want 0600", mode)
	}

	second := n.start(nil, nil)
	second.waitReady(n.url())
	after := dumpState(t, cl)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("state after a clean restart (-before +after):\n%s", diff)
	}
	second.stop()
	if strings.Contains(second.stdout.String(), secret) {
		t.Errorf("the admin token was printed again on restart:\n%s", second.stdout.String())
	}
	if n.adminToken() != secret {
		t.Error("the admin-token file changed on restart")
	}
}

// TestKillWhileWriting: SIGKILL while clients write; after a restart every write that was
// answered 2xx before the kill is there. A write is acknowledged only after Raft commit,
// and commit means fsynced to the log, so acknowledged must mean durable.
func TestKillWhileWriting(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	p := n.start(nil, nil)
	p.waitReady(n.url())
	cl := n.client()
	base := dumpState(t, cl).objects() // the bootstrap admin token and managed infra

	l := newLedger()
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = writeLoop(cl, w, l, &stop)
		}()
	}
	// Kill once a good number of writes are acknowledged, with the writers still going.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := poll.Until(ctx, 2*time.Millisecond, func() (bool, error) { return l.acked.Load() >= 90, nil }); err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("only %d writes acknowledged: %v (writer errors: %v)", l.acked.Load(), err, errs)
	}
	p.kill()
	stop.Store(true)
	wg.Wait()
	interrupted := 0
	for _, err := range errs {
		if err != nil {
			interrupted++
		}
	}
	t.Logf("killed after %d acknowledged writes; %d of %d writers ended on a failed request", l.acked.Load(), interrupted, len(errs))

	p2 := n.start(nil, nil)
	p2.waitReady(n.url())
	after := dumpState(t, cl)
	if missing := l.missing(after); len(missing) > 0 {
		t.Errorf("%d acknowledged writes lost by the crash: %v", len(missing), missing)
	}
	// Each writer had at most one write in flight: only those may or may not be there.
	if extra := after.objects() - base - int(l.acked.Load()); extra < 0 || extra > len(errs) {
		t.Errorf("%d objects after restart beyond the %d acknowledged ones; want 0..%d (the writes in flight at the kill)",
			extra, l.acked.Load(), len(errs))
	} else {
		t.Logf("%d of the writes in flight at the kill were committed", extra)
	}
}

// TestRestoreFromSnapshot: with tiny snapshot settings, enough writes to take snapshots
// and compact the log; then SIGKILL and restart. The state must equal the one before the
// kill, and must have been rebuilt from a snapshot: the log no longer starts at index 1,
// so the bootstrap entry and the first writes (all present after restart, the admin token
// included) exist only in the snapshot.
func TestRestoreFromSnapshot(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	snapArgs := []string{"--raft-snapshot-threshold", "16", "--raft-snapshot-interval", "200ms", "--raft-trailing-logs", "8"}
	p := n.start(snapArgs, nil)
	p.waitReady(n.url())
	cl := n.client()

	// Two finished snapshots prove that the first one's log compaction is done too: Raft
	// takes a snapshot, compacts, and only then considers the next one.
	snapDir := filepath.Join(n.dataDir, "raft", "snapshots")
	snapshots := func() int {
		entries, _ := os.ReadDir(snapDir)
		k := 0
		for _, e := range entries {
			if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
				k++
			}
		}
		return k
	}
	l := newLedger()
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = writeLoop(cl, w, l, &stop)
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) {
		return l.acked.Load() >= 200 && snapshots() >= 2, nil
	})
	// Writers stop between requests, never mid-request, so that nothing is left in flight
	// when the state is read below.
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("%d writes, %d snapshots: %v", l.acked.Load(), snapshots(), err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("write failed: %v", err)
		}
	}
	before := dumpState(t, cl)
	t.Logf("%d objects written, %d snapshots", before.objects(), snapshots())
	p.kill()

	// The process is gone, so its bolt file can be opened to look at the log's bounds.
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.dataDir, "raft", "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	firstIndex, err1 := store.FirstIndex()
	lastIndex, err2 := store.LastIndex()
	if err := errors.Join(err1, err2, store.Close()); err != nil {
		t.Fatal(err)
	}
	t.Logf("raft log holds entries %d..%d", firstIndex, lastIndex)
	if firstIndex <= 1 {
		t.Fatalf("raft log still starts at index %d: it was never compacted, so a restart would not need the snapshot", firstIndex)
	}

	p2 := n.start(snapArgs, nil)
	p2.waitReady(n.url())
	after := dumpState(t, cl)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("state after restoring from a snapshot (-before kill +after restart):\n%s", diff)
	}
	if missing := l.missing(after); len(missing) > 0 {
		t.Errorf("acknowledged writes lost: %v", missing)
	}
}

// TestAdminTokenFileAndEnv: --admin-token-file provides the bootstrap token (not printed),
// DEPLOYME_HTTP_ADDR works like --http-addr, and the command line wins over it.
func TestAdminTokenFileAndEnv(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	secret := "dpl_e2e_given_admin_token_0123456789"
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Run 1: the HTTP address comes from the environment only.
	p := n.start([]string{"--admin-token-file", tokenFile}, map[string]string{"DEPLOYME_HTTP_ADDR": n.httpAddr})
	p.waitReady(n.url())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.New(n.url(), secret).ListTokens(ctx); err != nil {
		t.Errorf("the token from --admin-token-file is not an admin token: %v", err)
	}
	if _, err := client.New(n.url(), "dpl_not_the_admin_token_0123456789").ListTokens(ctx); client.Code(err) != "unauthorized" {
		t.Errorf("another token: %v, want unauthorized", err)
	}
	p.stop()
	if strings.Contains(p.stdout.String(), secret) {
		t.Errorf("a token given with --admin-token-file was printed:\n%s", p.stdout.String())
	}

	// Run 2: the flag and the variable disagree; the flag wins.
	// On 127.0.0.2, which no other test listens on: a freed 127.0.0.1 port may be taken by
	// another test package running alongside before the check below.
	_, port, _ := net.SplitHostPort(freeAddr(t))
	other := net.JoinHostPort("127.0.0.2", port)
	p2 := n.start([]string{"--http-addr", n.httpAddr}, map[string]string{"DEPLOYME_HTTP_ADDR": other})
	p2.waitReady(n.url())
	if _, err := client.New(n.url(), secret).ListTokens(ctx); err != nil {
		t.Errorf("after restart: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", other, time.Second); err == nil {
		conn.Close()
		t.Errorf("something listens on %s, the DEPLOYME_HTTP_ADDR the command line overrode", other)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(n.url() + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz on the flag's address: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	p2.stop()
}

// TestReadyMeansCaughtUp restarts a coordinator with a long log and reads as soon as
// /readyz answers 200: everything written before the restart must be visible, because
// readiness waits for the leader's barrier and for this replica to apply the read index.
func TestReadyMeansCaughtUp(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	p := n.start(nil, nil)
	p.waitReady(n.url())
	cl := n.client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 600 {
		name := fmt.Sprintf("t%d", i)
		if _, err := cl.CreateToken(ctx, v1.CreateTokenRequest{Name: &name, Permissions: &[]string{"read"}}); err != nil {
			t.Fatal(err)
		}
	}
	want := dumpState(t, cl)
	p.stop()
	hc := &http.Client{Timeout: time.Second}
	for run := range 4 {
		p := n.start(nil, nil)
		err := poll.Until(ctx, time.Millisecond, func() (bool, error) {
			resp, err := hc.Get(n.url() + "/readyz")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := cl.ListTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Items) != len(want.Tokens) {
			t.Errorf("restart %d: ready, but %d of the %d tokens are visible", run, len(got.Items), len(want.Tokens))
		}
		p.stop()
	}
}
