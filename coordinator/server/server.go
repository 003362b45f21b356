// Package server is the coordinator's composition root: it wires the Raft node, the FSM, the
// application service, the REST handler, metrics and the gRPC listener, bootstraps a new
// cluster's first admin token, and runs everything until its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/deployme/deployme/api/rest"
	"github.com/deployme/deployme/coordinator/agentsvc"
	"github.com/deployme/deployme/coordinator/artifacts"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/forward"
	"github.com/deployme/deployme/coordinator/fsm"
	"github.com/deployme/deployme/coordinator/kubestore"
	"github.com/deployme/deployme/coordinator/liveness"
	"github.com/deployme/deployme/coordinator/peer"
	"github.com/deployme/deployme/coordinator/pki"
	"github.com/deployme/deployme/coordinator/pxesvc"
	"github.com/deployme/deployme/coordinator/raftnode"
	"github.com/deployme/deployme/coordinator/scheduler"
	"github.com/deployme/deployme/coordinator/service"
	"github.com/deployme/deployme/coordinator/state"
	"github.com/deployme/deployme/internal/atomicfile"
	"github.com/deployme/deployme/internal/logkey"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
	clusterv1 "github.com/deployme/deployme/proto/cluster/v1"
)

// Config is the coordinator's configuration. Start from DefaultConfig.
type Config struct {
	// NodeID is this replica's Raft ID.
	NodeID string
	// DataDir holds the Raft log, snapshots and the generated admin token.
	DataDir string
	// HTTPAddr, GRPCAddr, RaftAddr are the listen addresses (ignored for an injected listener).
	HTTPAddr, GRPCAddr, RaftAddr string
	// AdvertiseHTTP, AdvertiseGRPC, AdvertiseRaft are what peers and agents are told;
	// empty means the listen address.
	AdvertiseHTTP, AdvertiseGRPC, AdvertiseRaft string
	// Join lists HTTP addresses of existing members; empty bootstraps a new cluster.
	Join []string
	// AdminTokenFile, on bootstrap, holds the first admin token's secret; empty generates one.
	// When joining, it holds an admin token of the cluster being joined.
	AdminTokenFile string
	// TLSCert, TLSKey, TLSCA are PEM files for mutual TLS between replicas (Raft and
	// forwarding). Without them peer traffic is plain, with a warning.
	TLSCert, TLSKey, TLSCA string
	// PeerDialer opens connections to other replicas (tests inject partitions); nil dials TCP.
	PeerDialer peer.Dialer
	// LeaderWait bounds how long a request waits for a reachable leader before 503.
	LeaderWait time.Duration
	// AgentAcceptRate and AgentAcceptBurst pace new agent connections (0: no limit).
	AgentAcceptRate  float64
	AgentAcceptBurst int
	// LeaderLoops run on the leader only, after the built-in ones.
	LeaderLoops []LeaderLoop
	// Scheduler configures the reconciler that drives clusters through their steps (its
	// Keyring is set from the data dir).
	Scheduler scheduler.Config
	// Dev, when set, runs simulated hosts in this process (development mode); their files
	// live under <DataDir>/dev.
	Dev *devmode.Config
	// NoReconciler turns the reconciler off: for tests that put agentless hosts into state
	// and move clusters by hand.
	NoReconciler bool
	// Liveness is how long an agent may go unheard before its host is offline (TTL), and
	// how long a new leader waits beyond that before declaring anything offline (Grace).
	// A zero TTL turns liveness off (tests that put agentless hosts into state).
	Liveness liveness.Policy
	// AgentHeartbeat, when positive, is the heartbeat interval agents are told to use
	// (tests); zero keeps the default that grows with the fleet (5 s + 1 s per 1,000 hosts).
	AgentHeartbeat time.Duration
	// AgentBinary is the linux/amd64 agent binary that /v1/agent/download hands to hosts
	// the install script sets up. Default: "agent" beside this executable (bin/ after
	// make build); a missing file answers 503 there, and nothing else depends on it.
	AgentBinary string
	// KubeArtifactsDir is the Kubernetes artifact store (<dir>/<version>/linux-amd64/
	// {kubeadm,kubelet,kubectl}, docs/upgrades.md) served to hosts at /artifacts/; empty
	// means none. In development mode it is filled with fake binaries of every offered
	// version, where missing.
	KubeArtifactsDir string

	// Listeners, when set, are used instead of listening on the addresses (tests use
	// 127.0.0.1:0 listeners).
	HTTPListener, GRPCListener, RaftListener net.Listener

	Raft    raftnode.Config
	Service service.Config
	REST    rest.Config
	// PXE configures the boot services (--pxe ...).
	PXE pxesvc.Config

	Logger *slog.Logger
	// Stdout receives the one-time print of a generated admin token.
	Stdout io.Writer
}

// DefaultConfig returns the defaults of DESIGN.md section 4.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeID:     host,
		DataDir:    "./data",
		HTTPAddr:   "127.0.0.1:8080",
		GRPCAddr:   "127.0.0.1:9090",
		RaftAddr:   "127.0.0.1:7000",
		LeaderWait: 5 * time.Second,
		// A restarted replica's agents (thousands) come back at up to 500 new connections a
		// second, bursts of 200: TLS handshakes stay a fraction of a core.
		AgentAcceptRate:  500,
		AgentAcceptBurst: 200,
		Liveness:         liveness.Policy{TTL: 20 * time.Second, Grace: 20 * time.Second},
		Raft:             raftnode.DefaultConfig(),
		Service:          service.DefaultConfig(),
		Scheduler:        scheduler.DefaultConfig(),
		REST:             rest.DefaultConfig(),
		PXE:              pxesvc.DefaultConfig(),
		AgentBinary:      defaultAgentBinary(),
		Stdout:           os.Stdout,
	}
}

// defaultAgentBinary is "agent" in the directory of the running executable: make build and
// the packages put both binaries side by side. Empty when the executable cannot be found.
func defaultAgentBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(exe), "agent")
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("node ID is empty (set --node-id)")
	case c.DataDir == "":
		return errors.New("data dir is empty (set --data-dir)")
	case len(c.Join) > 0 && c.AdminTokenFile == "":
		return errors.New("--join needs --admin-token-file: an admin token of the cluster being joined")
	}
	for name, a := range map[string]string{"advertise-http": c.AdvertiseHTTP, "advertise-grpc": c.AdvertiseGRPC, "advertise-raft": c.AdvertiseRaft} {
		if a == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" || port == "0" {
			return fmt.Errorf("--%s %q must be host:port with a fixed port", name, a)
		}
	}
	if err := c.Service.Validate(); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	return nil
}

// Server is one coordinator replica.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	fsm      *fsm.FSM
	node     *raftnode.Node
	mux      *peer.Mux
	fwd      *forward.Forwarder
	lead     *leadership
	fresh    bool
	svc      *service.Service
	pxe      *pxesvc.Services
	handler  *rest.Handler
	httpLn   net.Listener
	grpcLn   net.Listener
	registry *prometheus.Registry
	// stopStreams ends the REST event streams when shutdown begins.
	stopStreams context.CancelFunc
	agents      *agentsvc.Server
	// kube is the Kubernetes artifact store; nil without --kube-artifacts.
	kube *kubestore.Store
}

// New opens the data dir and the listeners and starts Raft. Run serves.
func New(cfg Config) (s *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// The artifact store is opened first: a wrong --kube-artifacts fails before anything
	// listens.
	kube, err := openKubeStore(cfg, logger)
	if err != nil {
		return nil, err
	}
	var closers []io.Closer
	if kube != nil {
		closers = append(closers, kube)
	}
	defer func() {
		if err != nil {
			for _, c := range closers {
				c.Close()
			}
		}
	}()
	listen := func(given net.Listener, addr, what string) (net.Listener, error) {
		if given != nil {
			return given, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s on %s: %w", what, addr, err)
		}
		closers = append(closers, ln)
		return ln, nil
	}
	httpLn, err := listen(cfg.HTTPListener, cfg.HTTPAddr, "http")
	if err != nil {
		return nil, err
	}
	grpcLn, err := listen(cfg.GRPCListener, cfg.GRPCAddr, "grpc")
	if err != nil {
		return nil, err
	}
	raftLn, err := listen(cfg.RaftListener, cfg.RaftAddr, "raft")
	if err != nil {
		return nil, err
	}
	if cfg.AdvertiseHTTP == "" {
		cfg.AdvertiseHTTP = httpLn.Addr().String()
	}
	if cfg.AdvertiseGRPC == "" {
		cfg.AdvertiseGRPC = grpcLn.Addr().String()
	}

	serverTLS, clientTLS, err := peer.LoadTLS(peer.TLSFiles{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSCA})
	if err != nil {
		return nil, err
	}
	if serverTLS == nil {
		logger.Warn("peer traffic (Raft and forwarding) is not encrypted or authenticated: give --tls-cert, --tls-key and --tls-ca in production")
	}
	mux := peer.NewMux(raftLn, peer.Config{ServerTLS: serverTLS, ClientTLS: clientTLS, Dialer: cfg.PeerDialer, Logger: logger.With(logkey.Component, "peer")})
	closers = append(closers, mux)

	f := fsm.New(logger.With(logkey.Component, "fsm"))
	rc := cfg.Raft
	rc.ID = cfg.NodeID
	rc.Dir = filepath.Join(cfg.DataDir, "raft")
	rc.Listener = mux.RaftListener()
	rc.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return mux.Dial(ctx, addr, peer.TypeRaft) }
	rc.Advertise = cfg.AdvertiseRaft
	if rc.Advertise == "" {
		rc.Advertise = raftLn.Addr().String()
	}
	cfg.AdvertiseRaft = rc.Advertise
	rc.Bootstrap = len(cfg.Join) == 0
	rc.Logger = logger.With(logkey.Component, "raft")
	node, err := raftnode.Open(rc, f)
	if err != nil {
		return nil, err
	}
	closers = append(closers, node)

	lead := &leadership{raft: node, logger: logger.With(logkey.Component, "leadership")}
	fwd := forward.New(forward.Config{
		Dial:       func(ctx context.Context, addr string) (net.Conn, error) { return mux.Dial(ctx, addr, peer.TypeGRPC) },
		LeaderWait: cfg.LeaderWait,
		Ready:      lead.Ready,
		Logger:     logger.With(logkey.Component, "forward"),
	}, node, f)

	// The keyring seals cluster keys and join tokens. A new cluster's first replica makes
	// one; a joining replica must be given a copy (docs/operations.md), and without it
	// still serves everything but cluster secrets.
	keyring, err := pki.LoadOrCreateKeyring(filepath.Join(cfg.DataDir, "keyring"), len(cfg.Join) == 0)
	switch {
	case errors.Is(err, pki.ErrNoKeyring):
		logger.Warn("no coordinator keyring: this replica cannot hand out cluster keys or kubeconfigs; copy <data-dir>/keyring from another replica and restart",
			"path", filepath.Join(cfg.DataDir, "keyring"))
		keyring = nil
	case err != nil:
		return nil, err
	}

	sc := cfg.Service
	sc.Keyring = keyring
	sc.NodeID = cfg.NodeID
	sc.AdvertiseHTTP = cfg.AdvertiseHTTP
	sc.AdvertiseGRPC = cfg.AdvertiseGRPC
	sc.Logger = logger.With(logkey.Component, "service")
	if kube != nil {
		sc.KubeArtifacts = kubeArtifacts(kube)
	}
	svc, err := service.New(sc, &clusterAdapter{fwd: fwd, node: node}, f)
	if err != nil {
		return nil, err
	}
	srv := &Server{cfg: cfg, logger: logger, fsm: f, node: node, mux: mux, fwd: fwd, lead: lead, fresh: node.Fresh(), svc: svc, httpLn: httpLn, grpcLn: grpcLn}
	lead.loops = append([]LeaderLoop{
		{Name: "register-self", Run: srv.registerSelfLoop},
		{Name: "promote-nonvoters", Run: srv.promoteLoop},
		{Name: "ensure-agent-ca", Run: srv.ensureAgentCALoop},
	}, cfg.LeaderLoops...)

	// The install script is rendered with the address hosts reach this replica at, so any
	// replica serves a script that downloads from itself.
	installer, err := artifacts.New(artifacts.Config{AgentBinary: cfg.AgentBinary, AdvertiseHTTP: cfg.AdvertiseHTTP})
	if err != nil {
		return nil, err
	}
	if host, _, _ := net.SplitHostPort(cfg.AdvertiseHTTP); host == "" || net.ParseIP(host).IsUnspecified() {
		logger.Warn("hosts cannot download the agent from an unspecified address: set --advertise-http to one they reach",
			logkey.Addr, cfg.AdvertiseHTTP)
	}
	srv.kube = kube
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerStateMetrics(reg, node, f)
	hc := cfg.REST
	stopping, stopStreams := context.WithCancel(context.Background())
	hc.Stopping = stopping
	hc.Logger = logger.With(logkey.Component, "rest")
	hc.Registerer = reg
	hc.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	hc.Installer = installer
	if srv.kube != nil {
		hc.Artifacts = srv.kube.Handler()
	}
	if cfg.PXE.Enabled {
		// The boot HTTP handler answers on this replica's advertised HTTP address: iPXE
		// fetches scripts and images from whichever replica answered its DHCP.
		if srv.pxe, err = pxesvc.New(cfg.PXE, svc, cfg.AdvertiseHTTP, logger.With(logkey.Component, "pxe"), reg); err != nil {
			stopStreams()
			return nil, err
		}
		hc.Boot = srv.pxe.HTTP()
	}
	h := rest.New(svc, hc)

	srv.handler, srv.registry, srv.stopStreams = h, reg, stopStreams
	srv.agents = agentsvc.New(agentsvc.Config{ReplicaID: cfg.NodeID, Advertise: cfg.AdvertiseGRPC, HeartbeatInterval: cfg.AgentHeartbeat,
		Steps: svc, Logger: logger.With(logkey.Component, "agentsvc")}, svc)
	if !cfg.NoReconciler {
		schc := cfg.Scheduler
		schc.Keyring = keyring
		schc.Logger = logger
		rec := scheduler.New(schc, f, svc)
		srv.lead.loops = append(srv.lead.loops, LeaderLoop{Name: "reconciler", Run: rec.Run})
	}
	if cfg.Liveness.TTL > 0 {
		srv.lead.loops = append(srv.lead.loops, LeaderLoop{Name: "liveness", Run: srv.livenessLoop})
	}
	return srv, nil
}

// HTTPAddr is the address the REST API listens on.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// Service is the application layer (tests put hosts into state through it).
func (s *Server) Service() *service.Service { return s.svc }

// FSM is the replica's state machine (tests compare states).
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Raft is the replica's Raft node.
func (s *Server) Raft() *raftnode.Node { return s.node }

// LeaderReady tells whether this replica leads and has applied its term's barrier.
func (s *Server) LeaderReady() bool { return s.lead.Ready() }

// LeadershipsEstablished counts how many times this replica established leadership.
func (s *Server) LeadershipsEstablished() int64 { return s.lead.established.Load() }

// Leases is this replica's in-memory agent lease table.
func (s *Server) Leases() *agentsvc.Leases { return s.agents.Leases() }

// Handler is the REST handler.
func (s *Server) Handler() *rest.Handler { return s.handler }

// KubeStore is the Kubernetes artifact store hosts download binaries from; nil when the
// coordinator has none (no KubeArtifactsDir).
func (s *Server) KubeStore() *kubestore.Store { return s.kube }

// openKubeStore opens the artifact store, after filling it with fake binaries in
// development mode. An unreadable directory fails start-up: an upgrade would otherwise
// fail much later, on every host at once.
func openKubeStore(cfg Config, logger *slog.Logger) (*kubestore.Store, error) {
	if cfg.KubeArtifactsDir == "" {
		return nil, nil
	}
	if cfg.Dev != nil {
		var versions []string
		for _, k := range cfg.Service.KubernetesVersions {
			versions = append(versions, k.Version)
		}
		if err := devmode.SeedKubeArtifacts(cfg.KubeArtifactsDir, versions); err != nil {
			return nil, fmt.Errorf("development mode: %w", err)
		}
	}
	kc := kubestore.DefaultConfig()
	kc.Dir = cfg.KubeArtifactsDir
	kc.Logger = logger.With(logkey.Component, "kubestore")
	store, err := kubestore.New(kc)
	if err != nil {
		return nil, fmt.Errorf("%w (--kube-artifacts)", err)
	}
	return store, nil
}

// Run serves until ctx ends, then stops cleanly and closes Raft.
func (s *Server) Run(ctx context.Context) error {
	defer s.node.Close()
	defer s.mux.Close()
	defer s.fwd.Close()
	if s.kube != nil {
		defer s.kube.Close()
	}
	peerGRPC := grpc.NewServer()
	clusterv1.RegisterClusterServer(peerGRPC, forward.NewServer(s.fwd, s.node, s.agents.Leases()))
	httpSrv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	grpcSrv := grpc.NewServer(s.agents.ServerOptions()...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(grpcSrv, hs)
	agentv1.RegisterAgentServer(grpcSrv, s.agents)

	g, gctx := errgroup.WithContext(ctx)
	if s.pxe != nil {
		g.Go(func() error { return s.pxe.Run(gctx) })
	}
	g.Go(func() error {
		s.logger.Info("serving REST API", logkey.Addr, s.httpLn.Addr().String())
		if err := httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		s.logger.Info("serving agent gRPC", logkey.Addr, s.grpcLn.Addr().String())
		ln := agentsvc.AdmissionListener(s.grpcLn, s.cfg.AgentAcceptRate, s.cfg.AgentAcceptBurst)
		if err := grpcSrv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.mux.Serve(); err != nil && gctx.Err() == nil {
			return fmt.Errorf("peer listener: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		_ = peerGRPC.Serve(s.mux.GRPCListener())
		return nil
	})
	g.Go(func() error { return s.lead.run(gctx) })
	g.Go(func() error { return s.agents.RunDispatch(gctx) })
	if s.cfg.Dev != nil {
		d := *s.cfg.Dev
		// Simulated hosts' roots must be absolute (the step runner refuses anything else),
		// and --data-dir is usually relative (make run: ./data).
		dir, err := filepath.Abs(filepath.Join(s.cfg.DataDir, "dev"))
		if err != nil {
			return fmt.Errorf("development mode: %w", err)
		}
		d.Dir = dir
		d.Coordinator = s.cfg.AdvertiseGRPC
		d.Logger = s.logger
		g.Go(func() error { return devmode.Run(gctx, d, s.svc) })
	}
	g.Go(func() error {
		if err := s.join(gctx); err != nil {
			if gctx.Err() != nil {
				return nil
			}
			return err
		}
		return nil
	})
	g.Go(func() error {
		if err := s.bootstrap(gctx); err != nil {
			if gctx.Err() != nil {
				return nil
			}
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// A leader that is stopping hands leadership over first, so the others do not wait
		// out an election timeout before taking writes again.
		s.node.TransferLeadership()
		// Agent streams never end by themselves: waiting for them (GracefulStop) would
		// hold the shutdown for the whole timeout while this replica still leads. They are
		// cut at once; agents reconnect to another replica with backoff.
		grpcSrv.Stop()
		s.stopStreams()
		_ = httpSrv.Shutdown(shutCtx)
		peerGRPC.Stop()
		s.mux.Close()
		return nil
	})
	return g.Wait()
}

// bootstrap waits for this replica to lead its new single-node cluster and, the first time,
// creates the admin token. A crash between writing the token file and committing it is
// recovered by reading the file back on the next start.
func (s *Server) bootstrap(ctx context.Context) error {
	if len(s.cfg.Join) > 0 {
		return nil
	}
	done := false
	s.fsm.Read(func(st *state.State) { done = st.Bootstrapped() })
	for !done && !s.node.IsLeader() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		s.fsm.Read(func(st *state.State) { done = st.Bootstrapped() })
	}
	if done {
		return nil
	}
	// Entries from before a restart are replayed first, so "bootstrapped" is only read
	// after everything already in the log is applied.
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.node.Barrier(bctx); err != nil {
		return fmt.Errorf("bootstrap barrier: %w", err)
	}
	s.fsm.Read(func(st *state.State) { done = st.Bootstrapped() })
	if done {
		return nil
	}
	secret, generated, err := s.adminSecret()
	if err != nil {
		return err
	}
	if err := s.svc.Bootstrap(bctx, secret); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if generated {
		fmt.Fprintf(s.cfg.Stdout, "\nAdmin token (shown once; also saved to %s, mode 0600):\n\n    %s\n\n",
			filepath.Join(s.cfg.DataDir, "admin-token"), secret)
	}
	s.logger.Info("bootstrapped: admin token and managed infra created")
	return nil
}

// adminSecret returns the bootstrap admin secret: from --admin-token-file, else from a file
// left by an interrupted bootstrap, else a new one written to <data-dir>/admin-token.
func (s *Server) adminSecret() (secret string, generated bool, err error) {
	if s.cfg.AdminTokenFile != "" {
		b, err := os.ReadFile(s.cfg.AdminTokenFile)
		if err != nil {
			return "", false, fmt.Errorf("admin token file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
		if len(secret) < 16 || strings.ContainsAny(secret, " \t\r\n") {
			return "", false, fmt.Errorf("admin token file %s: the token must be at least 16 characters with no spaces", s.cfg.AdminTokenFile)
		}
		return secret, false, nil
	}
	path := filepath.Join(s.cfg.DataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), true, nil
	}
	secret, err = s.svc.NewAdminSecret()
	if err != nil {
		return "", false, err
	}
	if err := writeFileSync(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	return secret, true, nil
}

// writeFileSync writes a file atomically and durably.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

func registerStateMetrics(reg prometheus.Registerer, node *raftnode.Node, f *fsm.FSM) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "deployme_raft_applied_index", Help: "Last Raft index applied to the state machine."},
			func() float64 { return float64(f.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "deployme_raft_last_index", Help: "Last index in the Raft log."},
			func() float64 { return float64(node.LastIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "deployme_raft_leader", Help: "1 when this replica leads."},
			func() float64 {
				if node.IsLeader() {
					return 1
				}
				return 0
			}),
	)
	for _, table := range []string{"tokens", "infras", "join_tokens", "hosts", "clusters", "nodes"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "deployme_state_objects", Help: "Objects per state table.", ConstLabels: prometheus.Labels{"table": table},
		}, func() float64 {
			t := f.Tables()
			return float64(map[string]int{"tokens": len(t.Tokens), "infras": len(t.Infras), "join_tokens": len(t.JoinTokens),
				"hosts": len(t.Hosts), "clusters": len(t.Clusters), "nodes": len(t.Nodes)}[table])
		}))
	}
}

// kubeArtifacts turns the store's binaries of a version into what an upgrade records.
func kubeArtifacts(kube *kubestore.Store) func(version string) ([]state.Artifact, error) {
	return func(version string) ([]state.Artifact, error) {
		bins, err := kube.Binaries(version)
		if err != nil {
			return nil, err
		}
		var out []state.Artifact
		for _, name := range kubestore.Names {
			a := bins[name]
			out = append(out, state.Artifact{Name: name, SHA256: a.SHA256, Size: a.Size})
		}
		return out, nil
	}
}
