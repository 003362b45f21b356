package fsm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/fsm"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// memSink is an in-memory raft.SnapshotSink that records how it was finished.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
	failWrites        bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrites {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// readCloser records whether Restore closed its input, as raft.FSM requires.
type readCloser struct {
	io.Reader
	closed bool
}

func (r *readCloser) Close() error { r.closed = true; return nil }

func persist(t *testing.T, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func restore(t *testing.T, data []byte) *fsm.FSM {
	t.Helper()
	f := fsm.New(nil)
	rc := &readCloser{Reader: bytes.NewReader(data)}
	if err := f.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !rc.closed {
		t.Error("Restore did not close its reader")
	}
	return f
}

// TestSnapshotRoundTrip fills every table (TestFilledStateHasEveryTable checks that it
// does), snapshots, restores into a fresh FSM and compares every table.
func TestSnapshotRoundTrip(t *testing.T) {
	src := filled(t)
	dst := restore(t, persist(t, src.f))
	if diff := cmp.Diff(src.f.Tables(), dst.Tables()); diff != "" {
		t.Fatalf("restored tables differ (-snapshotted +restored):\n%s", diff)
	}

	// The indexes (hash → token, name → cluster, the free-host index, the event sequence)
	// are rebuilt by Restore, not stored: the same further log must give the same results
	// and tables on the original and on the restored FSM.
	next := []struct {
		typ     command.Type
		msg     proto.Message
		refused bool // by a uniqueness index; otherwise the command must be accepted
	}{
		{command.TypeCreateToken, tokenCmd("tok_x", "hash-ci"), true},
		{command.TypeCreateInfra, infraCmd("infra_x", "dc1", "onpremise", ""), true},
		{command.TypeCreateJoinToken, joinTokenCmd("jt_x", "infra_dc", "hash-jt-dc"), true},
		{command.TypeCreateCluster, src.clusterCmd("cls_x", "prod", "managed", fsm.ManagedInfraID, 1, 1, "small"), true},
		// Placement on the free-host index, the next free VIP, the next event sequence.
		{command.TypeCreateCluster, src.clusterCmd("cls_y", "y", "managed", fsm.ManagedInfraID, 1, 2, "small"), false},
		{command.TypeCreateCluster, src.clusterCmd("cls_z", "z", "onpremise", "infra_dc", 1, 0, "medium"), false},
		{command.TypeSetClusterStatus, &raftcmdv1.SetClusterStatus{Id: "cls_y", Status: "error", Reason: "x", At: src.at()}, false},
	}
	index := uint64(len(src.entries))
	for _, n := range next {
		index++
		entry := logOf(t, n.typ, n.msg, index)
		resSrc, resDst := src.f.Apply(entry), dst.Apply(entry)
		if _, refused := resSrc.(*state.Error); refused != n.refused {
			t.Errorf("%s on the original: %v, want refused=%v", n.typ, resSrc, n.refused)
		}
		if diff := cmp.Diff(resSrc, resDst); diff != "" {
			t.Errorf("%s after restore answered differently (-original +restored):\n%s", n.typ, diff)
		}
	}
	if diff := cmp.Diff(src.f.Tables(), dst.Tables()); diff != "" {
		t.Fatalf("after more commands the tables differ (-original +restored):\n%s", diff)
	}
}

func logOf(t *testing.T, typ command.Type, msg proto.Message, index uint64) *raft.Log {
	t.Helper()
	data, err := command.Encode(typ, msg)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// TestSnapshotIsolatedFromLaterApplies persists a snapshot while commands keep being
// applied (as Raft does: Persist runs on its own goroutine). The snapshot must hold the
// state at Snapshot time, and under -race this also proves that Apply never modifies a
// stored object in place (FSM invariant 4).
func TestSnapshotIsolatedFromLaterApplies(t *testing.T) {
	r := filled(t)
	// A JSON copy is the expected state: Tables() shares the (immutable) objects, so it
	// would not reveal an in-place change.
	want, err := json.Marshal(r.f.Tables())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	var wg sync.WaitGroup
	wg.Add(1)
	var persistErr error
	go func() {
		defer wg.Done()
		persistErr = snap.Persist(sink)
	}()
	// Change every kind of object the snapshot holds.
	for _, n := range r.nodes("cls_prod") {
		r.setNode(n.HostID, state.NodeRemoving, "drain")
	}
	r.ok(command.TypeRegisterHost, r.hostCmd("host_d0", "infra_dc", 64, 64, "rack", "new"))
	r.setStatus("cls_dc", state.StatusRunning)
	r.ok(command.TypePatchCluster, r.patchCmd("cls_dc", 3, "medium", ""))
	r.ok(command.TypeDeleteCluster, &raftcmdv1.DeleteCluster{Id: "cls_prod", At: r.at()})
	r.ok(command.TypeDeleteToken, &raftcmdv1.DeleteToken{Id: "tok_ci"})
	r.ok(command.TypeDeleteJoinToken, &raftcmdv1.DeleteJoinToken{Id: "jt_dc"})
	wg.Wait()
	snap.Release()
	if persistErr != nil {
		t.Fatal(persistErr)
	}
	got, err := json.Marshal(restore(t, sink.Bytes()).Tables())
	if err != nil {
		t.Fatal(err)
	}
	var wantT, gotT state.Tables
	if err := json.Unmarshal(want, &wantT); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &gotT); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantT, gotT); diff != "" {
		t.Fatalf("snapshot saw later applies (-at snapshot +persisted):\n%s", diff)
	}
}

// TestPersistFailureCancels checks that a failed write cancels the sink, so Raft discards a
// partial snapshot instead of keeping it as the latest.
func TestPersistFailureCancels(t *testing.T) {
	r := filled(t)
	snap, err := r.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{failWrites: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist succeeded on a failing sink")
	}
	if !sink.cancelled || sink.closed {
		t.Errorf("sink cancelled=%v closed=%v, want cancelled only", sink.cancelled, sink.closed)
	}
}

// TestRestoreGarbage checks that a bad snapshot fails with an error and leaves the FSM's
// current state alone: a replica must not end up with half a state.
func TestRestoreGarbage(t *testing.T) {
	good := persist(t, filled(t).f)
	magic := good[:strings.IndexByte(string(good), '\n')+1]
	withTables := func(change func(*state.Tables)) []byte {
		tables := filled(t).f.Tables()
		change(tables)
		b, err := json.Marshal(tables)
		if err != nil {
			t.Fatal(err)
		}
		return append(append([]byte{}, magic...), b...)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a deployme snapshot"},
		{"other file", []byte("PK\x03\x04 this is a zip file, not a snapshot at all"), "not a deployme snapshot"},
		{"magic only", magic, "decode"},
		{"bad json", append(append([]byte{}, magic...), "{\"version\": 1, \"tokens\": [{"...), "decode"},
		{"truncated", good[:len(good)/2], "decode"},
		{"wrong types", append(append([]byte{}, magic...), `{"tokens": 5}`...), "decode"},
		{"newer layout", withTables(func(t *state.Tables) { t.Version = state.TablesVersion + 1 }), "newer"},
		{"orphan node", withTables(func(t *state.Tables) {
			t.Nodes = append(t.Nodes, &state.Node{HostID: "host_x", ClusterID: "cls_nope"})
		}), "missing cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := filled(t)
			r.ok(command.TypeCreateToken, tokenCmd("tok_only_here", "hash-only-here"))
			before := r.f.Tables()
			rc := &readCloser{Reader: bytes.NewReader(tc.data)}
			err := r.f.Restore(rc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore error = %v, want one mentioning %q", err, tc.want)
			}
			if !rc.closed {
				t.Error("Restore did not close its reader")
			}
			if diff := cmp.Diff(before, r.f.Tables()); diff != "" {
				t.Errorf("failed restore changed the state (-before +after):\n%s", diff)
			}
		})
	}
}
