// Package poll waits for conditions in tests by polling, never by sleeping a fixed time.
package poll

import (
	"context"
	"time"
)

// Until calls cond every interval until it returns true, an error, or ctx ends.
func Until(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
