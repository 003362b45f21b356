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
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/deployme/deployme/agent/coordclient"
	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/agent/steps"
	"github.com/deployme/deployme/internal/buildinfo"
	"github.com/deployme/deployme/internal/envflag"
)

// config is everything the agent is started with. Root, Kubeadm and Kubectl are for the
// host steps (docs/steps.md): kubeadm init/join/reset and the files under Root.
type config struct {
	Client coordclient.Config
	// Root prefixes every host file the agent writes.
	Root string
	// Kubeadm and Kubectl are the tools' paths; empty means looked up in $PATH.
	Kubeadm, Kubectl string
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
	client, err := coordclient.New(cfg.Client)
	if err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = client.Run(ctx)
	// Steps in flight end with the context; their results are kept for the next start.
	runner.Wait()
	if err != nil {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}
