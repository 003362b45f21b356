package e2e

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	v1 "github.com/deployme/deployme/api/v1"
)

// The register. The REST API has no plain key/value store, so each key is an infra
// (created once at setup) and its value is the set of its join tokens' max_uses values:
//
//   - write(k, v) = POST /v1/infras/{k}/join-tokens {"max_uses": v}: one call, one Raft
//     entry, adds v to k's set. Every v is unique in the run, so a value seen in a read
//     names exactly one write.
//   - read(k) = GET /v1/infras/{k}/join-tokens: one call, linearizable by default (read
//     index from the leader), returns k's whole set.
//
// So the per-key object is a grow-only set, specified sequentially by linModel: a write
// adds its value, a read returns exactly the values added so far. A stale read (one that
// misses a write acknowledged before the read was sent, or that misses a value an earlier
// read already returned) has no linearization. Writes answered with an error (or no
// answer) may or may not have been applied, possibly later: they are kept with a return
// time after the end of the history (porcupine's open-ended operation), unless the
// connection was refused (nothing was sent). Reads answered with an error are dropped.

type linInput struct {
	key   int
	write bool
	value int // write only
}

type linOutput struct {
	values  []int // read only: sorted
	unknown bool  // write only: the outcome is unknown
}

// linModel is the grow-only set per key, partitioned by key. A state is a sorted []int.
var linModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		var keys []int
		for _, op := range history {
			k := op.Input.(linInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		slices.Sort(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return []int(nil) },
	Step: func(state, input, output any) (bool, any) {
		s := state.([]int)
		in := input.(linInput)
		if in.write {
			i, found := slices.BinarySearch(s, in.value)
			if found {
				return true, s
			}
			return true, slices.Insert(slices.Clone(s), i, in.value)
		}
		return slices.Equal(s, output.(linOutput).values), s
	},
	Equal: func(a, b any) bool { return slices.Equal(a.([]int), b.([]int)) },
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		for _, v := range state.([]int) {
			h.Write([]byte(strconv.Itoa(v) + ","))
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in := input.(linInput)
		if in.write {
			if output.(linOutput).unknown {
				return fmt.Sprintf("k%d add(%d) ?", in.key, in.value)
			}
			return fmt.Sprintf("k%d add(%d)", in.key, in.value)
		}
		return fmt.Sprintf("k%d read() -> %s", in.key, linDescribe(output.(linOutput).values))
	},
	DescribeState: func(state any) string { return linDescribe(state.([]int)) },
}

func linDescribe(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return "{" + strings.Join(s, ",") + "}"
}

// linCheck checks history; on a violation it writes porcupine's visualization and fails
// t only if failOnViolation (the checker's own test wants the violation).
func linCheck(t *testing.T, history []porcupine.Operation, failOnViolation bool) porcupine.CheckResult {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linModel, history, 60*time.Second)
	t.Logf("porcupine: %s for %d operations in %v", res, len(history), time.Since(start).Round(time.Millisecond))
	if res == porcupine.Illegal {
		path := filepath.Join(t.TempDir(), "linearizability.html")
		if err := porcupine.VisualizePath(linModel, info, path); err != nil {
			t.Logf("visualization: %v", err)
		} else {
			t.Logf("visualization of the history: %s", path)
		}
		if failOnViolation {
			t.Errorf("the history is not linearizable (see the visualization above)")
		}
	}
	return res
}

// linHistory collects operations from many goroutines with a monotonic clock.
type linHistory struct {
	start   time.Time
	mu      sync.Mutex
	ops     []porcupine.Operation
	pending []porcupine.Operation // unknown-outcome writes; Return set at the end
	reads   atomic.Int64
	writes  atomic.Int64
}

func (h *linHistory) now() int64 { return int64(time.Since(h.start)) } // monotonic

func (h *linHistory) add(op porcupine.Operation, unknown bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if unknown {
		h.pending = append(h.pending, op)
	} else {
		h.ops = append(h.ops, op)
	}
}

func (h *linHistory) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops) + len(h.pending)
}

// final closes the history: unknown writes get a return time after every other event.
func (h *linHistory) final() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := h.now() + 1
	out := slices.Clone(h.ops)
	for _, op := range h.pending {
		op.Return = end
		out = append(out, op)
	}
	return out
}

func TestLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3 coordinator processes and kills leaders")
	}
	const (
		workers   = 8
		keys      = 6
		minOps    = 2000
		minFaults = 5
		// Each worker sends at most one request per tick: enough ops to cover the faults,
		// few enough to keep the sets (and the check) small and under the rate limit.
		tick = 40 * time.Millisecond
	)
	c := triStart(t)
	slow := c.slow
	runDeadline := time.Now().Add(90 * time.Second * slow)

	setup := c.client(c.members[0])
	infraIDs := make([]string, keys)
	for k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		inf, err := setup.CreateInfra(ctx, v1.CreateInfraRequest{Name: ptr(fmt.Sprintf("lin-k%d", k)), Kind: ptr("onpremise")})
		cancel()
		if err != nil {
			t.Fatalf("create infra for key %d: %v", k, err)
		}
		infraIDs[k] = inf.ID
	}

	h := &linHistory{start: time.Now()}
	var (
		stop    atomic.Bool
		nextVal atomic.Int64
		wg      sync.WaitGroup
		refused atomic.Int64
		unknown atomic.Int64
		failedR atomic.Int64
	)
	runCtx, cancelRun := context.WithDeadline(context.Background(), runDeadline.Add(30*time.Second*slow))
	defer cancelRun()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			tk := time.NewTicker(tick)
			defer tk.Stop()
			for i := 0; !stop.Load() && runCtx.Err() == nil; i++ {
				select {
				case <-tk.C:
				case <-runCtx.Done():
					return
				}
				// Spread the ops over every replica, a killed one included: requests in
				// flight when the leader dies are the interesting ones (refused connections
				// to a dead replica are dropped: nothing was sent).
				m := c.members[(w+i)%3]
				cl := c.client(m)
				key := rng.IntN(keys)
				if rng.IntN(2) == 0 {
					v := int(nextVal.Add(1))
					in := linInput{key: key, write: true, value: v}
					call := h.now()
					_, err := cl.CreateJoinToken(runCtx, infraIDs[key], v1.CreateJoinTokenRequest{Expires: ptr("24h"), MaxUses: &v})
					ret := h.now()
					switch {
					case err == nil:
						h.writes.Add(1)
						h.add(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: linOutput{}, Return: ret, Metadata: m.id}, false)
					case triRefused(err):
						refused.Add(1)
					default:
						unknown.Add(1)
						h.add(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: linOutput{unknown: true}, Metadata: m.id + " " + err.Error()}, true)
					}
					continue
				}
				in := linInput{key: key}
				call := h.now()
				l, err := cl.ListJoinTokens(runCtx, infraIDs[key])
				ret := h.now()
				if err != nil {
					failedR.Add(1)
					continue
				}
				vals := make([]int, 0, len(l.Items))
				for _, jt := range l.Items {
					vals = append(vals, jt.MaxUses)
				}
				slices.Sort(vals)
				h.reads.Add(1)
				h.add(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: linOutput{values: vals}, Return: ret, Metadata: m.id}, false)
			}
		}()
	}
	// Whatever happens, the workers stop before the test returns.
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	// Faults: SIGKILL the leader, wait for a new one to serve, restart the killed replica
	// on its data dir, wait for 3 reachable voters, let some load through, repeat.
	waitOps := func(n int) {
		t.Helper()
		ctx, cancel := context.WithDeadline(context.Background(), runDeadline)
		defer cancel()
		target := h.count() + n
		ctxErr := waitFor(ctx, func() bool { return h.count() >= target })
		if ctxErr != nil {
			t.Fatalf("the workers did not complete %d more operations in time (%d so far)", n, h.count())
		}
	}
	faults := 0
	var faultLog []string
	for faults < minFaults {
		waitOps(150)
		l := c.waitLeader(nil, 30*time.Second*slow)
		t0 := time.Now()
		c.kill(l)
		nl := c.waitLeader(l, 30*time.Second*slow)
		elected := time.Since(t0)
		c.restart(l)
		c.waitHealthy(60 * time.Second * slow)
		faults++
		faultLog = append(faultLog, fmt.Sprintf("killed %s, %s serving after %v, healthy after %v", l, nl, elected.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond)))
	}
	ctx, cancel := context.WithDeadline(context.Background(), runDeadline)
	if err := waitFor(ctx, func() bool { return h.count() >= minOps }); err != nil {
		cancel()
		t.Fatalf("only %d operations before the deadline, want %d", h.count(), minOps)
	}
	cancel()
	stop.Store(true)
	wg.Wait()

	history := h.final()
	for _, f := range faultLog {
		t.Log(f)
	}
	t.Logf("history: %d ops (%d acknowledged writes, %d unknown writes, %d reads); %d refused writes and %d failed reads dropped; run %v",
		len(history), h.writes.Load(), unknown.Load(), h.reads.Load(), refused.Load(), failedR.Load(), time.Since(h.start).Round(time.Millisecond))
	if h.reads.Load() < minOps/4 || h.writes.Load() < minOps/4 {
		t.Errorf("too few acknowledged reads (%d) or writes (%d) for a meaningful check", h.reads.Load(), h.writes.Load())
	}
	switch linCheck(t, history, true) {
	case porcupine.Unknown:
		t.Logf("porcupine timed out: no violation found, none proven absent")
	}
}

// waitFor polls cond every 10ms until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
	return nil
}

// TestLinearizabilityCheckerCatchesStaleRead feeds the checker fabricated histories: the
// same checker must reject a stale read, so TestLinearizable can fail.
func TestLinearizabilityCheckerCatchesStaleRead(t *testing.T) {
	w := func(client, key, v int, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linInput{key: key, write: true, value: v}, Call: call, Output: linOutput{}, Return: ret}
	}
	r := func(client, key int, call, ret int64, vs ...int) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linInput{key: key}, Call: call, Output: linOutput{values: vs}, Return: ret}
	}
	unknownW := func(client, key, v int, call int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linInput{key: key, write: true, value: v}, Call: call, Output: linOutput{unknown: true}, Return: 1000}
	}
	tests := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"ok: concurrent read may or may not see a write", []porcupine.Operation{
			w(0, 0, 1, 0, 10), w(0, 0, 2, 20, 40), r(1, 0, 25, 30, 1), r(2, 0, 26, 35, 1, 2), r(1, 0, 50, 60, 1, 2), r(3, 1, 0, 5),
		}, porcupine.Ok},
		{"ok: an unknown write applied late", []porcupine.Operation{
			w(0, 0, 1, 0, 10), unknownW(1, 0, 2, 5), r(2, 0, 20, 30, 1), r(2, 0, 40, 50, 1, 2),
		}, porcupine.Ok},
		{"stale read: misses a write acknowledged before it was sent", []porcupine.Operation{
			w(0, 0, 1, 0, 10), w(0, 0, 2, 20, 30), r(1, 0, 40, 50, 1), w(0, 1, 3, 0, 5),
		}, porcupine.Illegal},
		{"stale read: misses what an earlier read returned", []porcupine.Operation{
			w(0, 0, 1, 0, 10), unknownW(1, 0, 2, 5), r(2, 0, 20, 30, 1, 2), r(3, 0, 40, 50, 1),
		}, porcupine.Illegal},
		{"read of a value never written", []porcupine.Operation{
			w(0, 0, 1, 0, 10), r(1, 0, 20, 30, 1, 7),
		}, porcupine.Illegal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := linCheck(t, tc.history, false); got != tc.want {
				t.Errorf("checker says %s, want %s", got, tc.want)
			}
		})
	}
}
