// Package replication checks the replicated coordinator's acceptance points (DESIGN.md §6)
// with in-process replicas: real Raft and gRPC on 127.0.0.1, partitions through the
// harness's cuttable dialers.
package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/state"
	"github.com/deployme/deployme/internal/poll"
)

func ptr[T any](v T) *T { return &v }

var httpClient = &http.Client{Timeout: 30 * time.Second}

// answer is a raw API answer.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error
}

func (a answer) ok() bool { return a.err == nil && a.status >= 200 && a.status < 300 }

// apiError decodes an error answer.
func (a answer) apiError() v1.Error {
	var e v1.Error
	_ = json.Unmarshal(a.body, &e)
	return e
}

// unknownOutcome tells whether a write's outcome is unknown: a 503 that says so, or no
// answer at all.
func (a answer) unknownOutcome() bool {
	if a.err != nil {
		return true
	}
	return a.status == http.StatusServiceUnavailable && a.apiError().Details["outcome"] == "unknown"
}

func (a answer) String() string {
	if a.err != nil {
		return "transport error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body))
}

// call sends a request to a replica with the admin token and extra headers.
func call(ctx context.Context, c *clustertest.Cluster, r *clustertest.Replica, method, path string, body any, hdr map[string]string) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{err: err}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.URL()+path, rd)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func decode[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	return v
}

// createInfra creates an onpremise infra (needs no hosts) and returns the answer.
func createInfra(ctx context.Context, c *clustertest.Cluster, r *clustertest.Replica, name string) answer {
	return call(ctx, c, r, http.MethodPost, "/v1/infras", v1.CreateInfraRequest{Name: ptr(name), Kind: ptr("onpremise")}, nil)
}

func createClusterReq(name string, workers int) v1.CreateClusterRequest {
	return v1.CreateClusterRequest{Name: ptr(name), ControlPlanes: ptr(1), Workers: ptr(workers), NodeSize: ptr("small")}
}

// running returns the running replicas.
func running(c *clustertest.Cluster) []*clustertest.Replica {
	var out []*clustertest.Replica
	for _, r := range c.Replicas {
		if r.Running() {
			out = append(out, r)
		}
	}
	return out
}

// leaderAmong waits until one of rs leads and has established leadership.
func leaderAmong(t *testing.T, rs []*clustertest.Replica, timeout time.Duration) *clustertest.Replica {
	t.Helper()
	var leader *clustertest.Replica
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) {
		for _, r := range rs {
			if s := r.Server(); s != nil && r.Running() && s.LeaderReady() {
				leader = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no leader among %d replicas within %v", len(rs), timeout)
	}
	return leader
}

// converge waits until every replica of rs has applied the same entries and holds identical
// tables, and returns those tables.
func converge(t *testing.T, rs []*clustertest.Replica, timeout time.Duration) *state.Tables {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var first *state.Tables
	var diff string
	err := poll.Until(ctx, 50*time.Millisecond, func() (bool, error) {
		applied := rs[0].Server().FSM().AppliedIndex()
		for _, r := range rs[1:] {
			if a := r.Server().FSM().AppliedIndex(); a != applied {
				diff = fmt.Sprintf("applied index %s=%d, %s=%d", rs[0].ID, applied, r.ID, a)
				return false, nil
			}
		}
		first = rs[0].Server().FSM().Tables()
		for _, r := range rs[1:] {
			if d := cmp.Diff(first, r.Server().FSM().Tables()); d != "" {
				diff = fmt.Sprintf("tables %s vs %s (-+):\n%s", rs[0].ID, r.ID, d)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("replicas did not converge within %v: %s", timeout, diff)
	}
	return first
}

func clustersByName(tb *state.Tables) map[string][]*state.Cluster {
	m := map[string][]*state.Cluster{}
	for _, cl := range tb.Clusters {
		m[cl.Name] = append(m[cl.Name], cl)
	}
	return m
}

func infrasByID(tb *state.Tables) map[string]*state.Infra {
	m := map[string]*state.Infra{}
	for _, in := range tb.Infras {
		m[in.ID] = in
	}
	return m
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts several coordinator replicas")
	}
}

func bytesContains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
