// Package vip is the agent's side of a cluster's control-plane virtual IP: the coordinator
// names one holder per fencing epoch, and the Manager makes the kernel match (the address on
// the right link, gratuitous ARPs when it arrives, gone when it must go) while it watches the
// local API server, so that a holder whose API server stops answering gives the address up
// by itself and the coordinator learns which hosts are healthy candidates.
//
// # Which addresses are ours
//
// The VIP is added with the prefix length of its subnet, on the link that already has an
// address in that subnet, so the kernel answers ARP for it there. It carries the address
// label "<link>:dmvip" (the link name cut so that the label fits the kernel's 15 bytes).
// The label is the only mark of ownership that survives an agent restart (a crashed agent
// leaves the address behind, and its successor must still be able to remove it) and the
// kernel checks it on deletion: a removal names the label, so it can only ever delete an
// address we added. An address equal to the VIP without the label (set by hand, or a host's
// own address) is never removed; its Status says ReasonForeignAddress.
//
// The address is also added with IFA_F_NOPREFIXROUTE and without a broadcast address: the
// existing address of the subnet already brings the prefix and broadcast routes, and the VIP
// must not bring routes of its own that would outlive, or change the source address of,
// the host's ordinary traffic.
package vip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/vishvananda/netlink"
)

// ErrNotReady is what the default readiness check returns when the API server answered
// with another status than 200.
var ErrNotReady = errors.New("api server not ready")

// Config configures a Manager. Start from DefaultConfig.
type Config struct {
	// Handle is the netlink handle every address change goes through; nil means the
	// namespace the agent runs in.
	Handle *netlink.Handle
	// Do runs fn where the raw ARP socket must be opened (the namespace of Handle); nil
	// runs fn directly. A socket keeps the namespace it was opened in.
	Do func(fn func() error) error
	// Readyz tells whether the local API server is up. It must return once ctx ends: every
	// call gets a deadline of max(1s, CheckInterval).
	Readyz func(ctx context.Context) error
	// CheckInterval is the pause between the end of one readiness check and the start of
	// the next; it is also how often the kernel state is compared with the assignment.
	CheckInterval time.Duration
	// FailAfter is how many consecutive failed checks make the holder give the VIP up.
	FailAfter int
	// GARPCount gratuitous ARPs, GARPInterval apart, are sent when the VIP arrives on a
	// link, so that neighbours drop the MAC of the previous holder at once. 0 sends none.
	GARPCount    int
	GARPInterval time.Duration
	// Report receives the Status of a cluster whenever it changes. It is called from Run's
	// goroutine, never concurrently, and must not block for long: assignments wait for it.
	// Nil drops statuses.
	Report func(Status)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// DefaultReadyzURL is where the default check asks the local API server for readiness.
const DefaultReadyzURL = "https://127.0.0.1:6443/readyz"

// DefaultConfig returns a Config for a control-plane host: readiness from the local API
// server, 250 ms checks, release after 3 failures, 3 gratuitous ARPs 100 ms apart.
func DefaultConfig() Config {
	return Config{
		Readyz:        HTTPReadyz(DefaultReadyzURL, time.Second),
		CheckInterval: 250 * time.Millisecond,
		FailAfter:     3,
		GARPCount:     3,
		GARPInterval:  100 * time.Millisecond,
	}
}

// Validate reports the first field that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Readyz == nil:
		return errors.New("vip: no readiness check")
	case c.CheckInterval <= 0:
		return fmt.Errorf("vip: check interval %s is not positive", c.CheckInterval)
	case c.FailAfter < 1:
		return fmt.Errorf("vip: fail-after %d is less than 1", c.FailAfter)
	case c.GARPCount < 0:
		return fmt.Errorf("vip: gratuitous ARP count %d is negative", c.GARPCount)
	case c.GARPCount > 1 && c.GARPInterval <= 0:
		return fmt.Errorf("vip: gratuitous ARP interval %s is not positive", c.GARPInterval)
	}
	return nil
}

// checkTimeout bounds one readiness check. A second is what a healthy API server needs by
// far; a shorter CheckInterval must not turn a merely slow answer into a failure.
func (c Config) checkTimeout() time.Duration {
	return max(time.Second, c.CheckInterval)
}

// HTTPReadyz returns a check that GETs url and wants a 200 within timeout.
//
// The server certificate is not verified: the check only asks "does my own API server
// answer", over loopback, and trusts nothing it reads. Verifying would need the cluster CA,
// which does not exist yet while kubeadm init runs, exactly when the answer matters.
func HTTPReadyz(url string, timeout time.Duration) func(ctx context.Context) error {
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			// A proxy from the environment must never see a loopback health check.
			Proxy:               nil,
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
			MaxIdleConnsPerHost: 1,
		},
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		// Drained so the connection can be reused by the next check.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%w: %s", ErrNotReady, resp.Status)
		}
		return nil
	}
}
