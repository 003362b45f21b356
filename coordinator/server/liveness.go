package server

import (
	"context"
	"sync"
	"time"

	"github.com/deployme/deployme/coordinator/liveness"
)

// livenessLoop is the leader's liveness timer (see coordinator/liveness).
func (s *Server) livenessLoop(ctx context.Context) error {
	interval := min(max(s.cfg.Liveness.TTL/10, 100*time.Millisecond), time.Second)
	return liveness.Run(ctx, s.cfg.Liveness, interval, livenessSource{s}, time.Now, s.logger.With("component", "liveness"))
}

type livenessSource struct{ s *Server }

func (l livenessSource) Hosts() []liveness.Host { return l.s.svc.LivenessHosts() }

// Leases merges this replica's leases with every other replica's, keeping the freshest per
// host. An unreachable replica contributes nothing: its agents reconnect elsewhere within
// their backoff, well inside the TTL.
func (l livenessSource) Leases(ctx context.Context) map[string]liveness.Lease {
	out := map[string]liveness.Lease{}
	for id, t := range l.s.agents.Leases().LastSeen() {
		out[id] = liveness.Lease{At: t, Replica: l.s.cfg.NodeID}
	}
	servers, err := l.s.node.Servers()
	if err != nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sv := range servers {
		if sv.ID == l.s.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			peer, err := l.s.fwd.PeerLeases(pctx, sv.Address)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for id, t := range peer {
				if t.After(out[id].At) {
					out[id] = liveness.Lease{At: t, Replica: sv.ID}
				}
			}
		}()
	}
	wg.Wait()
	return out
}

func (l livenessSource) Apply(ctx context.Context, t liveness.Transition) error {
	return l.s.svc.SetHostLiveness(ctx, t.HostID, t.Online, t.LastSeen, t.Replica)
}
