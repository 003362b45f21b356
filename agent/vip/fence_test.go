package vip

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

type setRecorder struct{ got []Assignment }

func (r *setRecorder) Set(a Assignment) { r.got = append(r.got, a) }

// TestFenceDropsTheVIPWhenCutOff: a holder that hears no coordinator for longer than After
// gives the VIP up (same epoch, not holder), and takes it back at the next contact.
func TestFenceDropsTheVIPWhenCutOff(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	r := &setRecorder{}
	f := NewFence(r, 10*time.Second)
	f.now = func() time.Time { return now }
	f.heard = now
	held := Assignment{ClusterID: "cls_a", Address: netip.MustParsePrefix("10.0.0.100/24"), Epoch: 3, Holder: true}
	f.Set(held)
	now = now.Add(9 * time.Second)
	if f.Check() {
		t.Fatal("fenced after 9 s of silence, want after 10 s")
	}
	now = now.Add(2 * time.Second)
	if !f.Check() {
		t.Fatal("not fenced after 11 s of silence")
	}
	dropped := held
	dropped.Holder = false
	// While fenced, a new assignment is passed on as not-holder.
	f.Set(held)
	f.Heard()
	want := []Assignment{held, dropped, dropped, held}
	if diff := cmp.Diff(want, r.got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("assignments passed on (-want +got):\n%s", diff)
	}
	if f.Check() {
		t.Error("still fenced after contact")
	}
}
