// Package steps is the agent's step executor: it runs the named node steps of docs/steps.md
// (preflight, prepare, pki, init, cni, credentials, join, ready, reset) that the coordinator
// assigns, streams their progress, and keeps their final results.
//
// Each step is idempotent in two ways. An id runs at most once at a time, and once finished
// its final update is stored (StateDir/steps/<step_id>.json) before it is sent, so every repeat
// of the id, even after an agent restart, is answered from the store. And each step first asks
// whether its work is already done ("needs to run?"), so that a step whose agent was killed
// midway, and which therefore has no stored result, can simply run again.
//
// Side effects sit behind small interfaces (hostFiles, hostKernel, kubeadm.Runner and the port
// check), so that tests run whole clusters of "hosts" in temporary directories.
package steps

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/agent/kubeadm"
	"github.com/deployme/deployme/internal/logkey"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// States of a StepUpdate.
const (
	stateRunning   = "running"
	stateSucceeded = "succeeded"
	stateFailed    = "failed"
)

// Log attribute keys of this package (the shared ones are in internal/logkey).
const (
	keyStepID = "step_id"
	keyStep   = "step"
	keyReason = "reason"
	keyState  = "state"
	keyLine   = "line"
)

// simulatedPrefix marks every message of a step run in development mode, so that nobody
// mistakes a simulated cluster for a real one.
const simulatedPrefix = "[simulated] "

// Executor runs step assignments. It is safe for concurrent use.
type Executor struct {
	cfg    Config
	log    *slog.Logger
	files  hostFiles
	kernel hostKernel
	store  recordStore
	now    func() time.Time

	mu       sync.Mutex
	idle     sync.Cond // broadcast whenever a step leaves running
	running  map[string]bool
	finished map[string]record
}

// New returns an Executor, having loaded the results of the steps it finished before.
func New(cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	fi, err := os.Stat(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("steps: root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("steps: root %s is not a directory", cfg.Root)
	}
	e := &Executor{
		cfg:      cfg,
		log:      cfg.Logger,
		files:    rootFiles{root: cfg.Root},
		kernel:   noKernel{},
		store:    recordStore{dir: filepath.Join(cfg.StateDir, "steps")},
		now:      time.Now,
		running:  map[string]bool{},
		finished: map[string]record{},
	}
	e.idle.L = &e.mu
	if cfg.hostRoot() {
		e.kernel = commandKernel{runner: cfg.Runner, env: cfg.Env}
	}
	recs, bad, err := e.store.loadAll()
	if err != nil {
		return nil, err
	}
	for _, err := range bad {
		e.log.Warn("ignoring an unreadable step record; the step runs again if re-sent", logkey.Err, err)
	}
	e.finished = recs
	return e, nil
}

// Handle runs the assignment in its own goroutine (or answers at once from the stored result),
// sending StepUpdates through send: state running with the phase as message while it runs,
// then succeeded or failed. A step_id already running is ignored; one already finished is
// answered with its stored final update. send may be called from several goroutines; it may
// fail silently (the stream is down): the final result is stored first, so it is re-sent on
// the next assignment of the same id.
//
// When ctx ends, the step stops promptly and nothing is stored: like an agent killed midway,
// it runs again if re-sent, and its needs-to-run check makes that safe.
func (e *Executor) Handle(ctx context.Context, a *agentv1.StepAssignment, send func(*agentv1.StepUpdate)) {
	if send == nil {
		send = func(*agentv1.StepUpdate) {}
	}
	if a == nil {
		e.log.Warn("ignoring an empty step assignment")
		return
	}
	id := a.GetStepId()
	if !stepIDRE.MatchString(id) {
		// Without a usable id nothing can be stored, so the refusal is only sent.
		e.log.Warn("refusing a step with an invalid id", keyStepID, id, keyStep, a.GetName())
		send(&agentv1.StepUpdate{
			StepId:  id,
			Name:    a.GetName(),
			State:   stateFailed,
			Message: fmt.Sprintf("step id %q is not 1-200 letters, digits, '.', '_' or '-' starting with a letter or digit", id),
			Reason:  reasonInvalidParams,
		})
		return
	}
	e.mu.Lock()
	if rec, ok := e.finished[id]; ok {
		e.mu.Unlock()
		e.log.Debug("answering a finished step from its record", keyStepID, id, keyState, rec.State)
		send(rec.update())
		return
	}
	if e.running[id] {
		e.mu.Unlock()
		e.log.Debug("step already running", keyStepID, id)
		return
	}
	e.running[id] = true
	e.mu.Unlock()

	// The caller may reuse the message once Handle returns.
	a = proto.Clone(a).(*agentv1.StepAssignment)
	go e.run(ctx, a, send)
}

// Finished lists the stored final updates, newest first, at most n: what the agent reports in
// Hello after a reconnect.
func (e *Executor) Finished(n int) []*agentv1.StepUpdate {
	if n <= 0 {
		return nil
	}
	e.mu.Lock()
	recs := make([]record, 0, len(e.finished))
	for _, r := range e.finished {
		recs = append(recs, r)
	}
	e.mu.Unlock()
	slices.SortFunc(recs, func(a, b record) int {
		if c := b.FinishedAt.Compare(a.FinishedAt); c != 0 {
			return c
		}
		return strings.Compare(b.StepID, a.StepID)
	})
	out := make([]*agentv1.StepUpdate, 0, min(n, len(recs)))
	for _, r := range recs[:min(n, len(recs))] {
		out = append(out, r.update())
	}
	return out
}

// Wait blocks until every running step has returned. After the contexts given to Handle end,
// that is prompt: every command is run under its step's context.
func (e *Executor) Wait() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.running) > 0 {
		e.idle.Wait()
	}
}

// run is one step's goroutine.
func (e *Executor) run(ctx context.Context, a *agentv1.StepAssignment, send func(*agentv1.StepUpdate)) {
	j := &job{
		e:    e,
		id:   a.GetStepId(),
		name: a.GetName(),
		send: send,
		seen: map[string]bool{},
		log:  e.log.With(keyStepID, a.GetStepId(), keyStep, a.GetName()),
	}
	start := e.now()
	msg, err := e.execute(ctx, j, a)
	if err != nil && ctx.Err() != nil {
		j.log.Info("step interrupted; it runs again if re-sent", logkey.Err, err)
		e.release(j.id, nil)
		return
	}
	rec := j.final(msg, err)
	// Stored before it is sent: once the coordinator has seen a result, a repeat of the id
	// must get the same one.
	if err := e.store.save(rec); err != nil {
		j.log.Error("storing the step result; a repeat after a restart runs the step again", logkey.Err, err)
	}
	e.release(j.id, &rec)
	j.log.Info("step finished", keyState, rec.State, keyReason, rec.Reason, logkey.Duration, e.now().Sub(start))
	send(rec.update())
}

// execute parses the assignment into its step, then runs the step unless its work is done.
func (e *Executor) execute(ctx context.Context, j *job, a *agentv1.StepAssignment) (string, error) {
	p := params(a.GetParams())
	sim, err := p.simulated()
	if err != nil {
		return "", err
	}
	j.simulated = sim
	parse, ok := stepTable[a.GetName()]
	if !ok {
		return "", invalidf("unknown step %q", a.GetName())
	}
	s, err := parse(p, a.GetFiles())
	if err != nil {
		return "", err
	}
	j.log.Info("step started")
	j.progress("started")
	msg, done, err := s.done(ctx, j)
	if err != nil {
		return "", err
	}
	if done {
		j.log.Info("step already done", "message", msg)
		return msg, nil
	}
	return s.run(ctx, j)
}

// release ends a step's run, recording its result if it has one.
func (e *Executor) release(id string, rec *record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rec != nil {
		e.finished[id] = *rec
	}
	delete(e.running, id)
	e.idle.Broadcast()
}

// job is one run of one step: what the step needs from the executor, and what its final
// update is made of.
type job struct {
	e         *Executor
	id, name  string
	simulated bool
	send      func(*agentv1.StepUpdate)
	log       *slog.Logger

	mu      sync.Mutex // the runner may report lines from several goroutines
	seen    map[string]bool
	tail    []string
	results map[string]string
}

// result records a finding the final update carries to the coordinator.
func (j *job) result(key, value string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.results == nil {
		j.results = map[string]string{}
	}
	j.results[key] = value
}

// progress sends a running update.
func (j *job) progress(msg string) {
	j.send(&agentv1.StepUpdate{StepId: j.id, Name: j.name, State: stateRunning, Message: j.label(msg)})
}

// kubeadmLine reports a kubeadm output line's phase, once per phase: kubeadm prints many lines
// per phase, and the coordinator writes every update through Raft.
func (j *job) kubeadmLine(line string) {
	phase, ok := kubeadm.Phase(line)
	if !ok {
		return
	}
	j.mu.Lock()
	isNew := !j.seen[phase]
	j.seen[phase] = true
	j.mu.Unlock()
	if isNew {
		j.progress("[" + phase + "]")
	}
}

func (j *job) label(msg string) string {
	if j.simulated {
		return simulatedPrefix + msg
	}
	return msg
}

// final turns the step's outcome into its final update.
func (j *job) final(msg string, err error) record {
	r := record{StepID: j.id, Name: j.name, State: stateSucceeded, Message: j.label(msg), FinishedAt: j.e.now()}
	if err != nil {
		r.State, r.Reason, r.Message = stateFailed, reasonOf(err), j.label(err.Error())
	}
	j.mu.Lock()
	r.OutputTail = strings.Join(j.tail, "\n")
	if err == nil {
		r.Results = maps.Clone(j.results)
	}
	j.mu.Unlock()
	return r
}

// command runs a tool and keeps the end of its output for the final update. The error is the
// runner's (the tool could not run) or ctx's; a non-zero exit is not an error here.
func (j *job) command(ctx context.Context, tool string, args ...string) (kubeadm.Result, error) {
	path := j.e.cfg.Kubectl
	if tool == toolKubeadm {
		path = j.e.cfg.Kubeadm
	}
	res, err := j.e.cfg.Runner.Run(ctx, kubeadm.Command{Path: path, Args: args, Env: j.e.cfg.Env}, func(line string) {
		j.log.Debug("output", keyLine, line)
		if tool == toolKubeadm {
			j.kubeadmLine(line)
		}
	})
	j.mu.Lock()
	j.tail = res.Tail
	j.mu.Unlock()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, err
}

// mustRun is command for steps whose tool has to succeed: could-not-run is reason io, a
// non-zero exit <tool>.exit_<code>.
func (j *job) mustRun(ctx context.Context, tool string, args ...string) (kubeadm.Result, error) {
	res, err := j.command(ctx, tool, args...)
	if err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		return res, wrapf(reasonIO, err, "%s cannot be run", tool)
	}
	if res.ExitCode != 0 {
		return res, exitError(tool, res.ExitCode, res.Tail)
	}
	return res, nil
}

// rootfs are the flags that make kubeadm init, join and reset work in Config.Root. kubeadm
// chroots before it reads anything, so every path they are given is a host path.
func (j *job) rootfs() []string {
	if j.e.cfg.hostRoot() {
		return nil
	}
	return []string{"--rootfs", j.e.cfg.Root}
}

// hostPath is a host path as seen from this machine, for commands that do not chroot.
func (j *job) hostPath(name string) string {
	return filepath.Join(j.e.cfg.Root, filepath.FromSlash(name))
}

// write writes one of our files, refusing to go on when the host cannot take it.
func (j *job) write(name string, data []byte, perm os.FileMode) error {
	if err := j.e.files.WriteFile(name, data, perm); err != nil {
		return wrapf(reasonIO, err, "writing %s", name)
	}
	return nil
}
