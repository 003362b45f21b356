package kubeadm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// script writes a /bin/sh script into a temp dir and returns a Command running it.
func script(t *testing.T, body string) Command {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return Command{Path: "/bin/sh", Args: []string{p}}
}

func numbered(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprintf("line %d", i))
	}
	return s
}

func TestExecRunnerResults(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		env      []string
		wantCode int
		wantTail []string
		// wantLines is every line streamed; nil means the same as wantTail.
		wantLines []string
	}{
		{name: "success", body: "echo hello\n", wantCode: 0, wantTail: []string{"hello"}},
		{name: "exit code", body: "echo failing\nexit 3\n", wantCode: 3, wantTail: []string{"failing"}},
		{name: "kubeadm style failure", body: "echo '[preflight] Running pre-flight checks'\necho 'error: preflight checks failed' >&2\nexit 1\n",
			wantCode: 1, wantTail: []string{"[preflight] Running pre-flight checks", "error: preflight checks failed"}},
		{name: "stderr interleaved in order", body: "echo out1\necho err1 >&2\necho out2\necho err2 >&2\n",
			wantTail: []string{"out1", "err1", "out2", "err2"}},
		{name: "no output", body: "exit 0\n", wantTail: nil},
		{name: "last line without newline", body: "printf 'a\\nb'\n", wantTail: []string{"a", "b"}},
		{name: "crlf", body: "printf 'a\\r\\nb\\r\\n'\n", wantTail: []string{"a", "b"}},
		{name: "tail keeps last 20 of 25",
			body:      "i=1\nwhile [ $i -le 25 ]; do echo \"line $i\"; i=$((i+1)); done\nexit 7\n",
			wantCode:  7,
			wantTail:  numbered(6, 25),
			wantLines: numbered(1, 25)},
		{name: "tail with exactly 20", body: "i=1\nwhile [ $i -le 20 ]; do echo \"line $i\"; i=$((i+1)); done\n",
			wantTail: numbered(1, 20)},
		{name: "env added", body: "echo \"$DEPLOYME_TEST_A $DEPLOYME_TEST_B\"\necho \"${PATH:+path kept}\"\n",
			env:      []string{"DEPLOYME_TEST_A=alpha", "DEPLOYME_TEST_B=beta"},
			wantTail: []string{"alpha beta", "path kept"}},
		{name: "killed by signal", body: "kill -TERM $$\n", wantCode: 128 + int(syscall.SIGTERM)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := script(t, tt.body)
			cmd.Env = tt.env
			var lines []string
			res, err := ExecRunner{}.Run(context.Background(), cmd, func(l string) { lines = append(lines, l) })
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code %d, want %d", res.ExitCode, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantTail, res.Tail); diff != "" {
				t.Errorf("tail (-want +got):\n%s", diff)
			}
			want := tt.wantLines
			if want == nil {
				want = tt.wantTail
			}
			if diff := cmp.Diff(want, lines); diff != "" {
				t.Errorf("streamed lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExecRunnerDirAndNilLine(t *testing.T) {
	dir := t.TempDir()
	cmd := script(t, "pwd\n")
	cmd.Dir = dir
	res, err := ExecRunner{}.Run(context.Background(), cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(dir)
	if len(res.Tail) != 1 || res.Tail[0] != want {
		t.Errorf("tail %q, want [%q]", res.Tail, want)
	}
}

func TestExecRunnerCouldNotRun(t *testing.T) {
	tests := []struct {
		name string
		path string
		want error
	}{
		{"not on PATH", "deployme-no-such-kubeadm", exec.ErrNotFound},
		{"missing full path", filepath.Join(t.TempDir(), "kubeadm"), fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ExecRunner{}.Run(context.Background(), Command{Path: tt.path}, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestExecRunnerCancelKillsGroup starts a script whose child and grandchild both sleep, then
// cancels: Run must return promptly with the context's error and no sleeper may survive.
func TestExecRunnerCancelKillsGroup(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	cmd := script(t, fmt.Sprintf(`sleep 100 &
echo $! > %[1]s
sh -c 'sleep 100 & echo $! >> %[1]s; wait' &
echo started
wait
`, pids))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := ExecRunner{}.Run(ctx, cmd, func(l string) {
			if l == "started" {
				close(started)
			}
		})
		done <- outcome{res, err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("script did not start")
	}
	// Both sleepers must have written their pids before we cancel.
	var sleepers []int
	deadline := time.Now().Add(10 * time.Second)
	for len(sleepers) < 2 && time.Now().Before(deadline) {
		sleepers = readPids(t, pids)
		time.Sleep(10 * time.Millisecond)
	}
	if len(sleepers) < 2 {
		t.Fatalf("sleepers %v", sleepers)
	}

	begin := time.Now()
	cancel()
	var got outcome
	select {
	case got = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("Run returned %v after cancel", took)
	}
	if !errors.Is(got.err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", got.err)
	}
	if got.res.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d", got.res.ExitCode, 128+int(syscall.SIGKILL))
	}
	for _, pid := range sleepers {
		waitGone(t, pid)
	}
}

func TestExecRunnerCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	marker := filepath.Join(t.TempDir(), "ran")
	_, err := ExecRunner{}.Run(ctx, script(t, "touch "+marker+"\n"), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("command ran although ctx had ended")
	}
}

// TestExecRunnerLeftoverChild checks that a background child holding the output pipe after
// the command exits does not keep Run waiting for the child's lifetime.
func TestExecRunnerLeftoverChild(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := script(t, "sleep 100 &\necho $! > "+pidFile+"\necho done\n")
	begin := time.Now()
	res, err := ExecRunner{}.Run(context.Background(), cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > pipeGrace+3*time.Second {
		t.Errorf("Run took %v", took)
	}
	if res.ExitCode != 0 || len(res.Tail) != 1 || res.Tail[0] != "done" {
		t.Errorf("result %+v", res)
	}
	for _, pid := range readPids(t, pidFile) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestLineWriterLongLine(t *testing.T) {
	var lines []string
	w := NewLineWriter(func(l string) { lines = append(lines, l) })
	long := strings.Repeat("x", maxLine+10)
	if _, err := w.Write([]byte(long + "\nshort")); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	want := []string{long[:maxLine], long[maxLine:], "short"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func readPids(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %q: %v", b, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// waitGone waits until pid no longer runs. A killed orphan may linger as a zombie when the
// container's init does not reap, which counts as gone: it no longer executes anything.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The state follows the parenthesised command name: "1234 (sleep) Z ...".
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("process %d still running after cancel", pid)
}
