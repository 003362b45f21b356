// Package coordclient is the agent's side of proto/agent/v1: it registers the host once with
// a join token, keeps the resulting identity in a state directory, and then holds one
// Connect stream over mutual TLS to some coordinator replica: Hello, heartbeats, inventory
// updates, certificate renewal. Any stream error leads to a reconnect with jittered
// exponential backoff across every known coordinator; a Redirect is followed at once.
package coordclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/deployme/deployme/agent/inventory"
	"github.com/deployme/deployme/internal/buildinfo"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Errors Run returns for conditions that retrying cannot fix.
var (
	// ErrNoJoinToken: the state directory holds no identity and no join token was given.
	ErrNoJoinToken = errors.New("no identity in the state directory and no join token to register with")
	// ErrCAMismatch: the coordinator's CA does not hash to Config.CAHash.
	ErrCAMismatch = errors.New("coordinator CA does not match the pinned --ca-hash")
	// ErrRegistrationRefused: the coordinator refused the registration for good (bad or
	// expired token, invalid request).
	ErrRegistrationRefused = errors.New("registration refused")
	// ErrDecommissioned: the coordinators refuse this host's identity (it was
	// decommissioned); only a new registration with a join token can bring it back.
	ErrDecommissioned = errors.New("this host was decommissioned")
)

// StepHandler runs step assignments. Handle must not block; send may be called from any
// goroutine, long after the stream that carried the assignment is gone.
type StepHandler interface {
	Handle(ctx context.Context, a *agentv1.StepAssignment, send func(*agentv1.StepUpdate))
	// Finished lists the latest stored final results, for Hello after a reconnect.
	Finished(n int) []*agentv1.StepUpdate
}

// VIPHandler receives the control-plane VIP assignments coordinators send (agent/vip).
// SetVIP must not block.
type VIPHandler interface {
	SetVIP(a *agentv1.VIPAssignment)
}

// NetworkHandler applies the host network config coordinators send (agent/netconf). Apply
// must not block; send may be called later from any goroutine.
type NetworkHandler interface {
	ApplyNetwork(ctx context.Context, c *agentv1.NetworkConfig, send func(*agentv1.NetworkResult))
}

// Config configures a Client. Start from DefaultConfig.
type Config struct {
	// Coordinators are gRPC addresses (host:port) of coordinator replicas. Those learnt from
	// the coordinators themselves (stored in identity.json) are tried too.
	Coordinators []string
	// JoinToken is needed only when the state directory holds no identity yet.
	JoinToken string
	// CAHash pins the agent CA on first contact: "sha256:<hex of the DER>". Empty means
	// trust on first use (with a warning).
	CAHash string
	// StateDir holds identity.json, agent.key, agent.crt and ca.crt.
	StateDir string
	// Labels are set on every inventory sent, over those Inventory reports.
	Labels map[string]string
	// Inventory describes the host; called at registration, at every stream start and
	// every InventoryInterval.
	Inventory func(ctx context.Context) (*inventory.Inventory, error)
	// Steps runs the steps coordinators assign (agent/steps); nil refuses none and runs none
	// (the assignments are logged and dropped).
	Steps StepHandler
	// VIP receives VIP assignments; nil drops them.
	VIP VIPHandler
	// Network applies the host network template; nil drops it.
	Network NetworkHandler
	// Heard, when set, is called for every message a coordinator sends (heartbeat acks
	// included): the VIP holder fences itself when it stops hearing them.
	Heard func()
	// AgentVersion is reported in Hello and in the inventory.
	AgentVersion string
	// Logger defaults to discarding.
	Logger *slog.Logger

	// BackoffMin and BackoffMax bound the reconnect delay: full jitter over an exponential
	// ceiling that starts at BackoffMin and doubles up to BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// InventoryInterval is how often the inventory is collected and re-sent if it changed.
	InventoryInterval time.Duration
	// HeartbeatInterval is used until (and unless) the coordinator says otherwise.
	HeartbeatInterval time.Duration
	// WelcomeTimeout bounds the wait for Welcome after Hello.
	WelcomeTimeout time.Duration
	// RenewRetry is the delay before retrying a failed certificate renewal.
	RenewRetry time.Duration
	// DialTimeout bounds one Register or Renew call, connection set-up included. (A Connect
	// stream is bounded by WelcomeTimeout until the coordinator answers.)
	DialTimeout time.Duration
}

// DefaultConfig returns a Config with every duration set; the caller fills in addresses,
// state directory and inventory.
func DefaultConfig() Config {
	return Config{
		StateDir:          "/var/lib/deployme-agent",
		AgentVersion:      buildinfo.String(),
		BackoffMin:        200 * time.Millisecond,
		BackoffMax:        15 * time.Second,
		InventoryInterval: 30 * time.Second,
		HeartbeatInterval: 10 * time.Second,
		WelcomeTimeout:    30 * time.Second,
		RenewRetry:        time.Minute,
		DialTimeout:       10 * time.Second,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if len(c.Coordinators) == 0 {
		return errors.New("no coordinator address")
	}
	for _, a := range c.Coordinators {
		if strings.TrimSpace(a) == "" {
			return errors.New("empty coordinator address")
		}
	}
	if c.StateDir == "" {
		return errors.New("state directory is empty")
	}
	if c.CAHash != "" {
		if _, err := parseCAHash(c.CAHash); err != nil {
			return err
		}
	}
	if c.Inventory == nil {
		return errors.New("no inventory function")
	}
	for name, d := range map[string]time.Duration{
		"BackoffMin": c.BackoffMin, "BackoffMax": c.BackoffMax, "InventoryInterval": c.InventoryInterval,
		"HeartbeatInterval": c.HeartbeatInterval, "WelcomeTimeout": c.WelcomeTimeout,
		"RenewRetry": c.RenewRetry, "DialTimeout": c.DialTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive", name)
		}
	}
	if c.BackoffMax < c.BackoffMin {
		return errors.New("BackoffMax is below BackoffMin")
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
