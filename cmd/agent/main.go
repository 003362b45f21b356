// Command agent runs on every fleet host: it registers with a coordinator using a join
// token, then keeps a stream to the coordinators, reporting inventory and heartbeats.
// Flags map to the agent's configuration; see DESIGN.md section 4.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deployme/deployme/agent/coordclient"
	"github.com/deployme/deployme/agent/hostnet"
	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/agent/netconf"
	"github.com/deployme/deployme/agent/steps"
	"github.com/deployme/deployme/agent/vip"
	"github.com/deployme/deployme/internal/buildinfo"
	"github.com/deployme/deployme/internal/envflag"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// config is everything the agent is started with. Root, Kubeadm and Kubectl are for the
// host steps (docs/steps.md): kubeadm init/join/reset and the files under Root.
type config struct {
	Client coordclient.Config
	// Root prefixes every host file the agent writes.
	Root string
	// Kubeadm and Kubectl are the tools' paths; empty means looked up in $PATH.
	Kubeadm, Kubectl string
	// Readyz is the local API server's readiness URL, checked while the host is a control
	// plane of a cluster with a VIP.
	Readyz string
	// Network: apply the infra's network template to this host with netlink.
	Network bool
	// VIPFence is how long a VIP holder may go without hearing a coordinator before it
	// drops the VIP; keep it below the coordinators' --liveness-ttl.
	VIPFence time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run returns the exit code: 0 after a clean stop, 1 on a runtime error (a refused join
// token included), 2 on bad usage.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := config{Client: coordclient.DefaultConfig(), Root: "/"}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	coordinators := fs.String("coordinator", "", "coordinator gRPC address(es), HOST:PORT[,HOST:PORT]")
	fs.StringVar(&cfg.Client.JoinToken, "join-token", "", "join token; needed only until the host has registered")
	fs.StringVar(&cfg.Client.CAHash, "ca-hash", "", "pin the coordinator's agent CA: sha256:<hex of its DER> (default: trust on first use)")
	fs.StringVar(&cfg.Client.StateDir, "state-dir", cfg.Client.StateDir, "identity, certificate and completed steps")
	fs.StringVar(&cfg.Root, "root", cfg.Root, "prefix for every host file the agent writes; kubeadm then runs with --rootfs")
	labels := fs.String("labels", "", "host labels, k=v,... (e.g. rack=r12,zone=a)")
	fs.StringVar(&cfg.Kubeadm, "kubeadm", "", "path of kubeadm (default: from $PATH)")
	fs.StringVar(&cfg.Kubectl, "kubectl", "", "path of kubectl (default: from $PATH)")
	fs.BoolVar(&cfg.Network, "network", true, "apply the infra's network template (bonds, VLANs, bridges, the host address) with netlink, rolled back if no coordinator answers afterwards")
	fs.DurationVar(&cfg.VIPFence, "vip-fence-after", 10*time.Second, "drop a held VIP after this long without hearing a coordinator (keep it below their --liveness-ttl)")
	fs.StringVar(&cfg.Readyz, "apiserver-readyz", vip.DefaultReadyzURL, "the local API server's readiness URL; a control plane holding the VIP gives it up when this stops answering")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	version := fs.Bool("version", false, "print the version and exit")
	if code, ok := envflag.Parse(fs, args, getenv, stderr); !ok {
		return code
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.String())
		return 0
	}
	for _, a := range strings.Split(*coordinators, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Client.Coordinators = append(cfg.Client.Coordinators, a)
		}
	}
	if len(cfg.Client.Coordinators) == 0 {
		fmt.Fprintf(stderr, "agent: --coordinator is required\n")
		return 2
	}
	var err error
	if cfg.Client.Labels, err = inventory.ParseLabels(*labels); err != nil {
		fmt.Fprintf(stderr, "agent: --labels: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "agent: --log-level: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Client.Logger = logger
	hostLabels := cfg.Client.Labels
	cfg.Client.Inventory = func(ctx context.Context) (*inventory.Inventory, error) {
		return inventory.Collect(ctx, inventory.Options{Labels: hostLabels, Logger: logger})
	}
	if cfg.Root == "" {
		fmt.Fprintf(stderr, "agent: --root is empty\n")
		return 2
	}
	if err := cfg.Client.Validate(); err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 2
	}
	sc := steps.DefaultConfig()
	sc.Root = filepath.Clean(cfg.Root)
	sc.StateDir = cfg.Client.StateDir
	if cfg.Kubeadm != "" {
		sc.Kubeadm = cfg.Kubeadm
	}
	if cfg.Kubectl != "" {
		sc.Kubectl = cfg.Kubectl
	}
	sc.Logger = logger.With("component", "steps")
	if err := sc.Validate(); err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 2
	}
	runner, err := steps.New(sc)
	if err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 2
	}
	cfg.Client.Steps = runner
	vc := vip.DefaultConfig()
	vc.Readyz = vip.HTTPReadyz(cfg.Readyz, time.Second)
	vc.Logger = logger.With("component", "vip")
	var client *coordclient.Client
	vc.Report = func(s vip.Status) {
		client.ReportVIP(&agentv1.VIPStatus{ClusterId: s.ClusterID, Epoch: s.Epoch, Holding: s.Holding, Ready: s.Ready, Released: s.Released, Reason: s.Reason})
	}
	vips, err := vip.New(vc)
	if err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 2
	}
	// A holder that stops hearing the coordinators lets the VIP go before they give it to
	// another host (their liveness TTL is 20 s by default).
	fence := vip.NewFence(vips, cfg.VIPFence)
	cfg.Client.VIP = vipHandler{m: fence, log: logger}
	cfg.Client.Heard = fence.Heard
	if cfg.Network {
		nc := netconf.DefaultConfig()
		nc.StateFile = filepath.Join(absDir(cfg.Client.StateDir), "netconf.json")
		nc.Logger = logger.With("component", "netconf")
		applier, err := netconf.New(nc)
		if err != nil {
			fmt.Fprintf(stderr, "agent: %v\n", err)
			return 2
		}
		defer applier.Close()
		h, err := hostnet.New(hostnet.Config{Applier: applier, Coordinators: cfg.Client.Coordinators,
			StateDir: cfg.Client.StateDir, Logger: logger.With("component", "hostnet")})
		if err != nil {
			fmt.Fprintf(stderr, "agent: %v\n", err)
			return 2
		}
		cfg.Client.Network = h
	}
	client, err = coordclient.New(cfg.Client)
	if err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return client.Run(gctx) })
	// The VIP manager removes a VIP it holds when it stops: a stopped agent must not keep
	// answering for it.
	g.Go(func() error { return vips.Run(gctx) })
	g.Go(func() error { return fence.Run(gctx) })
	err = g.Wait()
	// Steps in flight end with the context; their results are kept for the next start.
	runner.Wait()
	if err != nil {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

// vipHandler turns the coordinators' VIP assignments into the VIP manager's.
type vipHandler struct {
	m   vip.Setter
	log *slog.Logger
}

func (h vipHandler) SetVIP(a *agentv1.VIPAssignment) {
	p, err := netip.ParsePrefix(a.GetAddress())
	if err != nil {
		h.log.Warn("ignoring a VIP assignment with a bad address", "address", a.GetAddress(), "err", err)
		return
	}
	h.m.Set(vip.Assignment{ClusterID: a.GetClusterId(), Address: p, Epoch: a.GetEpoch(), Holder: a.GetHolder()})
}

// absDir makes a directory flag absolute (the netconf state file must be).
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
