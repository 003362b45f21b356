package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestAgentArgs(t *testing.T) {
	base := []string{"/bin/agent", "--coordinator", "a:1,b:2", "--state-dir", "/var/lib/deployme-agent", "--root", "/", "--network=false"}
	for _, tc := range []struct {
		name string
		cfg  bootConfig
		want []string
	}{
		{"minimal", bootConfig{Coordinators: []string{"a:1", "b:2"}}, base},
		{"everything", bootConfig{Coordinators: []string{"a:1", "b:2"}, JoinToken: "tok", CAHash: "sha256:ab",
			Labels: "rack=r1", Debug: true},
			append(append([]string(nil), base...), "--join-token", "tok", "--ca-hash", "sha256:ab",
				"--labels", "rack=r1", "--log-level", "debug")},
	} {
		if diff := cmp.Diff(tc.want, agentArgs(tc.cfg)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	args := agentArgs(bootConfig{Coordinators: []string{"a:1"}, JoinToken: "secret"})
	if got := strings.Join(redact(args), " "); strings.Contains(got, "secret") || !strings.Contains(got, "--join-token <redacted>") {
		t.Errorf("redact: %s", got)
	}
	if args[len(args)-1] != "secret" {
		t.Error("redact changed its argument")
	}
}

func TestNextRestart(t *testing.T) {
	d := time.Duration(0)
	var got []time.Duration
	for range 7 {
		d = nextRestart(d, time.Second)
		got = append(got, d)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("crash loop delays (-want +got):\n%s", diff)
	}
	if got := nextRestart(30*time.Second, 2*time.Minute); got != time.Second {
		t.Errorf("after a long run: %v, want 1s", got)
	}
}

// TestReaper: the reaper hands the agent's exit status to its waiter and reaps orphans.
// The test process becomes a child subreaper, so orphans come to it as they come to PID 1.
func TestReaper(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	r := newReaper()
	// The shell leaves an orphan that outlives it by a moment.
	_, done, err := r.start([]string{"/bin/sh", "-c", "sleep 0.2 & exit 3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ws := <-done:
		if ws.ExitStatus() != 3 {
			t.Errorf("exit status %d, want 3", ws.ExitStatus())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status after 10 s")
	}
	// /proc lists a zombie among its parent's children until it is reaped.
	deadline := time.Now().Add(10 * time.Second)
	for {
		kids := children(t)
		if kids == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children left after 10 s: %s", kids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func children(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil || len(files) == 0 {
		t.Skip("no /proc/self/task/*/children on this kernel")
	}
	var out []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if s := strings.TrimSpace(string(b)); s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}
