package rest

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
)

// principal is the authenticated caller.
type principal struct{ tok *v1.Token }

// has tells whether the token grants perm: write implies read, admin implies both.
func (p *principal) has(perm string) bool {
	switch perm {
	case v1.PermRead:
		return len(p.tok.Permissions) > 0
	case v1.PermWrite:
		return slices.Contains(p.tok.Permissions, v1.PermWrite) || slices.Contains(p.tok.Permissions, v1.PermAdmin)
	case v1.PermAdmin:
		return slices.Contains(p.tok.Permissions, v1.PermAdmin)
	}
	return false
}

// global tells whether the token's scope covers more than clusters.
func (p *principal) global() bool { return p.tok.Scope == "*" }

// seesCluster tells whether the cluster is in the token's scope.
func (p *principal) seesCluster(id string) bool {
	return p.tok.Scope == "*" || p.tok.Scope == "cluster:*" || p.tok.Scope == "cluster:"+id
}

// onlyCluster is the single cluster a cluster:<id> token may see, "" otherwise.
func (p *principal) onlyCluster() string {
	if id, ok := strings.CutPrefix(p.tok.Scope, "cluster:"); ok && id != "*" {
		return id
	}
	return ""
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// limiter counts requests per key in fixed one-minute windows aligned to the minute, so
// X-RateLimit-Reset is the same for every caller and the whole table can be dropped when
// the minute turns.
type limiter struct {
	mu     sync.Mutex
	minute int64
	counts map[string]int
	now    func() time.Time
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{counts: map[string]int{}, now: now}
}

// take counts one request for key and reports what is left in the window.
func (l *limiter) take(key string, limit int) (remaining int, reset int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	reset = l.roll()
	n := l.counts[key]
	if n >= limit {
		return 0, reset, false
	}
	l.counts[key] = n + 1
	return limit - n - 1, reset, true
}

// peek reports what is left in the window for key without counting a request.
func (l *limiter) peek(key string, limit int) (remaining int, reset int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	reset = l.roll()
	return max(limit-l.counts[key], 0), reset, true
}

// roll starts a new window when the minute has turned and returns the current one's end.
func (l *limiter) roll() (reset int64) {
	m := l.now().Unix() / 60
	if m != l.minute {
		l.minute = m
		clear(l.counts)
	}
	return (m + 1) * 60
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
