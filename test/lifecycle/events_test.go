package lifecycle

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
)

// follow reads a cluster's event stream from one replica until the stream ends or stop
// says so, resuming after lastSeq (sent as Last-Event-ID). It returns the events read.
func follow(t *testing.T, r *clustertest.Replica, token, clusterID string, lastSeq uint64, stop func(v1.Event) bool) ([]v1.Event, bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", r.URL()+"/v1/clusters/"+clusterID+"/events?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastSeq > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastSeq, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false
	}
	var out []v1.Event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e v1.Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Errorf("bad event %q: %v", data, err)
			return out, false
		}
		out = append(out, e)
		if stop(e) {
			return out, true
		}
	}
	return out, false
}

// The event stream of a provisioning run, followed through a leader change: the stream on
// the stopping leader ends, the client resumes on another replica with Last-Event-ID, and
// in the end it has seen every event of the cluster exactly once, in order, through to
// running.
func TestEventStreamAcrossLeaderChange(t *testing.T) {
	f := newFleet(t, 3, 2)
	c := f.create("watched", 1, 1)
	leader := f.c.Leader(10 * time.Second)
	var seen []v1.Event
	var last uint64
	stoppedLeader := false
	running := func(e v1.Event) bool { return e.Type == "cluster.status" && strings.HasSuffix(e.Message, "-> running") }
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	streams := 0
	for ctx.Err() == nil {
		streams++
		r := leader
		if stoppedLeader || !r.Running() {
			for _, o := range f.c.Replicas {
				if o.Running() {
					r = o
					break
				}
			}
		}
		got, done := follow(t, r, f.c.AdminToken, c.ID, last, func(e v1.Event) bool {
			// Stop the leader from another goroutine once init has started: the stream
			// being read is the leader's own.
			if !stoppedLeader && e.Type == "step.started" && strings.Contains(e.Message, "init started") {
				stoppedLeader = true
				go leader.Stop()
			}
			return running(e)
		})
		for _, e := range got {
			seen = append(seen, e)
			last = e.Seq
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !stoppedLeader || streams < 2 {
		t.Fatalf("leader stopped: %v; streams opened: %d (want a resume on another replica)", stoppedLeader, streams)
	}
	defer func() {
		if err := leader.StartAgain(); err != nil {
			t.Error(err)
		}
	}()
	all := f.events(c.ID)
	var want []string
	for _, e := range all {
		want = append(want, fmt.Sprint(e.Seq, e.Type))
		if running(e) {
			break
		}
	}
	var got []string
	for _, e := range seen {
		got = append(got, fmt.Sprint(e.Seq, e.Type))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("followed events differ from the cluster's events:\nfollowed %d: %v\nstored %d: %v", len(got), got, len(want), want)
	}
}
