// Package devmode runs simulated hosts inside the coordinator process (`coordinator --dev`):
// real agents (registration, mutual TLS stream, the real step runner) whose kubeadm and
// kubectl are the in-process simulator of agent/kubeadm/kubefake with realistic timings. A
// new user can create a cluster with curl and watch it go to running on one machine.
//
// The simulation is loud: every simulated host is labelled simulated=true, and every event
// of its steps says "[simulated]". Nothing it does touches the machine outside the data
// directory.
package devmode

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deployme/deployme/agent/coordclient"
	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/agent/kubeadm"
	"github.com/deployme/deployme/agent/kubeadm/kubefake"
	"github.com/deployme/deployme/agent/steps"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/logkey"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Config configures the simulated fleet.
type Config struct {
	// Agents is how many simulated hosts run.
	Agents int
	// Dir holds each simulated host's state dir and root, and the simulator's shared state.
	Dir string
	// Coordinator is the gRPC address the agents connect to.
	Coordinator string
	// InfraID is the infra the hosts join (the built-in managed one by default).
	InfraID string
	// TimeScale multiplies the simulator's realistic timings (1 = realistic, 0 = instant).
	TimeScale float64
	// CPUs and MemoryBytes are what each simulated host reports.
	CPUs        int
	MemoryBytes int64
	Logger      *slog.Logger
}

// DefaultConfig is what `coordinator --dev` uses.
func DefaultConfig() Config {
	return Config{Agents: 6, InfraID: "infra_managed", TimeScale: 1, CPUs: 4, MemoryBytes: 8 << 30}
}

// Backend is what the simulated fleet needs from the coordinator.
type Backend interface {
	CreateJoinToken(ctx context.Context, infraID string, ttl time.Duration, maxUses int) (*v1.JoinToken, error)
	AgentCAFingerprint() string
}

// Run starts the simulated hosts and keeps them until ctx ends.
func Run(ctx context.Context, cfg Config, b Backend) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(logkey.Component, "devmode")
	if cfg.Agents <= 0 {
		return nil
	}
	fakeState := filepath.Join(cfg.Dir, "simulator")
	if err := os.MkdirAll(fakeState, 0o700); err != nil {
		return err
	}
	// The agents pin the agent CA; it exists once the leader has made it.
	var caHash string
	for caHash == "" {
		if fp := b.AgentCAFingerprint(); fp != "" {
			caHash = "sha256:" + fp
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	var token string
	for {
		jt, err := b.CreateJoinToken(ctx, cfg.InfraID, time.Hour, cfg.Agents)
		if err == nil {
			token = jt.Secret
			break
		}
		log.Debug("waiting to create the simulated hosts' join token", logkey.Err, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	log.Warn("development mode: simulated hosts with a simulated kubeadm; nothing here is a real cluster", "hosts", cfg.Agents, "dir", cfg.Dir)
	g, gctx := errgroup.WithContext(ctx)
	for i := range cfg.Agents {
		a, err := newAgent(cfg, i+1, caHash, token, fakeState, log)
		if err != nil {
			return err
		}
		g.Go(func() error {
			err := a.client.Run(gctx)
			a.exec.Wait()
			if err != nil && gctx.Err() == nil {
				log.Error("simulated host stopped", "host", a.name, logkey.Err, err)
			}
			return nil
		})
	}
	return g.Wait()
}

type agent struct {
	name   string
	client *coordclient.Client
	exec   *steps.Executor
}

func newAgent(cfg Config, i int, caHash, token, fakeState string, log *slog.Logger) (*agent, error) {
	name := fmt.Sprintf("dev-%d", i)
	dir := filepath.Join(cfg.Dir, name)
	root := filepath.Join(dir, "root")
	if err := prepareRoot(root); err != nil {
		return nil, err
	}
	alog := log.With("host", name)
	versions := &versionRunner{inner: kubefake.Runner{Options: kubefake.Options{StateDir: fakeState, Delay: kubefake.RealisticDelays(cfg.TimeScale)}}}
	sc := steps.DefaultConfig()
	sc.Root = root
	sc.StateDir = filepath.Join(dir, "state")
	sc.Runner = versions
	sc.Logger = alog
	// A simulated host's ports are its own, not this machine's.
	sc.CheckPort = func(int) error { return nil }
	exec, err := steps.New(sc)
	if err != nil {
		return nil, err
	}
	cc := coordclient.DefaultConfig()
	cc.Coordinators = []string{cfg.Coordinator}
	cc.StateDir = filepath.Join(dir, "state")
	cc.JoinToken = token
	cc.CAHash = caHash
	cc.Labels = map[string]string{"simulated": "true", "rack": fmt.Sprintf("r%d", (i-1)%3+1), "zone": fmt.Sprintf("z%d", (i-1)%2+1)}
	cc.Logger = alog
	cc.Steps = &versionedSteps{exec: exec, runner: versions}
	cc.BackoffMax = 2 * time.Second
	inv := &inventory.Inventory{
		Hostname: name, OSRelease: "deployme simulated host", Kernel: "simulated", CPUs: cfg.CPUs, CPUModel: "simulated",
		MemoryBytes: cfg.MemoryBytes,
		Disks:       []inventory.Disk{{Name: "vda", SizeBytes: 100 << 30}},
		NICs:        []inventory.NIC{{Name: "eth0", MAC: fmt.Sprintf("02:de:00:00:00:%02x", i), Addresses: []string{fmt.Sprintf("10.99.0.%d/24", 10+i)}, Up: true, SpeedMbps: 10000}},
		Versions:    map[string]string{},
		Labels:      cc.Labels,
	}
	cc.Inventory = func(context.Context) (*inventory.Inventory, error) { return inv, nil }
	sv := &simulatedVIP{}
	cc.VIP = sv
	client, err := coordclient.New(cc)
	if err != nil {
		return nil, err
	}
	sv.client = client
	return &agent{name: name, client: client, exec: exec}, nil
}

// simulatedVIP stands for agent/vip on a simulated host: nothing is put on a link (the
// address is not this machine's); the host reports what a real holder would, with an API
// server that is always ready.
type simulatedVIP struct{ client *coordclient.Client }

func (s *simulatedVIP) SetVIP(a *agentv1.VIPAssignment) {
	s.client.ReportVIP(&agentv1.VIPStatus{ClusterId: a.GetClusterId(), Epoch: a.GetEpoch(), Holding: a.GetHolder(), Ready: true})
}

// prepareRoot lays out what the preflight step looks for on a host: kubelet, the container
// runtime's socket, no swap.
func prepareRoot(root string) error {
	files := map[string]string{
		"usr/bin/kubelet":                 "#!/bin/sh\n# simulated kubelet\n",
		"run/containerd/containerd.sock":  "",
		"proc/swaps":                      "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
		"etc/deployme/simulated-host.txt": "this directory is a simulated host of `coordinator --dev`\n",
	}
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if _, err := os.Stat(full); err == nil {
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// versionedSteps tells the simulator which Kubernetes version the host "has": the one its
// cluster asks for, as if the right packages had been installed.
type versionedSteps struct {
	exec   *steps.Executor
	runner *versionRunner
}

func (v *versionedSteps) Handle(ctx context.Context, a *agentv1.StepAssignment, send func(*agentv1.StepUpdate)) {
	if ver := a.GetParams()["kubernetes_version"]; ver != "" {
		v.runner.set(ver)
	}
	v.exec.Handle(ctx, a, send)
}

func (v *versionedSteps) Finished(n int) []*agentv1.StepUpdate { return v.exec.Finished(n) }

// versionRunner answers `kubeadm version` with the version of the host's cluster and passes
// everything else to the simulator.
type versionRunner struct {
	inner kubefake.Runner
	mu    sync.Mutex
	ver   string
}

func (r *versionRunner) set(v string) {
	r.mu.Lock()
	r.ver = v
	r.mu.Unlock()
}

func (r *versionRunner) Run(ctx context.Context, cmd kubeadm.Command, line func(string)) (kubeadm.Result, error) {
	r.mu.Lock()
	ver := r.ver
	r.mu.Unlock()
	if ver != "" && filepath.Base(cmd.Path) == "kubeadm" && len(cmd.Args) > 0 && cmd.Args[0] == "version" {
		if line != nil {
			line(ver)
		}
		return kubeadm.Result{Tail: []string{ver}}, nil
	}
	inner := r.inner
	if ver != "" {
		inner.Options.Version = ver
	}
	return inner.Run(ctx, cmd, line)
}
