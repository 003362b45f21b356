package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// carrierWait is how long init waits for the boot NIC's carrier before it settles for any
// NIC with one (and, when none has, tells the console before waiting on).
const carrierWait = 30 * time.Second

// vendorClass identifies the image to DHCP servers (option 60); the coordinator's PXE
// server gives no boot file to a client that does not say PXEClient.
const vendorClass = "deployme-netboot"

// netUp is the configured network: the link, its lease, and the client that renews it.
type netUp struct {
	nic    nic
	link   netlink.Link
	client *nclient4.Client
	lease  *nclient4.Lease
	addr   addressing
}

// waitForCarrier brings every NIC up (so that carrier can be seen, and so that the agent's
// inventory reads every NIC's speed) and returns them once carrierReady. It waits as long
// as it takes: a machine without a link has nothing better to do.
func waitForCarrier(h *netlink.Handle, bootif net.HardwareAddr) []nic {
	start := time.Now()
	warned := time.Duration(0)
	upped := map[int]bool{}
	for {
		nics, err := listNICs(h)
		if err != nil {
			logf("cannot list links: %v", err)
		}
		for _, n := range nics {
			if upped[n.Index] {
				continue
			}
			if l, err := h.LinkByIndex(n.Index); err == nil {
				if err := h.LinkSetUp(l); err != nil {
					logf("link %s up: %v", n.Name, err)
				}
			}
			upped[n.Index] = true
		}
		waited := time.Since(start)
		if carrierReady(nics, bootif) || (waited >= carrierWait && len(dhcpOrder(nics, nil)) > 0) {
			return nics
		}
		if waited >= warned+carrierWait {
			warned += carrierWait
			var names []string
			for _, n := range nics {
				names = append(names, n.Name)
			}
			logf("no NIC with carrier after %s (NICs: %v); still waiting", warned, names)
			for _, d := range undrivenNICs("/sys") {
				logf("network controller %s has no driver in this image", d)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dhcpUp gets a lease on the first NIC that answers, in dhcpOrder, and configures it. It
// tries until it succeeds.
func dhcpUp(ctx context.Context, h *netlink.Handle, cfg bootConfig) *netUp {
	backoff := time.Second
	for {
		nics := waitForCarrier(h, cfg.BootIF)
		for _, n := range dhcpOrder(nics, cfg.BootIF) {
			up, err := dhcpOn(ctx, h, n, cfg.Debug)
			if err == nil {
				return up
			}
			logf("dhcp on %s: %v", n.Name, err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 30*time.Second)
	}
}

func dhcpModifiers() []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendorClass)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList,
			dhcpv4.OptionInterfaceMTU, dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionIPAddressLeaseTime),
	}
}

func dhcpOn(ctx context.Context, h *netlink.Handle, n nic, debug bool) (*netUp, error) {
	link, err := h.LinkByIndex(n.Index)
	if err != nil {
		return nil, err
	}
	// Four tries per message, 2 s then doubling: 30 s at worst before the next NIC.
	opts := []nclient4.ClientOpt{nclient4.WithTimeout(2 * time.Second), nclient4.WithRetry(4)}
	if debug {
		opts = append(opts, nclient4.WithSummaryLogger())
	}
	c, err := nclient4.New(n.Name, opts...)
	if err != nil {
		return nil, err
	}
	lease, err := c.Request(ctx, dhcpModifiers()...)
	if err != nil {
		c.Close()
		return nil, err
	}
	a, err := fromACK(lease.ACK)
	if err == nil {
		err = apply(h, link, addressing{}, a)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return &netUp{nic: n, link: link, client: c, lease: lease, addr: a}, nil
}

// keepLease renews the lease at T1 for as long as init runs (a netboot host may wait for
// days to be given work). A lease that could not be renewed before it expired is given up
// and a new one requested, on the same NIC, until one comes.
func keepLease(ctx context.Context, h *netlink.Handle, up *netUp) {
	for up.addr.Expire > 0 {
		expireAt := up.lease.CreationTime.Add(up.addr.Expire)
		sleepUntil(ctx, up.lease.CreationTime.Add(up.addr.Renew))
		var next *nclient4.Lease
		for next == nil && ctx.Err() == nil {
			l, err := up.client.Renew(ctx, up.lease, dhcpModifiers()...)
			if err == nil {
				next = l
				break
			}
			left := time.Until(expireAt)
			var nak *nclient4.ErrNak
			if left > 0 && !errors.As(err, &nak) {
				logf("dhcp renew on %s: %v; %s left on the lease", up.nic.Name, err, left.Round(time.Second))
				// RFC 2131 4.4.5: retry at half the remaining time, at least every minute.
				time.Sleep(min(max(left/2, 5*time.Second), time.Minute))
				continue
			}
			logf("dhcp lease on %s lost (%v); requesting a new one", up.nic.Name, err)
			for next == nil && ctx.Err() == nil {
				if l, err := up.client.Request(ctx, dhcpModifiers()...); err == nil {
					next = l
				} else {
					logf("dhcp on %s: %v", up.nic.Name, err)
					time.Sleep(5 * time.Second)
				}
			}
		}
		if next == nil {
			return
		}
		a, err := fromACK(next.ACK)
		if err == nil {
			err = apply(h, up.link, up.addr, a)
		}
		if err != nil {
			logf("dhcp on %s: %v", up.nic.Name, err)
			// Keep the old configuration and try again in a while.
			time.Sleep(30 * time.Second)
			continue
		}
		if a.Addr != up.addr.Addr {
			logf("dhcp %s via %s (was %s)", a.Addr, up.nic.Name, up.addr.Addr)
		} else {
			debugf("dhcp renewed %s on %s for %s", a.Addr, up.nic.Name, a.Expire)
		}
		up.lease, up.addr = next, a
	}
}

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// describe is the console's summary of a configuration.
func describe(a addressing) string {
	s := fmt.Sprintf("lease %s", a.Expire)
	for _, r := range a.Routes {
		if r.Gateway.IsValid() {
			s += fmt.Sprintf(", route %s via %s", r.Dst, r.Gateway)
		} else {
			s += fmt.Sprintf(", route %s on-link", r.Dst)
		}
	}
	if len(a.DNS) > 0 {
		s += fmt.Sprintf(", dns %v", a.DNS)
	}
	return s
}
