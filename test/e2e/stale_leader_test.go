package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/poll"
)

// TestStoppedLeaderServesNoStaleRead: a leader frozen with SIGSTOP still believes it leads
// when it wakes up. Meanwhile the two others elected a new leader and acknowledged a write
// W. Every read the old leader answers after SIGCONT must include W (or be a 503): a
// replica must confirm its leadership (or get a read index from the real leader) before
// answering, never serve its own, older state.
func TestStoppedLeaderServesNoStaleRead(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3 coordinator processes")
	}
	c := triStart(t)
	slow := c.slow
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second*slow)
	defer cancel()

	old := c.waitLeader(nil, 30*time.Second*slow)
	cl := c.client(old)
	inf, err := cl.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr("stale"), Kind: ptr("onpremise")})
	if err != nil {
		t.Fatal(err)
	}
	before, err := cl.CreateJoinToken(ctx, inf.ID, v1.CreateJoinTokenRequest{MaxUses: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	// Every replica has applied the state before W, so a stale read would show it.
	for _, m := range c.members {
		l, err := c.client(m).ListJoinTokens(ctx, inf.ID)
		if err != nil || len(l.Items) != 1 || l.Items[0].ID != before.ID {
			t.Fatalf("%s before the fault: %+v, %v", m, l, err)
		}
	}

	c.stopProc(old)
	t0 := time.Now()
	nl := c.waitLeader(old, 30*time.Second*slow)
	var follower *triMember
	for _, m := range c.members {
		if m != old && m != nl {
			follower = m
		}
	}
	// W, through the follower of the new term. An answer of 503 is retried (a duplicate
	// does no harm: the reads must include the acknowledged one).
	var w *v1.JoinToken
	err = poll.Until(ctx, 20*time.Millisecond, func() (bool, error) {
		jt, err := c.client(follower).CreateJoinToken(ctx, inf.ID, v1.CreateJoinTokenRequest{MaxUses: ptr(2)})
		if err != nil {
			t.Logf("write W through %s: %v (retrying)", follower, err)
			return false, nil
		}
		w = jt
		return true, nil
	})
	if err != nil {
		t.Fatalf("W was never acknowledged: %v", err)
	}
	t.Logf("%s stopped; %s leads after %v; W=%s acknowledged through %s", old, nl, time.Since(t0).Round(time.Millisecond), w.ID, follower)

	c.contProc(old)
	// Read through the woken old leader at once and for ~2 s (bounded by the count too).
	oldCl := c.client(old)
	start := time.Now()
	var answered, unavailable int
	for i := 0; i < 10000 && (time.Since(start) < 2*time.Second || answered == 0); i++ {
		if time.Since(start) > 30*time.Second*slow {
			t.Fatalf("the old leader answered no read in %v (%d 503s)", time.Since(start), unavailable)
		}
		l, err := oldCl.ListJoinTokens(ctx, inf.ID)
		if err != nil {
			if triUnavailable(err) {
				unavailable++
				continue
			}
			t.Fatalf("read %d through the old leader %s after %v: %v", i, old, time.Since(start), err)
		}
		answered++
		if !slices.ContainsFunc(l.Items, func(jt v1.JoinToken) bool { return jt.ID == w.ID }) {
			t.Fatalf("stale read %d through the old leader %s, %v after SIGCONT: %d join tokens, W (%s) missing: %+v",
				i, old, time.Since(start), len(l.Items), w.ID, l.Items)
		}
	}
	t.Logf("after SIGCONT: %d reads answered through %s, all with W; %d answered 503", answered, old, unavailable)
}
