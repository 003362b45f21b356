// Package nlretry repeats a netlink dump that the kernel interrupted. When links, addresses
// or routes change while a dump runs (IPv6 duplicate address detection finishing, a bond
// port coming up), the kernel flags the dump as interrupted and vishvananda/netlink returns
// what it got with ErrDumpInterrupted: results that may be incomplete. Asking again gives a
// consistent answer; a few tries are enough, since the changes that interrupt are brief.
package nlretry

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// attempts bounds the retries: a dump interrupted this many times in a row is reported.
const attempts = 5

// Dump calls f until its result is not an interrupted dump.
func Dump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range attempts {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
