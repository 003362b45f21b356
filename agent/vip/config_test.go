package vip

import (
	"context"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr bool
	}{
		{"default", func(*Config) {}, false},
		{"no readiness check", func(c *Config) { c.Readyz = nil }, true},
		{"zero check interval", func(c *Config) { c.CheckInterval = 0 }, true},
		{"negative check interval", func(c *Config) { c.CheckInterval = -time.Second }, true},
		{"fail after 0", func(c *Config) { c.FailAfter = 0 }, true},
		{"fail after 1", func(c *Config) { c.FailAfter = 1 }, false},
		{"no gratuitous ARP", func(c *Config) { c.GARPCount, c.GARPInterval = 0, 0 }, false},
		{"negative gratuitous ARP count", func(c *Config) { c.GARPCount = -1 }, true},
		{"one gratuitous ARP needs no interval", func(c *Config) { c.GARPCount, c.GARPInterval = 1, 0 }, false},
		{"several gratuitous ARPs need an interval", func(c *Config) { c.GARPInterval = 0 }, true},
		{"handle, do, report and logger are optional", func(c *Config) {
			c.Handle, c.Do, c.Report, c.Logger = nil, nil, nil, nil
		}, false},
		{"custom readiness check", func(c *Config) { c.Readyz = func(context.Context) error { return nil } }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, want error: %v", err, tc.wantErr)
			}
			if _, nerr := New(c); (nerr != nil) != tc.wantErr {
				t.Errorf("New() = %v, want error: %v", nerr, tc.wantErr)
			}
		})
	}
}
