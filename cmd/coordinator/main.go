// Command coordinator runs one coordinator replica: the REST API, the agent service and the
// Raft-replicated state. Flags map to server.Config; see DESIGN.md section 4.
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

	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/server"
	"github.com/deployme/deployme/internal/buildinfo"
	"github.com/deployme/deployme/internal/envflag"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run returns the exit code: 0 after a clean stop, 1 on a runtime error, 2 on bad usage.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := server.DefaultConfig()
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.NodeID, "node-id", cfg.NodeID, "this replica's ID (default: hostname)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "Raft log, snapshots and keyring")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "REST API, /healthz, /readyz, /metrics")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "agent gRPC service")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", cfg.RaftAddr, "Raft transport")
	fs.StringVar(&cfg.AdvertiseHTTP, "advertise-http", "", "HTTP address told to peers and agents (default: --http-addr)")
	fs.StringVar(&cfg.AdvertiseGRPC, "advertise-grpc", "", "gRPC address told to agents (default: --grpc-addr)")
	fs.StringVar(&cfg.AdvertiseRaft, "advertise-raft", "", "Raft address told to peers (default: --raft-addr)")
	join := fs.String("join", "", "HTTP address(es) of existing members, comma-separated")
	fs.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "on bootstrap, read the first admin token from this file")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate for mutual TLS between replicas (with --tls-key and --tls-ca)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.TLSCA, "tls-ca", "", "PEM CA that signs every replica's certificate")
	fs.StringVar(&cfg.AgentBinary, "agent-binary", cfg.AgentBinary, "linux/amd64 agent binary that /install.sh downloads onto hosts (/v1/agent/download)")
	fs.StringVar(&cfg.KubeArtifactsDir, "kube-artifacts", "", "directory of the Kubernetes binaries hosts install, DIR/<version>/linux-amd64/{kubeadm,kubelet,kubectl} (docs/upgrades.md); with --dev, default <data-dir>/kube-artifacts, filled with fake binaries")
	fs.StringVar(&cfg.Service.DefaultPlan, "default-plan", cfg.Service.DefaultPlan, "plan of tokens created without one: community, pro, enterprise")
	fs.Uint64Var(&cfg.Raft.SnapshotThreshold, "raft-snapshot-threshold", cfg.Raft.SnapshotThreshold, "log entries between snapshots")
	fs.DurationVar(&cfg.Raft.SnapshotInterval, "raft-snapshot-interval", cfg.Raft.SnapshotInterval, "how often the snapshot threshold is checked")
	fs.Uint64Var(&cfg.Raft.TrailingLogs, "raft-trailing-logs", cfg.Raft.TrailingLogs, "log entries kept after a snapshot")
	fs.BoolVar(&cfg.PXE.Enabled, "pxe", false, "serve network boot: DHCP (proxy or full), TFTP and /boot/ over HTTP (docs/baremetal.md)")
	fs.StringVar(&cfg.PXE.Interface, "pxe-interface", "", "the boot segment's interface (DHCP binds to it)")
	fs.StringVar(&cfg.PXE.DHCPMode, "pxe-dhcp-mode", cfg.PXE.DHCPMode, "proxy (next to the site's DHCP server), full (hand out addresses from --pxe-dhcp-range) or off")
	fs.StringVar(&cfg.PXE.TFTPAddr, "pxe-tftp-addr", cfg.PXE.TFTPAddr, "TFTP address for the iPXE binaries (empty: no TFTP)")
	fs.StringVar(&cfg.PXE.Assets, "pxe-assets", "", "directory with vmlinuz, initrd.img and the iPXE binaries (make images)")
	fs.StringVar(&cfg.PXE.InfraID, "pxe-infra", "", "the bare-metal infra network-booted machines join")
	fs.StringVar(&cfg.PXE.DHCPRange, "pxe-dhcp-range", "", "full DHCP mode: the addresses handed out, e.g. 10.0.0.100-10.0.0.199")
	fs.StringVar(&cfg.PXE.ServerIP, "pxe-server-ip", "", "this replica's address on the boot segment (default: the interface's first IPv4)")
	fs.IntVar(&cfg.PXE.LoopLimit, "pxe-loop-limit", cfg.PXE.LoopLimit, "network boots without progress before a machine is in error (boot loop)")
	fs.BoolVar(&cfg.PXE.ChainIPXE, "pxe-chain-ipxe", false, "give iPXE ROMs our iPXE binary over TFTP first, the script to the chained one")
	fs.BoolVar(&cfg.PXE.RouterAdvertisements, "pxe-ipv6-ra", cfg.PXE.RouterAdvertisements, "multicast 'no IPv6 router here' on the boot segment (saves iPXE a 16 s wait per boot)")
	fs.StringVar(&cfg.PXE.UEFIFile, "pxe-uefi-file", cfg.PXE.UEFIFile, "iPXE binary for UEFI machines: ipxe.efi or snponly.efi")
	fs.DurationVar(&cfg.Scheduler.Policy.ReplaceOfflineAfter, "replace-offline-after", cfg.Scheduler.Policy.ReplaceOfflineAfter, "replace a worker whose host has been offline this long with another host (0: never); a control plane offline this long is reported in its cluster's status_reason")
	fs.BoolVar(&cfg.Scheduler.Policy.ReplaceOfflineControlPlanes, "replace-offline-control-planes", false, "also replace a control plane offline for --replace-offline-after (a new one joins, then the old etcd member and Node are removed)")
	fs.DurationVar(&cfg.Liveness.TTL, "liveness-ttl", cfg.Liveness.TTL, "how long an agent may go unheard before its host is offline (0 turns liveness off)")
	fs.DurationVar(&cfg.Liveness.Grace, "liveness-grace", cfg.Liveness.Grace, "how long a new leader waits, beyond the TTL, before declaring hosts offline")
	dev := fs.Bool("dev", false, "development mode: simulated hosts in this process (labelled simulated=true); see README")
	devAgents := fs.Int("dev-agents", 6, "with --dev, how many simulated hosts to run")
	devTimeScale := fs.Float64("dev-time-scale", 1, "with --dev, multiply the simulated kubeadm's realistic timings (0 = instant)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	version := fs.Bool("version", false, "print the version and exit")
	if code, ok := envflag.Parse(fs, args, getenv, stderr); !ok {
		return code
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.String())
		return 0
	}
	if *join != "" {
		for _, u := range strings.Split(*join, ",") {
			if u = strings.TrimSpace(u); u != "" {
				cfg.Join = append(cfg.Join, u)
			}
		}
	}
	if *dev {
		if *devAgents < 0 || *devAgents > 200 {
			fmt.Fprintf(stderr, "coordinator: --dev-agents must be between 0 and 200\n")
			return 2
		}
		if *devTimeScale < 0 {
			fmt.Fprintf(stderr, "coordinator: --dev-time-scale must not be negative\n")
			return 2
		}
		d := devmode.DefaultConfig()
		d.Agents, d.TimeScale = *devAgents, *devTimeScale
		cfg.Dev = &d
		if cfg.KubeArtifactsDir == "" {
			cfg.KubeArtifactsDir = filepath.Join(cfg.DataDir, "kube-artifacts")
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "coordinator: --log-level: %v\n", err)
		return 2
	}
	opts := &slog.HandlerOptions{Level: level}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		fmt.Fprintf(stderr, "coordinator: --log-format must be text or json\n")
		return 2
	}
	cfg.Stdout = stdout
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "coordinator: %v\n", err)
		return 2
	}
	srv, err := server.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "coordinator: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		cfg.Logger.Error("coordinator stopped", "err", err)
		return 1
	}
	return 0
}
