package vip

import (
	"context"
	"sync"
	"time"
)

// Setter takes VIP assignments (a *Manager).
type Setter interface {
	Set(Assignment)
}

// Fence drops every VIP this host holds once no coordinator has been heard from for After,
// and takes them back at the next contact. The coordinators declare a silent host offline
// after their liveness TTL (20 s by default) and then give its VIP to another control
// plane: a holder cut off from them must have let go by then, or two hosts would answer
// for the address. After must therefore stay well below the coordinators' TTL.
type Fence struct {
	next  Setter
	after time.Duration
	now   func() time.Time

	mu     sync.Mutex
	last   map[string]Assignment // the latest assignment per cluster, as the coordinator sent it
	heard  time.Time
	fenced bool
}

// NewFence returns a Fence in front of next; the host counts as just heard from.
func NewFence(next Setter, after time.Duration) *Fence {
	return &Fence{next: next, after: after, now: time.Now, last: map[string]Assignment{}, heard: time.Now()}
}

// Set records a coordinator's assignment and passes it on (as not-holder while fenced).
func (f *Fence) Set(a Assignment) {
	f.mu.Lock()
	f.last[a.ClusterID] = a
	if f.fenced {
		a.Holder = false
	}
	f.mu.Unlock()
	f.next.Set(a)
}

// Heard records contact with a coordinator; a fenced host takes its assignments back.
func (f *Fence) Heard() {
	f.mu.Lock()
	f.heard = f.now()
	if !f.fenced {
		f.mu.Unlock()
		return
	}
	f.fenced = false
	var again []Assignment
	for _, a := range f.last {
		again = append(again, a)
	}
	f.mu.Unlock()
	for _, a := range again {
		f.next.Set(a)
	}
}

// Check fences the host if the coordinators have been silent for longer than After; it
// reports whether the host is fenced.
func (f *Fence) Check() bool {
	f.mu.Lock()
	if f.fenced || f.now().Sub(f.heard) <= f.after {
		fenced := f.fenced
		f.mu.Unlock()
		return fenced
	}
	f.fenced = true
	var drop []Assignment
	for _, a := range f.last {
		if a.Holder {
			a.Holder = false
			drop = append(drop, a)
		}
	}
	f.mu.Unlock()
	for _, a := range drop {
		f.next.Set(a)
	}
	return true
}

// Run checks every second until ctx ends.
func (f *Fence) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.Check()
		}
	}
}
