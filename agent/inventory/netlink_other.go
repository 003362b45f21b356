//go:build !linux

package inventory

import (
	"context"
	"errors"
	"fmt"
)

// Netlink exists only on Linux; elsewhere it fails so that a mis-built agent says why
// instead of reporting a host without NICs.
type Netlink struct{}

// Links implements LinkLister.
func (Netlink) Links(context.Context) ([]Link, error) {
	return nil, fmt.Errorf("netlink: %w on this platform", errors.ErrUnsupported)
}
