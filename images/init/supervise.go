package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Paths and arguments of the agent inside the image.
const (
	agentPath     = "/bin/agent"
	agentStateDir = "/var/lib/deployme-agent"
)

// agentEnv is the agent's whole environment: init's own holds whatever the kernel passed
// (unknown command-line parameters among them), which the agent's DEPLOYME_* variables must
// not pick up by accident.
var agentEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}

// agentArgs is the agent's command line for cfg. The agent lives in RAM and starts with no
// identity on every boot; --network=false because init owns the boot NIC's address.
func agentArgs(cfg bootConfig) []string {
	args := []string{agentPath,
		"--coordinator", strings.Join(cfg.Coordinators, ","),
		"--state-dir", agentStateDir,
		"--root", "/",
		"--network=false",
	}
	if cfg.JoinToken != "" {
		args = append(args, "--join-token", cfg.JoinToken)
	}
	if cfg.CAHash != "" {
		args = append(args, "--ca-hash", cfg.CAHash)
	}
	if cfg.Labels != "" {
		args = append(args, "--labels", cfg.Labels)
	}
	if cfg.Debug {
		args = append(args, "--log-level", "debug")
	}
	return args
}

// redact hides the join token of an argument list for the console.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "--join-token" {
			out[i+1] = "<redacted>"
		}
	}
	return out
}

// Restart delays: doubling from minRestart to maxRestart, back to minRestart once the
// agent has run for stableRun (it was then not crash-looping).
const (
	minRestart = time.Second
	maxRestart = 30 * time.Second
	stableRun  = time.Minute
)

// nextRestart is the delay before the next start, given the last delay and how long the
// agent ran.
func nextRestart(last, ran time.Duration) time.Duration {
	if ran >= stableRun || last <= 0 {
		return minRestart
	}
	return min(2*last, maxRestart)
}

// reaper waits for every child of PID 1: the agent, and any orphan the kernel re-parents
// to init (the agent's own children whose parent died). It is the only caller of wait4,
// so that no exited process is left a zombie and no exit status is stolen from a waiter.
type reaper struct {
	// mu is held across fork and registration, and across wait4 and lookup: a child
	// that exits at once is still found in waiting.
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
}

// newReaper starts reaping; SIGCHLD is subscribed before any child exists.
func newReaper() *reaper {
	r := &reaper{waiting: map[int]chan unix.WaitStatus{}}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		// SIGCHLDs coalesce; a tick catches anything a lost signal would leave behind.
		tick := time.NewTicker(time.Minute)
		for {
			select {
			case <-sig:
			case <-tick.C:
			}
			r.reap()
		}
	}()
	return r
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiting[pid]; ok {
			ch <- ws
			delete(r.waiting, pid)
		}
	}
}

// start runs argv with stdin from /dev/null and init's stdout and stderr (the console); the
// channel receives its exit status.
func (r *reaper) start(argv, env []string) (int, <-chan unix.WaitStatus, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, nil, err
	}
	defer null.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []uintptr{null.Fd(), os.Stdout.Fd(), os.Stderr.Fd()},
		// Its own session: signals meant for init's console group never reach it.
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}

// superviseAgent runs the agent forever, restarting it when it exits.
func superviseAgent(r *reaper, cfg bootConfig) {
	args := agentArgs(cfg)
	delay := time.Duration(0)
	for {
		logf("starting agent")
		debugf("agent command: %s", strings.Join(redact(args), " "))
		started := time.Now()
		pid, done, err := r.start(args, agentEnv)
		var why string
		if err != nil {
			why = fmt.Sprintf("could not start: %v", err)
		} else {
			why = exitReason(<-done)
			debugf("agent pid %d ended", pid)
		}
		ran := time.Since(started)
		delay = nextRestart(delay, ran)
		logf("agent %s after %s; restarting in %s", why, ran.Round(time.Millisecond), delay)
		time.Sleep(delay)
	}
}

func exitReason(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}
