package vip

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink"
)

// addrsV4 lists every IPv4 address of the namespace. A dump interrupted by a concurrent
// change is retried: its result may miss the very address we look for.
func (k kernel) addrsV4() ([]netlink.Addr, error) {
	var err error
	for range 3 {
		var addrs []netlink.Addr
		addrs, err = k.h.AddrList(nil, netlink.FAMILY_V4)
		if err == nil {
			return addrs, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list addresses: %w", err)
}

// gone tells whether a deletion failed only because the address (or its whole link) no
// longer exists.
func gone(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENODEV)
}
