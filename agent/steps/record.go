package steps

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/deployme/deployme/internal/atomicfile"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// record is a finished step as kept in StateDir/steps/<step_id>.json: the final update that
// was sent, and when, so that Finished can list the newest first.
type record struct {
	StepID     string            `json:"step_id"`
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Message    string            `json:"message,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	OutputTail string            `json:"output_tail,omitempty"`
	Results    map[string]string `json:"results,omitempty"`
	FinishedAt time.Time         `json:"finished_at"`
}

func (r record) update() *agentv1.StepUpdate {
	return &agentv1.StepUpdate{
		StepId:     r.StepID,
		Name:       r.Name,
		State:      r.State,
		Message:    r.Message,
		Reason:     r.Reason,
		OutputTail: r.OutputTail,
		Results:    r.Results,
	}
}

// stepIDRE keeps a step id usable as a file name: no separators, no leading dot (which would
// also hide it among our temporary files). The executor needs nothing more of the id's shape
// (docs/steps.md: <host_id>.<node generation>.<step name>.<attempt>), so it never parses it.
var stepIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

const recordExt = ".json"

// recordStore keeps one file per finished step.
type recordStore struct{ dir string }

func (s recordStore) path(id string) string { return filepath.Join(s.dir, id+recordExt) }

// save writes the record atomically (temp file, fsync, rename, fsync of the directory): it
// is the proof that the step ran, so a crash must leave the whole record or none.
func (s recordStore) save(r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(s.path(r.StepID), append(b, '\n'), 0o600)
}

// loadAll reads every record. A record that cannot be read is reported in bad and left out:
// its step then runs again if re-sent, which its needs-to-run check makes safe. Temporary
// files of saves that a crash interrupted are removed.
func (s recordStore) loadAll() (recs map[string]record, bad []error, err error) {
	recs = map[string]record{}
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return recs, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("steps: reading %s: %w", s.dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp") {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				bad = append(bad, err)
			}
			continue
		}
		id, ok := strings.CutSuffix(name, recordExt)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		r, err := s.load(id)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		recs[id] = r
	}
	return recs, bad, nil
}

func (s recordStore) load(id string) (record, error) {
	b, err := os.ReadFile(s.path(id))
	if err != nil {
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("%s: %w", s.path(id), err)
	}
	if r.StepID != id || (r.State != stateSucceeded && r.State != stateFailed) {
		return record{}, fmt.Errorf("%s: not the final update of step %s", s.path(id), id)
	}
	return r, nil
}
