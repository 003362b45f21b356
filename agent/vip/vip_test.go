//go:build linux

package vip

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"

	"github.com/deployme/deployme/internal/netnstest"
)

func holding(want bool) func(Status) bool {
	return func(st Status) bool { return st.Holding == want }
}

func TestHolderAddsAddressAndSendsGARP(t *testing.T) {
	sw := newLAN(t)
	a := host(t, sw, "10.50.0.11/24")
	host(t, sw, "10.50.0.12/24")
	obs := host(t, sw, "10.50.0.99/24")
	serve(t, a, "a")
	o := newObserver(t, obs)
	aMAC := macOf(t, a)

	rec := &recorder{}
	cfg := testConfig(t, a, newReadyz(true), rec)
	m := start(t, cfg, rec)
	asg := Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true}
	m.Set(asg)

	st := rec.waitLast(t, "c1", "holding", holding(true))
	if diff := cmp.Diff(Status{ClusterID: "c1", Epoch: 1, Holding: true, Ready: st.Ready}, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	got := addrsOf(t, a, testVIP.Addr())
	if len(got) != 1 || got[0].IPNet.String() != testVIP.String() || got[0].Label != "eth0"+labelSuffix {
		t.Fatalf("VIP on a: %v, want %s labelled eth0%s", got, testVIP, labelSuffix)
	}
	if got[0].Flags&ifaNoPrefixRoute == 0 || got[0].Broadcast != nil {
		t.Errorf("VIP flags %#x, broadcast %v: want IFA_F_NOPREFIXROUTE and no broadcast", got[0].Flags, got[0].Broadcast)
	}

	eventually(t, "gratuitous ARPs from a", func() bool {
		return len(o.garps(testVIP.Addr(), aMAC)) >= cfg.GARPCount
	})
	for _, g := range o.garps(testVIP.Addr(), aMAC) {
		if g.dst.String() != "ff:ff:ff:ff:ff:ff" {
			t.Errorf("gratuitous ARP sent to %s, want broadcast", g.dst)
		}
	}

	// The same assignment again changes nothing: no second round of announcements. Only
	// an absence can show it, so wait well past the time a second round would take.
	m.Set(asg)
	time.Sleep(3 * time.Duration(cfg.GARPCount) * cfg.GARPInterval)
	if n := len(o.garps(testVIP.Addr(), aMAC)); n != cfg.GARPCount {
		t.Errorf("%d gratuitous ARPs, want %d", n, cfg.GARPCount)
	}

	// The kernel of a answers ARP for the VIP, and TCP to it reaches a.
	obsIP := netip.MustParseAddr("10.50.0.99")
	if err := o.request(obsIP, testVIP.Addr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ARP reply for the VIP", func() bool { return len(o.replies(testVIP.Addr(), obsIP)) > 0 })
	if r := o.replies(testVIP.Addr(), obsIP)[0]; r.p.SenderHardwareAddr.String() != aMAC.String() {
		t.Errorf("ARP reply from %s, want a's %s", r.p.SenderHardwareAddr, aMAC)
	}
	if name, err := whoAnswers(obs, "10.50.0.100:6443"); err != nil || name != "a" {
		t.Errorf("TCP to the VIP: %q, %v; want a", name, err)
	}

	// A stopped agent must not keep answering for the VIP.
	before := addrStrings(t, a, testVIP.Addr())
	if err := m.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := addrsOf(t, a, testVIP.Addr()); len(got) != 0 {
		t.Errorf("VIP still on a after Run returned: %v", got)
	}
	if diff := cmp.Diff(before, addrStrings(t, a, testVIP.Addr())); diff != "" {
		t.Errorf("other addresses changed (-before +after):\n%s", diff)
	}
}

func TestFencing(t *testing.T) {
	sw := newLAN(t)
	a := host(t, sw, "10.50.0.11/24")
	a.MustIP(t, "addr", "add", "10.50.0.13/24", "dev", "eth0")
	a.MustIP(t, "addr", "add", "192.168.7.1/24", "dev", "eth0")
	a.MustIP(t, "addr", "add", "fd00::11/64", "dev", "eth0", "nodad")
	before := addrStrings(t, a, testVIP.Addr())

	rec := &recorder{}
	m := start(t, testConfig(t, a, newReadyz(true), rec), rec)

	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 2, Holder: true})
	rec.waitLast(t, "c1", "holding at epoch 2", func(st Status) bool { return st.Holding && st.Epoch == 2 })

	// A stale assignment is ignored. Assignments of different clusters are applied in the
	// order they came, so once the barrier cluster reports, the stale one was dealt with.
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: false})
	m.Set(Assignment{ClusterID: "barrier", Address: netip.MustParsePrefix("10.50.0.200/24"), Epoch: 1})
	rec.waitLast(t, "barrier", "barrier status", func(Status) bool { return true })
	if st, _ := rec.last("c1"); !st.Holding || st.Epoch != 2 {
		t.Errorf("after a stale assignment: %+v, want holding at epoch 2", st)
	}
	if got := addrsOf(t, a, testVIP.Addr()); len(got) != 1 {
		t.Errorf("after a stale assignment the VIP is on %d links, want 1", len(got))
	}

	// A newer epoch naming another holder takes it away.
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 3, Holder: false})
	st := rec.waitLast(t, "c1", "released at epoch 3", func(st Status) bool { return !st.Holding && st.Epoch == 3 })
	if st.Reason != "" || st.Released {
		t.Errorf("status %+v, want no reason and not released", st)
	}
	if got := addrsOf(t, a, testVIP.Addr()); len(got) != 0 {
		t.Errorf("VIP still on a: %v", got)
	}
	if diff := cmp.Diff(before, addrStrings(t, a, testVIP.Addr())); diff != "" {
		t.Errorf("other addresses changed (-before +after):\n%s", diff)
	}

	// A new address for the cluster: the old one must not stay behind.
	moved := netip.MustParsePrefix("10.50.0.101/24")
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 4, Holder: true})
	rec.waitLast(t, "c1", "holding at epoch 4", func(st Status) bool { return st.Holding && st.Epoch == 4 })
	m.Set(Assignment{ClusterID: "c1", Address: moved, Epoch: 5, Holder: true})
	rec.waitLast(t, "c1", "holding at epoch 5", func(st Status) bool { return st.Holding && st.Epoch == 5 })
	if got := addrsOf(t, a, testVIP.Addr()); len(got) != 0 {
		t.Errorf("previous VIP still on a: %v", got)
	}
	if got := addrsOf(t, a, moved.Addr()); len(got) != 1 {
		t.Errorf("new VIP on %d links, want 1", len(got))
	}
	m.Set(Assignment{ClusterID: "c1", Address: moved, Epoch: 6, Holder: false})
	rec.waitLast(t, "c1", "not holding at epoch 6", func(st Status) bool { return !st.Holding && st.Epoch == 6 })

	// An address equal to a VIP that we did not add is never removed.
	own := netip.MustParsePrefix("10.50.0.13/24")
	m.Set(Assignment{ClusterID: "foreign", Address: own, Epoch: 1, Holder: false})
	st = rec.waitLast(t, "foreign", "foreign status", func(Status) bool { return true })
	if diff := cmp.Diff(Status{ClusterID: "foreign", Epoch: 1, Holding: true, Ready: st.Ready, Reason: ReasonForeignAddress}, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, addrStrings(t, a, testVIP.Addr())); diff != "" {
		t.Errorf("other addresses changed (-before +after):\n%s", diff)
	}
}

func TestReleaseWhenAPIServerStops(t *testing.T) {
	t.Run("released after FailAfter failures", func(t *testing.T) {
		sw := newLAN(t)
		a := host(t, sw, "10.50.0.11/24")
		rz := newReadyz(false)
		rec := &recorder{}
		// failuresAtRelease is how many checks had failed when Released was reported.
		var failuresAtRelease atomic.Int64
		failuresAtRelease.Store(-1)
		rec.onReport = func(st Status) {
			if st.Released {
				failuresAtRelease.CompareAndSwap(-1, rz.failures.Load())
			}
		}
		cfg := testConfig(t, a, rz, rec)
		m := start(t, cfg, rec)

		m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
		rec.waitLast(t, "c1", "holding", holding(true))
		// Ready turning true after the assignment is a check that succeeded since it began,
		// which failures need before they count.
		rz.ok.Store(true)
		rec.waitLast(t, "c1", "holding and ready", func(st Status) bool { return st.Holding && st.Ready })

		failedBefore := rz.failures.Load()
		rz.ok.Store(false)
		st := rec.waitLast(t, "c1", "released", func(st Status) bool { return st.Released })
		want := Status{ClusterID: "c1", Epoch: 1, Released: true, Reason: ReasonAPIServerUnready}
		if diff := cmp.Diff(want, st); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
		if n := failuresAtRelease.Load() - failedBefore; n < int64(cfg.FailAfter) {
			t.Errorf("released after %d failed checks, want at least %d", n, cfg.FailAfter)
		}
		if got := addrsOf(t, a, testVIP.Addr()); len(got) != 0 {
			t.Errorf("VIP still on a: %v", got)
		}

		// The API server coming back does not bring the VIP back at the same epoch...
		rz.ok.Store(true)
		st = rec.waitLast(t, "c1", "ready again", func(st Status) bool { return st.Ready })
		if st.Holding || !st.Released {
			t.Errorf("status %+v, want released and not holding", st)
		}
		m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
		m.Set(Assignment{ClusterID: "barrier", Address: netip.MustParsePrefix("10.50.0.200/24"), Epoch: 1})
		rec.waitLast(t, "barrier", "barrier status", func(Status) bool { return true })
		if got := addrsOf(t, a, testVIP.Addr()); len(got) != 0 {
			t.Errorf("VIP taken again at the epoch it was released at: %v", got)
		}

		// ...a higher one does.
		m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 2, Holder: true})
		st = rec.waitLast(t, "c1", "holding at epoch 2", func(st Status) bool { return st.Holding && st.Epoch == 2 })
		if st.Released || st.Reason != "" {
			t.Errorf("status %+v, want neither released nor a reason", st)
		}
	})

	t.Run("never ready keeps the VIP through kubeadm init", func(t *testing.T) {
		sw := newLAN(t)
		a := host(t, sw, "10.50.0.11/24")
		rz := newReadyz(false)
		rec := &recorder{}
		cfg := testConfig(t, a, rz, rec)
		m := start(t, cfg, rec)

		m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
		rec.waitLast(t, "c1", "holding", holding(true))
		eventually(t, "many failed checks", func() bool { return rz.failures.Load() >= int64(4*cfg.FailAfter) })
		// A check result is applied before the next check starts, so the last failure
		// counted above has been acted upon once one more check ran.
		n := rz.calls.Load()
		eventually(t, "one more check", func() bool { return rz.calls.Load() > n+1 })
		for _, st := range rec.history("c1") {
			if st.Released || st.Ready {
				t.Errorf("status %+v: an API server never seen ready must not make the VIP go", st)
			}
		}
		if got := addrsOf(t, a, testVIP.Addr()); len(got) != 1 {
			t.Errorf("VIP on %d links, want 1", len(got))
		}
	})
}

func TestMoveBetweenTwoManagers(t *testing.T) {
	sw := newLAN(t)
	a := host(t, sw, "10.50.0.11/24")
	b := host(t, sw, "10.50.0.12/24")
	obs := host(t, sw, "10.50.0.99/24")
	serve(t, a, "a")
	serve(t, b, "b")
	aMAC, bMAC := macOf(t, a), macOf(t, b)
	o := newObserver(t, obs)

	rzA := newReadyz(false)
	recA, recB := &recorder{}, &recorder{}
	released := make(chan time.Time, 1)
	recA.onReport = func(st Status) {
		if st.Released {
			select {
			case released <- time.Now():
			default:
			}
		}
	}
	ma := start(t, testConfig(t, a, rzA, recA), recA)
	mb := start(t, testConfig(t, b, newReadyz(true), recB), recB)

	ma.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
	mb.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: false})
	recA.waitLast(t, "c1", "a holding", holding(true))
	// Ready turning true after the assignment: a's failures will count from now on.
	rzA.ok.Store(true)
	recA.waitLast(t, "c1", "a holding and ready", func(st Status) bool { return st.Holding && st.Ready })
	recB.waitLast(t, "c1", "b's status", func(st Status) bool { return !st.Holding })
	var name string
	eventually(t, "TCP to the VIP reaching a", func() bool {
		name, _ = whoAnswers(obs, "10.50.0.100:6443")
		return name == "a"
	})

	// The observer asks for the VIP every 20 ms through the whole move. Each request comes
	// from a sender address of its own (cycling through 100), so a reply tells which
	// request it answers.
	type req struct {
		at     time.Time
		sender netip.Addr
	}
	var (
		mu   sync.Mutex
		reqs []req
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			sender := netip.AddrFrom4([4]byte{10, 50, 0, byte(130 + i%100)})
			mu.Lock()
			reqs = append(reqs, req{time.Now(), sender})
			mu.Unlock()
			if err := o.request(sender, testVIP.Addr()); err != nil {
				t.Errorf("ARP request: %v", err)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	stopRequests := func() { cancel(); <-done }
	defer stopRequests()

	eventually(t, "replies from a", func() bool {
		return len(o.filter(func(s seenARP) bool {
			return s.p.Operation == arp.OperationReply && s.p.SenderHardwareAddr.String() == aMAC.String()
		})) >= 3
	})

	// a's API server stops; a gives the VIP up by itself; the coordinator (the test)
	// then names b at epoch 2.
	rzA.ok.Store(false)
	var relAt time.Time
	select {
	case relAt = <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("a did not release the VIP")
	}
	mb.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 2, Holder: true})
	ma.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 2, Holder: false})

	fromB := func(s seenARP) bool {
		return s.p.Operation == arp.OperationReply && s.p.SenderIP == testVIP.Addr() && s.p.SenderHardwareAddr.String() == bMAC.String()
	}
	eventually(t, "replies from b", func() bool { return len(o.filter(fromB)) >= 5 })
	stopRequests()
	recB.waitLast(t, "c1", "b holding at epoch 2", func(st Status) bool { return st.Holding && st.Epoch == 2 })
	recA.waitLast(t, "c1", "a at epoch 2", func(st Status) bool { return !st.Holding && st.Epoch == 2 })

	// Attribute each reply to the latest request from its target address sent before it.
	mu.Lock()
	defer mu.Unlock()
	macs := make([]map[string]bool, len(reqs))
	var firstB time.Time
	lastA := -1
	for _, r := range o.filter(func(s seenARP) bool {
		return s.p.Operation == arp.OperationReply && s.p.SenderIP == testVIP.Addr() && s.p.TargetIP != s.p.SenderIP
	}) {
		i := -1
		for j := range reqs {
			if reqs[j].sender == r.p.TargetIP && !reqs[j].at.After(r.at) {
				i = j
			}
		}
		if i < 0 {
			continue // the dial's own resolution before the requests started
		}
		if macs[i] == nil {
			macs[i] = map[string]bool{}
		}
		mac := r.p.SenderHardwareAddr.String()
		macs[i][mac] = true
		switch mac {
		case aMAC.String():
			lastA = max(lastA, i)
		case bMAC.String():
			if firstB.IsZero() {
				firstB = r.at
			}
		}
	}
	firstBReq := -1
	for i, m := range macs {
		if len(m) > 1 {
			t.Errorf("request %d answered by %d MACs: %v", i, len(m), m)
		}
		if m[bMAC.String()] && firstBReq < 0 {
			firstBReq = i
		}
	}
	if firstBReq < 0 || lastA >= firstBReq {
		t.Errorf("a answered request %d, b first answered request %d: want a strictly before b", lastA, firstBReq)
	}
	if g := o.garps(testVIP.Addr(), bMAC); len(g) > 0 {
		t.Logf("move: a released at T; b's first gratuitous ARP at T+%v; b's first reply to a request at T+%v (requests every 20 ms)",
			g[0].at.Sub(relAt).Round(time.Microsecond), firstB.Sub(relAt).Round(time.Microsecond))
	} else {
		t.Errorf("no gratuitous ARP from b")
	}

	// The observer's neighbour entry still names a's MAC from before the move: b's
	// announcements must have replaced it.
	eventually(t, "TCP to the VIP reaching b", func() bool {
		name, _ = whoAnswers(obs, "10.50.0.100:6443")
		return name == "b"
	})
	if got := addrsOf(t, a, testVIP.Addr()); len(got) != 0 {
		t.Errorf("VIP still on a: %v", got)
	}
}

func TestRemoveAfterLinkGone(t *testing.T) {
	sw := newLAN(t)
	a := host(t, sw, "10.50.0.11/24")
	rec := &recorder{}
	m := start(t, testConfig(t, a, newReadyz(true), rec), rec)
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
	rec.waitLast(t, "c1", "holding", holding(true))

	a.MustIP(t, "link", "del", "eth0")
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 2, Holder: false})
	st := rec.waitLast(t, "c1", "epoch 2", func(st Status) bool { return st.Epoch == 2 })
	if diff := cmp.Diff(Status{ClusterID: "c1", Epoch: 2, Ready: st.Ready}, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if err := m.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestSetWhileCheckHangs: assignments are applied while a readiness check is stuck.
func TestSetWhileCheckHangs(t *testing.T) {
	sw := newLAN(t)
	a := host(t, sw, "10.50.0.11/24")
	rec := &recorder{}
	cfg := testConfig(t, a, newReadyz(true), rec)
	var inCheck atomic.Bool
	entered := make(chan struct{})
	unblock := make(chan struct{})
	var once sync.Once
	cfg.Readyz = func(ctx context.Context) error {
		inCheck.Store(true)
		defer inCheck.Store(false)
		once.Do(func() { close(entered) })
		select {
		case <-unblock:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The check's deadline follows CheckInterval; a long one keeps it stuck long past
	// what the test needs.
	cfg.CheckInterval = 30 * time.Second
	m := start(t, cfg, rec)
	defer close(unblock)

	<-entered
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
	rec.waitLast(t, "c1", "holding", holding(true))
	if !inCheck.Load() {
		t.Error("the check returned before the assignment was applied; the test proves nothing")
	}
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 2, Holder: false})
	rec.waitLast(t, "c1", "not holding", holding(false))
}

func TestAssignmentsThatCannotBeHeld(t *testing.T) {
	sw := newLAN(t)
	a := host(t, sw, "10.50.0.11/24")
	rec := &recorder{}
	m := start(t, testConfig(t, a, newReadyz(true), rec), rec)

	for _, tc := range []struct {
		name string
		addr netip.Prefix
	}{
		{"zero prefix", netip.Prefix{}},
		{"IPv6", netip.MustParsePrefix("fd00::100/64")},
		{"prefix length 0", netip.MustParsePrefix("10.50.0.100/0")},
		{"loopback", netip.MustParsePrefix("127.0.0.100/8")},
		{"network address", netip.MustParsePrefix("10.50.0.0/24")},
		{"broadcast address", netip.MustParsePrefix("10.50.0.255/24")},
		{"IPv4-mapped IPv6", netip.MustParsePrefix("::ffff:10.50.0.100/120")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "odd-" + tc.name
			m.Set(Assignment{ClusterID: id, Address: tc.addr, Epoch: 1, Holder: true})
			st := rec.waitLast(t, id, "status", func(Status) bool { return true })
			if st.Holding || st.Reason != ReasonUnsupportedAddress {
				t.Errorf("status %+v, want not holding, reason %s", st, ReasonUnsupportedAddress)
			}
		})
	}

	t.Run("no link until one gets an address in the subnet", func(t *testing.T) {
		other := netip.MustParsePrefix("10.60.0.100/24")
		m.Set(Assignment{ClusterID: "later", Address: other, Epoch: 1, Holder: true})
		st := rec.waitLast(t, "later", "status", func(Status) bool { return true })
		if st.Holding || st.Reason != ReasonNoLink {
			t.Errorf("status %+v, want not holding, reason %s", st, ReasonNoLink)
		}
		a.MustIP(t, "addr", "add", "10.60.0.1/24", "dev", "eth0")
		rec.waitLast(t, "later", "holding once the subnet exists", func(st Status) bool { return st.Holding && st.Reason == "" })
	})

	t.Run("address removed by hand comes back", func(t *testing.T) {
		m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
		rec.waitLast(t, "c1", "holding", holding(true))
		a.MustIP(t, "addr", "del", testVIP.String(), "dev", "eth0")
		eventually(t, "VIP back", func() bool { return len(addrsOf(t, a, testVIP.Addr())) == 1 })
	})
}

// TestLongLinkName: on a link whose name leaves no room for the suffix, the name is cut,
// and the kernel takes the label and deletes by it.
func TestLongLinkName(t *testing.T) {
	sw := newLAN(t)
	a := netnstest.New(t)
	const name = "enp0s20f0u1u2x"
	netnstest.Plug(t, sw, "br0", a, name, "10.50.0.11/24")
	rec := &recorder{}
	m := start(t, testConfig(t, a, newReadyz(true), rec), rec)

	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 1, Holder: true})
	rec.waitLast(t, "c1", "holding", holding(true))
	got := addrsOf(t, a, testVIP.Addr())
	if len(got) != 1 || got[0].Label != "enp0s20f0"+labelSuffix {
		t.Fatalf("VIP on a: %v, want one labelled enp0s20f0%s", got, labelSuffix)
	}
	m.Set(Assignment{ClusterID: "c1", Address: testVIP, Epoch: 2, Holder: false})
	rec.waitLast(t, "c1", "not holding", func(st Status) bool { return !st.Holding && st.Epoch == 2 && st.Reason == "" })
	if got := addrsOf(t, a, testVIP.Addr()); len(got) != 0 {
		t.Errorf("VIP still on a: %v", got)
	}
}

// TestVIPLabel: the label fits the kernel's 15 bytes and keeps the suffix that marks it.
func TestVIPLabel(t *testing.T) {
	for name, want := range map[string]string{
		"eth0":            "eth0:dmvip",
		"enp0s31f6":       "enp0s31f6:dmvip",
		"enp0s20f0u1u2":   "enp0s20f0:dmvip",
		"abcdefghijklmno": "abcdefghi:dmvip",
	} {
		if got := vipLabel(name); got != want || len(got) > maxLabel {
			t.Errorf("vipLabel(%q) = %q, want %q", name, got, want)
		}
	}
}
