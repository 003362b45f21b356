package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/deployme/deployme/api/v1"
)

// eventsAPI serves a cluster's events in batches, one per call, honouring ?since=; after the
// last batch the cluster is gone (404). Its nodes name host h1.
func eventsAPI(t *testing.T, batches ...[]v1.Event) (*httptest.Server, *[]uint64) {
	var mu sync.Mutex
	var sinces []uint64
	call := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/clusters/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		mu.Lock()
		sinces = append(sinces, since)
		i := call
		call++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if i >= len(batches) {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(v1.Error{Code: v1.CodeNotFound, Message: "cluster cls_1 not found"})
			return
		}
		json.NewEncoder(w).Encode(v1.EventList{Items: batches[i]})
	})
	mux.HandleFunc("GET /v1/clusters/{id}/nodes", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(v1.NodeList{Items: []v1.Node{{HostID: "h1", Hostname: "host-1"}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &sinces
}

func TestEventsFollow(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ev := func(seq uint64, host, typ, msg string) v1.Event {
		return v1.Event{Seq: seq, ClusterID: "cls_1", HostID: host, Type: typ, Message: msg, Time: t0.Add(time.Duration(seq) * time.Second)}
	}
	batches := [][]v1.Event{
		{ev(1, "", "cluster.created", "cluster demo created"), ev(2, "h1", "step.started", "preflight started")},
		{},
		{ev(3, "h9", "step.started", "a host that left")},
	}
	tests := []struct {
		format, want string
	}{
		{"table", "SEQ   AGE   TYPE              HOST     MESSAGE\n" +
			"1     59s   cluster.created   -        cluster demo created\n" +
			"2     58s   step.started      host-1   preflight started\n" +
			// A later batch is aligned on its own, and an unknown host keeps its ID.
			"3   57s   step.started   h9   a host that left\n"},
		{"json", `{"seq":1,"cluster_id":"cls_1","type":"cluster.created","message":"cluster demo created","time":"2030-01-01T12:00:01Z"}` + "\n" +
			`{"seq":2,"cluster_id":"cls_1","host_id":"h1","type":"step.started","message":"preflight started","time":"2030-01-01T12:00:02Z"}` + "\n" +
			`{"seq":3,"cluster_id":"cls_1","host_id":"h9","type":"step.started","message":"a host that left","time":"2030-01-01T12:00:03Z"}` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			srv, sinces := eventsAPI(t, batches...)
			got := cli{
				env: map[string]string{"DEPLOYME_API": srv.URL, "DEPLOYME_TOKEN": "t"},
				now: func() time.Time { return t0.Add(time.Minute) },
			}.run("cluster", "events", "cls_1", "--follow", "-o", tc.format)
			if got.code != exitOK {
				t.Fatalf("exit %d, stderr %q", got.code, got.stderr)
			}
			if diff := cmp.Diff(tc.want, got.stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if want := "cluster cls_1 is gone\n"; got.stderr != want {
				t.Errorf("stderr %q, want %q", got.stderr, want)
			}
			// Each poll resumes after the last event seen.
			if diff := cmp.Diff([]uint64{0, 2, 2, 3}, *sinces); diff != "" {
				t.Errorf("since of each call (-want +got):\n%s", diff)
			}
		})
	}
}
