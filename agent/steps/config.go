package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/deployme/deployme/agent/kubeadm"
)

// Config configures an Executor. Start from DefaultConfig; zero fields get the defaults too,
// so that a caller filling in only StateDir gets a working executor.
type Config struct {
	// Root is the host's root directory (default "/"). Every host path of docs/steps.md lives
	// under it; anything else makes kubeadm run with --rootfs, which is how development mode
	// and the tests run several "hosts" on one machine.
	Root string
	// StateDir is the agent's state directory. Finished step results are kept in
	// StateDir/steps/<step_id>.json so that a repeated assignment is answered, not re-run.
	StateDir string
	// Kubeadm and Kubectl are the tools' paths (default "kubeadm" and "kubectl", found on
	// PATH by the runner).
	Kubeadm string
	Kubectl string
	// Runner runs every command (default kubeadm.ExecRunner{}).
	Runner kubeadm.Runner
	// Env is added to the environment of every command.
	Env []string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// ReadyPoll is how often the ready step asks for the node's Ready condition (default 2s).
	ReadyPoll time.Duration
	// CheckPort returns an error when a TCP port the node needs is taken. The default listens
	// on :port and closes again.
	CheckPort func(port int) error
	// HTTPClient downloads upgrade binaries from the coordinators (default: a client whose
	// connections time out, bounded per download by the step).
	HTTPClient *http.Client
	// RestartKubelet makes the kubelet run its new binary after an upgrade. The default runs
	// systemctl when the executor manages its own machine (Root "/"), and does nothing in a
	// --root sandbox, which has no kubelet service.
	RestartKubelet func(ctx context.Context) error
}

const (
	defaultRoot      = "/"
	defaultStateDir  = "/var/lib/deployme-agent"
	defaultKubeadm   = "kubeadm"
	defaultKubectl   = "kubectl"
	defaultReadyPoll = 2 * time.Second
)

// DefaultConfig returns the configuration of an agent managing the host it runs on.
func DefaultConfig() Config {
	return Config{
		Root:      defaultRoot,
		StateDir:  defaultStateDir,
		Kubeadm:   defaultKubeadm,
		Kubectl:   defaultKubectl,
		Runner:    kubeadm.ExecRunner{},
		ReadyPoll: defaultReadyPoll,
		CheckPort: listenPort,
	}
}

// Validate reports the first field that cannot work. Zero fields are valid: New fills them in.
func (c Config) Validate() error {
	if c.Root != "" && (!filepath.IsAbs(c.Root) || filepath.Clean(c.Root) != c.Root) {
		return fmt.Errorf("steps: root %q is not a clean absolute path", c.Root)
	}
	if c.StateDir == "" {
		return errors.New("steps: no state directory")
	}
	if c.ReadyPoll < 0 {
		return fmt.Errorf("steps: ready poll interval %s is negative", c.ReadyPoll)
	}
	return nil
}

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Root == "" {
		c.Root = d.Root
	}
	if c.Kubeadm == "" {
		c.Kubeadm = d.Kubeadm
	}
	if c.Kubectl == "" {
		c.Kubectl = d.Kubectl
	}
	if c.Runner == nil {
		c.Runner = d.Runner
	}
	if c.ReadyPoll == 0 {
		c.ReadyPoll = d.ReadyPoll
	}
	if c.CheckPort == nil {
		c.CheckPort = d.CheckPort
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second,
		}}
	}
	if c.RestartKubelet == nil {
		c.RestartKubelet = func(context.Context) error { return nil }
		if c.hostRoot() {
			c.RestartKubelet = systemctlRestartKubelet
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// hostRoot reports whether the executor manages the machine it runs on, the only case in
// which it may touch live kernel state.
func (c Config) hostRoot() bool { return c.Root == "/" }

// listenPort is the default port check: a port we can bind on every address is free for the
// control-plane component that will bind it.
func listenPort(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

// systemctlRestartKubelet reloads units (a package may have changed the kubelet's drop-ins)
// and restarts the kubelet.
func systemctlRestartKubelet(ctx context.Context) error {
	for _, args := range [][]string{{"daemon-reload"}, {"restart", "kubelet"}} {
		if out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
