package steps

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
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
