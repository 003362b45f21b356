//go:build !linux

package vip

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// addrsV4 fails: addresses are managed with rtnetlink, which only Linux has. The package
// builds elsewhere so that its users do, and every Status then says ReasonAddressError.
func (k kernel) addrsV4() ([]netlink.Addr, error) { return nil, errors.ErrUnsupported }

func gone(error) bool { return false }
