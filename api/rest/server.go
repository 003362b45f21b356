package rest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/logkey"
)

// Config configures the handler. Start from DefaultConfig.
type Config struct {
	// AnonymousLimit is the per-minute limit for requests without a valid token, counted
	// per client IP (it throttles token guessing).
	AnonymousLimit int
	// RequestTimeout bounds each non-streaming request.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Registerer receives the HTTP metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Metrics serves /metrics; nil answers 404 there.
	Metrics http.Handler
	// Now is the clock of the rate limiter (tests move it).
	Now func() time.Time
	// Stopping, when set, ends when the server begins to shut down: event streams close
	// then (their clients reconnect elsewhere with Last-Event-ID) instead of holding the
	// shutdown for its whole grace period.
	Stopping context.Context
	// Installer serves /install.sh and the agent binary; nil answers 503 there.
	Installer Installer
	// Boot serves /boot/ (iPXE scripts, kernel, initrd) when network boot is on; nil
	// answers 404 there.
	Boot http.Handler
	// Artifacts serves /artifacts/sha256/{hex} (the Kubernetes binaries hosts install, by
	// content) when the coordinator has an artifact store; nil answers 404 there.
	Artifacts http.Handler
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{AnonymousLimit: 600, RequestTimeout: 15 * time.Second, Now: time.Now}
}

// access is who may call a route.
type access int

const (
	public       access = iota // no token (health probes)
	anonymous                  // no token, counted against the per-IP budget (agent installation)
	anyToken                   // any valid token
	clusterRead                // read, scope may be cluster-limited
	clusterWrite               // write, scope may be cluster-limited
	globalRead                 // read, scope *
	adminOnly                  // admin (scope * by construction)
)

type handlerFunc func(w http.ResponseWriter, r *http.Request, p *principal) error

type route struct {
	method  string
	pattern string
	access  access
	h       handlerFunc
}

// Route is a registered method and path, for the spec test.
type Route struct{ Method, Pattern string }

// Handler is the REST API.
type Handler struct {
	b       Backend
	cfg     Config
	logger  *slog.Logger
	mux     *http.ServeMux
	routes  []route
	limiter *limiter

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New builds the handler over a backend.
func New(b Backend, cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{b: b, cfg: cfg, logger: cfg.Logger, mux: http.NewServeMux(), limiter: newLimiter(cfg.Now)}
	h.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deployme_http_requests_total", Help: "REST requests by route and status code.",
	}, []string{"method", "route", "code"})
	h.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "deployme_http_request_duration_seconds", Help: "REST request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"method", "route"})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(h.requests, h.latency)
	}
	h.routes = h.table()
	byPattern := map[string][]route{}
	var order []string
	for _, rt := range h.routes {
		if _, ok := byPattern[rt.pattern]; !ok {
			order = append(order, rt.pattern)
		}
		byPattern[rt.pattern] = append(byPattern[rt.pattern], rt)
	}
	for _, pat := range order {
		h.mux.Handle(pat, h.dispatch(pat, byPattern[pat]))
	}
	h.mux.Handle("/", h.dispatch("", nil))
	return h
}

func (h *Handler) table() []route {
	return []route{
		{"GET", "/healthz", public, h.healthz},
		{"GET", "/readyz", public, h.readyz},
		{"GET", "/metrics", globalRead, h.metrics},
		{"GET", "/v1/openapi.json", anyToken, h.openapi},
		{"GET", "/v1/kubernetes/versions", anyToken, h.versions},

		// Hosts being installed have no API token: the join token they are given is for
		// the agent's registration, over gRPC.
		{"GET", "/install.sh", anonymous, h.installScript},
		{"GET", "/v1/agent/download", anonymous, h.agentDownload},
		{"GET", "/v1/agent/download.sha256", anonymous, h.agentChecksum},
		// Machines booting from the network have no token at all.
		{"GET", "/boot/{file}", public, h.boot},
		{"HEAD", "/boot/{file}", public, h.boot},
		// Hosts fetch Kubernetes binaries by their SHA-256 with no token: the content is
		// public and the hash, which the agent checks, is what makes it trustworthy.
		{"GET", "/artifacts/sha256/{hex}", public, h.artifact},
		{"HEAD", "/artifacts/sha256/{hex}", public, h.artifact},

		{"GET", "/v1/machines", globalRead, h.listMachines},
		{"GET", "/v1/machines/{mac}", globalRead, h.getMachine},
		{"PATCH", "/v1/machines/{mac}", adminOnly, h.setMachineBoot},

		{"GET", "/v1/clusters", clusterRead, h.listClusters},
		{"POST", "/v1/clusters", clusterWrite, h.createCluster},
		{"GET", "/v1/clusters/{id}", clusterRead, h.getCluster},
		{"PATCH", "/v1/clusters/{id}", clusterWrite, h.patchCluster},
		{"DELETE", "/v1/clusters/{id}", clusterWrite, h.deleteCluster},
		{"GET", "/v1/clusters/{id}/kubeconfig", clusterWrite, h.kubeconfig},
		{"GET", "/v1/clusters/{id}/nodes", clusterRead, h.clusterNodes},
		{"GET", "/v1/clusters/{id}/events", clusterRead, h.clusterEvents},
		{"POST", "/v1/clusters/{id}/upgrade", clusterWrite, h.upgradeCluster},

		{"GET", "/v1/tokens", adminOnly, h.listTokens},
		{"POST", "/v1/tokens", adminOnly, h.createToken},
		{"GET", "/v1/tokens/{id}", adminOnly, h.getToken},
		{"DELETE", "/v1/tokens/{id}", adminOnly, h.deleteToken},

		{"GET", "/v1/infras", globalRead, h.listInfras},
		{"POST", "/v1/infras", adminOnly, h.createInfra},
		{"GET", "/v1/infras/{id}", globalRead, h.getInfra},
		{"DELETE", "/v1/infras/{id}", adminOnly, h.deleteInfra},
		{"GET", "/v1/infras/{id}/join-tokens", adminOnly, h.listJoinTokens},
		{"POST", "/v1/infras/{id}/join-tokens", adminOnly, h.createJoinToken},
		{"DELETE", "/v1/infras/{id}/join-tokens/{token_id}", adminOnly, h.deleteJoinToken},

		{"GET", "/v1/hosts", globalRead, h.listHosts},
		{"GET", "/v1/hosts/{id}", globalRead, h.getHost},
		{"DELETE", "/v1/hosts/{id}", adminOnly, h.deleteHost},
		{"POST", "/v1/hosts/{id}/accept", adminOnly, h.acceptHost},
		{"PUT", "/v1/hosts/{id}/network", adminOnly, h.setHostNetwork},
		{"DELETE", "/v1/hosts/{id}/network", adminOnly, h.clearHostNetwork},

		{"GET", "/v1/coordinator/members", adminOnly, h.listMembers},
		{"POST", "/v1/coordinator/members", adminOnly, h.addMember},
		{"DELETE", "/v1/coordinator/members/{id}", adminOnly, h.removeMember},
	}
}

// Routes lists every registered method and path.
func (h *Handler) Routes() []Route {
	out := make([]Route, len(h.routes))
	for i, r := range h.routes {
		out[i] = Route{r.method, r.pattern}
	}
	return out
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// statusWriter records the status for metrics and logs; it passes Flush through for SSE.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// dispatch serves one path pattern: method check, authentication, rate limit, access, then
// the handler; every outcome, errors included, carries the rate-limit headers.
func (h *Handler) dispatch(pattern string, routes []route) http.Handler {
	label := pattern
	if label == "" {
		label = "unmatched"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		var rt *route
		for i := range routes {
			if routes[i].method == r.Method {
				rt = &routes[i]
			}
		}
		err := h.serve(sw, r, rt, routes)
		if err != nil {
			h.writeError(sw, r, err)
		}
		if sw.status == 0 {
			sw.WriteHeader(http.StatusOK)
		}
		h.requests.WithLabelValues(r.Method, label, strconv.Itoa(sw.status)).Inc()
		h.latency.WithLabelValues(r.Method, label).Observe(time.Since(start).Seconds())
	})
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, rt *route, routes []route) error {
	acc := anyToken
	if rt != nil {
		acc = rt.access
	}
	var p *principal
	key, limit := "ip:"+clientIP(r), h.cfg.AnonymousLimit
	var authErr error
	if acc != public && acc != anonymous {
		if secret, ok := bearer(r); !ok {
			authErr = v1.Errorf(v1.CodeUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
		} else if tok, err := h.b.Authenticate(r.Context(), secret); err != nil {
			authErr = err
		} else {
			p = &principal{tok: tok}
			key, limit = "tok:"+tok.ID, v1.PlanLimits[tok.Plan]
			if limit == 0 {
				limit = v1.PlanLimits[v1.PlanCommunity]
			}
		}
	}
	// Health probes carry the headers but do not draw on the anonymous budget: it exists to
	// throttle token guessing, and probes refused by it would take a healthy replica out of
	// its load balancer. The agent installation routes do draw on it: a download sends tens
	// of megabytes to anyone who asks, and the install script retries a 429.
	take := h.limiter.take
	if acc == public {
		take = h.limiter.peek
	}
	remaining, reset, ok := take(key, limit)
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
	if !ok {
		w.Header().Set("Retry-After", strconv.FormatInt(max(reset-h.cfg.Now().Unix(), 1), 10))
		return v1.Errorf(v1.CodeRateLimited, "rate limit of %d requests per minute exceeded; retry after %s",
			limit, time.Unix(reset, 0).UTC().Format(time.RFC3339))
	}
	if authErr != nil {
		return authErr
	}
	if rt == nil {
		if len(routes) == 0 {
			return v1.Errorf(v1.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
		}
		var allow []string
		for _, x := range routes {
			allow = append(allow, x.method)
		}
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return v1.Errorf(v1.CodeMethodNotAllowed, "method %s is not allowed here; allowed: %s", r.Method, strings.Join(allow, ", "))
	}
	if err := checkAccess(p, rt.access); err != nil {
		return err
	}
	if p != nil {
		var err error
		if r, err = requestOptions(w, r, p); err != nil {
			return err
		}
	}
	if rt.pattern != "/v1/clusters/{id}/events" {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	return rt.h(w, r, p)
}

func checkAccess(p *principal, a access) error {
	deny := func(msg string) error { return v1.Errorf(v1.CodeForbidden, "%s", msg) }
	switch a {
	case public, anonymous, anyToken:
		return nil
	case clusterRead:
		if !p.has(v1.PermRead) {
			return deny("this token lacks the read permission")
		}
	case clusterWrite:
		if !p.has(v1.PermWrite) {
			return deny("this token lacks the write permission")
		}
	case globalRead:
		if !p.has(v1.PermRead) {
			return deny("this token lacks the read permission")
		}
		if !p.global() {
			return deny("this token is scoped to clusters; this endpoint needs scope *")
		}
	case adminOnly:
		// Token creation already refuses admin tokens with a narrower scope; checking
		// both here keeps one mistake from becoming a privilege escalation.
		if !p.has(v1.PermAdmin) || !p.global() {
			return deny("this endpoint needs the admin permission")
		}
	}
	return nil
}

// writeError is the one place errors become HTTP responses.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *v1.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.DeadlineExceeded) {
			e = v1.Errorf(v1.CodeUnavailable, "the request did not complete in time")
		} else {
			h.logger.Error("request failed", logkey.Method, r.Method, logkey.Path, r.URL.Path, logkey.Err, err)
			e = v1.Errorf(v1.CodeInternal, "internal error")
		}
	}
	writeJSON(w, e.Status(), e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"internal","message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
