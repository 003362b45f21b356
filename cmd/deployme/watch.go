package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
)

// watchGoal is what ends a watch successfully.
type watchGoal int

const (
	untilRunning watchGoal = iota // status running
	untilGone                     // the cluster no longer exists (deletion finished)
)

// clusterFailedError is a watched cluster that ended in status error.
type clusterFailedError struct{ c *v1.Cluster }

func (e *clusterFailedError) Error() string {
	reason := e.c.StatusReason
	if reason == "" {
		reason = "the coordinator gave no reason"
	}
	return fmt.Sprintf("cluster %s (%s) failed: %s", e.c.Name, e.c.ID, reason)
}

// display shows a watched cluster's progress.
type display interface {
	update(c *v1.Cluster, nodes []v1.Node, elapsed time.Duration)
}

// watchCluster polls the cluster and its nodes every pollInterval, shows their progress on
// out, and returns when goal is reached (the final cluster; nil once gone), when the cluster
// fails (*clusterFailedError), or when timeout (0: none) or ctx ends.
//
// It polls plain GETs rather than following the event stream: the client reads whole
// answers, and a poll survives a coordinator restart or failover without resuming anything.
func (a *app) watchCluster(ctx context.Context, c *client.Client, id string, goal watchGoal, timeout time.Duration, out io.Writer) (*v1.Cluster, error) {
	parent := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d display = &lineDisplay{w: out, last: map[string]string{}}
	if a.isTerminal(out) {
		d = &ttyDisplay{w: out, width: a.termWidth(out)}
	}
	start := a.now()
	tick := time.NewTicker(a.pollInterval)
	defer tick.Stop()
	var last *v1.Cluster
	var lastErr error
	for {
		cl, nodes, err := pollCluster(ctx, c, id)
		switch {
		case ctx.Err() != nil:
			// The poll failed because time ran out; say so below, not with its error.
		case client.Code(err) == v1.CodeNotFound:
			if goal == untilGone {
				return nil, nil
			}
			return nil, fmt.Errorf("cluster %s was deleted while being watched", id)
		case err != nil:
			// A coordinator restarting or changing leader answers 503 or not at all for a
			// moment; once the cluster has been seen, that is worth riding out.
			if last == nil || !transient(err) {
				return last, err
			}
			lastErr = err
		default:
			last, lastErr = cl, nil
			d.update(cl, nodes, a.now().Sub(start))
			if cl.Status == v1.StatusError {
				return cl, &clusterFailedError{cl}
			}
			if goal == untilRunning && cl.Status == v1.StatusRunning {
				return cl, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, waitEnded(parent, timeout, id, last, lastErr)
		case <-tick.C:
		}
	}
}

func pollCluster(ctx context.Context, c *client.Client, id string) (*v1.Cluster, []v1.Node, error) {
	cl, err := c.GetCluster(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	nodes, err := c.ClusterNodes(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return cl, nodes.Items, nil
}

// transient tells whether a failed poll may succeed if tried again: the API is unavailable,
// rate limited or failing internally, or could not be reached.
func transient(err error) bool {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status >= http.StatusInternalServerError || apiErr.Status == http.StatusTooManyRequests
	}
	return true
}

// waitEnded explains why a watch stopped before its goal.
func waitEnded(parent context.Context, timeout time.Duration, id string, last *v1.Cluster, lastErr error) error {
	if parent.Err() != nil {
		return errors.New("interrupted")
	}
	msg := fmt.Sprintf("timed out after %s waiting for cluster %s", timeout, id)
	if last != nil {
		msg += fmt.Sprintf(" (status %s)", last.Status)
	}
	if lastErr != nil {
		msg += fmt.Sprintf("; last error: %v", lastErr)
	}
	return errors.New(msg)
}

// stepCounts is how many of a node's steps succeeded, out of how many.
func stepCounts(n v1.Node) (done, total int) {
	for _, s := range n.Steps {
		if s.State == "succeeded" {
			done++
		}
	}
	return done, len(n.Steps)
}

// currentStep is the step a node is at: the one the coordinator names, else one running,
// else one that failed; nil when the node has nothing under way.
func currentStep(n v1.Node) *v1.NodeStep {
	var running, failed *v1.NodeStep
	for i := range n.Steps {
		s := &n.Steps[i]
		switch {
		case n.Step != "" && s.Name == n.Step:
			return s
		case s.State == "running" && running == nil:
			running = s
		case s.State == "failed" && failed == nil:
			failed = s
		}
	}
	if running != nil {
		return running
	}
	return failed
}

// stepProgress says where a node is in its steps: "init [certs]", "join failed: <reason>",
// "credentials (pending)"; "" when no step is under way.
func stepProgress(n v1.Node) string {
	s := currentStep(n)
	if s == nil {
		return ""
	}
	switch s.State {
	case "failed":
		if s.Reason != "" {
			return s.Name + " failed: " + s.Reason
		}
		return s.Name + " failed"
	case "pending":
		return s.Name + " (pending)"
	}
	if s.Phase != "" {
		return s.Name + " " + s.Phase
	}
	return s.Name
}

// nodeProgress is stepProgress, or the node's state (reserved, joined) between steps.
func nodeProgress(n v1.Node) string {
	if p := stepProgress(n); p != "" {
		return p
	}
	return n.State
}

// nodeLine is a node's one-line status for plain output: "host-1 control-plane-init: init [certs]".
func nodeLine(n v1.Node) string {
	return fmt.Sprintf("%s %s: %s", n.Hostname, n.Role, nodeProgress(n))
}

// lineDisplay prints a line only when something changes, for logs and pipes: no escape
// sequences, nothing redrawn.
type lineDisplay struct {
	w      io.Writer
	status string
	last   map[string]string // by host ID
}

func (d *lineDisplay) update(c *v1.Cluster, nodes []v1.Node, _ time.Duration) {
	if c.Status != d.status {
		d.status = c.Status
		fmt.Fprintf(d.w, "cluster %s: %s\n", c.Name, c.Status)
	}
	for _, n := range nodes {
		if l := nodeLine(n); d.last[n.HostID] != l {
			d.last[n.HostID] = l
			fmt.Fprintln(d.w, l)
		}
	}
}

// ttyDisplay redraws, in place, a progress bar of the steps done across every node and one
// line per node.
type ttyDisplay struct {
	w     io.Writer
	width int
	lines int // lines drawn by the previous frame
}

func (d *ttyDisplay) update(c *v1.Cluster, nodes []v1.Node, elapsed time.Duration) {
	done, total := 0, 0
	for _, n := range nodes {
		dn, t := stepCounts(n)
		done, total = done+dn, total+t
	}
	desc := fmt.Sprintf("%s %s %s", c.Name, c.Status, elapsed.Round(time.Second))
	lines := []string{renderBar(desc, done, total)}
	var tab bytes.Buffer
	tw := newTable(&tab)
	for _, n := range nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", n.Hostname, n.Role, nodeProgress(n))
	}
	tw.Flush()
	if s := strings.TrimSuffix(tab.String(), "\n"); s != "" {
		lines = append(lines, strings.Split(s, "\n")...)
	}
	var b strings.Builder
	if d.lines > 0 {
		// Back to the first line of the previous frame, and clear everything below.
		fmt.Fprintf(&b, "\r\x1b[%dA", d.lines)
	}
	b.WriteString("\x1b[J")
	for _, l := range lines {
		// A line wider than the terminal would wrap, and the next frame would then go
		// back up too few lines.
		b.WriteString(truncate(l, d.width-1))
		b.WriteString("\n")
	}
	io.WriteString(d.w, b.String())
	d.lines = len(lines)
}

// renderBar is the progress bar line: "demo provisioning 12s  45% |█████     | (5/11)".
func renderBar(desc string, done, total int) string {
	if total == 0 {
		return desc + "  waiting for hosts"
	}
	done = min(done, total)
	// The bar renders into a string; ttyDisplay owns the cursor, to draw the node lines
	// under it.
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(io.Discard),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
	)
	_ = bar.Set(done)
	return strings.TrimSpace(strings.TrimPrefix(bar.String(), "\r"))
}

// truncate cuts s to at most n characters.
func truncate(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}
