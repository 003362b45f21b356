package fsm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/deployme/deployme/coordinator/state"
)

// snapshotMagic starts every snapshot, so a restore of some other file fails loudly.
const snapshotMagic = "deployme-fsm-snapshot\n"

// Snapshot captures every table. It holds the read lock only to copy the table slices;
// objects are immutable, so encoding happens in Persist without blocking Apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{tables: f.st.Tables()}, nil
}

// Restore replaces the whole state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return fmt.Errorf("restore: not a deployme snapshot")
	}
	var t state.Tables
	if err := json.NewDecoder(br).Decode(&t); err != nil {
		return fmt.Errorf("restore: decode tables: %w", err)
	}
	st, err := state.FromTables(&t)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.notify()
	return nil
}

type snapshot struct{ tables *state.Tables }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriter(sink)
	err := func() error {
		if _, err := w.WriteString(snapshotMagic); err != nil {
			return err
		}
		if err := json.NewEncoder(w).Encode(s.tables); err != nil {
			return err
		}
		return w.Flush()
	}()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// Tables returns a copy of every table, for tests that compare states.
func (f *FSM) Tables() *state.Tables {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Tables()
}
