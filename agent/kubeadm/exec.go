package kubeadm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// TailLines is how many of a command's last output lines a Result keeps: the step contract
// reports exactly this many in output_tail.
const TailLines = 20

// Command is one invocation. Path is the program ("kubeadm" or a full path); Env is added to
// the agent's environment.
type Command struct {
	Path string
	Args []string
	Env  []string
	Dir  string
}

// Result of a finished command: its exit code and the last TailLines lines of combined
// stdout+stderr.
type Result struct {
	ExitCode int
	Tail     []string
}

// Runner runs commands. line is called for every output line as it is produced (may be nil).
// err is non-nil only when the command could not run at all or ctx ended; a non-zero exit is
// Result.ExitCode.
type Runner interface {
	Run(ctx context.Context, cmd Command, line func(string)) (Result, error)
}

// ExecRunner runs real processes (os/exec), killing the process group when ctx ends.
type ExecRunner struct{}

// pipeGrace bounds how long Run keeps reading output after the process has exited: a
// grandchild that inherited the output pipe (a daemon, a stray `sleep &`) would otherwise
// hold Run open for as long as it lives.
const pipeGrace = 2 * time.Second

// Run starts cmd in its own process group and streams its combined output line by line.
func (ExecRunner) Run(ctx context.Context, cmd Command, line func(string)) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1}, err
	}
	out := NewLineWriter(line)
	c := exec.CommandContext(ctx, cmd.Path, cmd.Args...)
	c.Dir = cmd.Dir
	c.Env = append(os.Environ(), cmd.Env...)
	// One writer for both streams: os/exec then shares a single pipe, so stdout and stderr
	// lines keep the order in which the program wrote them.
	c.Stdout = out
	c.Stderr = out
	// kubeadm starts helpers of its own; only a group kill stops all of them when a step is
	// cancelled, where killing the leader alone would leave them running.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var cancelled atomic.Bool
	c.Cancel = func() error {
		cancelled.Store(true)
		return syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	}
	c.WaitDelay = pipeGrace

	if err := c.Start(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	waitErr := c.Wait()
	out.Flush()
	res := Result{ExitCode: exitCode(c.ProcessState), Tail: out.Tail()}
	if cancelled.Load() {
		// The exit status describes our kill, not the command.
		return res, fmt.Errorf("run %s: %w", cmd.Path, ctx.Err())
	}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil, errors.As(waitErr, &exitErr), errors.Is(waitErr, exec.ErrWaitDelay):
		// A non-zero exit is a result, not a failure to run; ErrWaitDelay only says a
		// leftover child still held the output pipe after the command had finished.
		return res, nil
	default:
		return res, fmt.Errorf("wait for %s: %w", cmd.Path, waitErr)
	}
}

// exitCode reports a signal death the way a shell does (128+signal), so a killed kubeadm
// still maps onto a `kubeadm.exit_<code>` reason instead of -1.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// maxLine bounds one buffered line, so a program printing megabytes without a newline
// cannot grow the agent's memory without limit; the excess becomes a line of its own.
const maxLine = 16 << 10

// LineWriter splits a byte stream into lines, hands each to a callback as soon as it is
// complete and keeps the last TailLines of them. Runners share it so that a fake and a real
// process report output identically. It is not safe for concurrent Writes.
type LineWriter struct {
	line    func(string)
	partial []byte
	tail    []string
}

// NewLineWriter returns a LineWriter calling line (may be nil) for every line.
func NewLineWriter(line func(string)) *LineWriter {
	return &LineWriter{line: line}
}

// Write consumes p; it never fails.
func (w *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			w.splitLong()
			break
		}
		w.partial = append(w.partial, p[:i]...)
		w.splitLong()
		w.emit(string(w.partial))
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *LineWriter) splitLong() {
	for len(w.partial) > maxLine {
		w.emit(string(w.partial[:maxLine]))
		w.partial = append(w.partial[:0], w.partial[maxLine:]...)
	}
}

// Flush emits a last line that had no trailing newline.
func (w *LineWriter) Flush() {
	if len(w.partial) > 0 {
		w.emit(string(w.partial))
		w.partial = w.partial[:0]
	}
}

// Tail returns a copy of the last TailLines complete lines.
func (w *LineWriter) Tail() []string {
	return append([]string(nil), w.tail...)
}

func (w *LineWriter) emit(s string) {
	s = strings.TrimSuffix(s, "\r")
	if w.line != nil {
		w.line(s)
	}
	if len(w.tail) == TailLines {
		copy(w.tail, w.tail[1:])
		w.tail = w.tail[:TailLines-1]
	}
	w.tail = append(w.tail, s)
}
