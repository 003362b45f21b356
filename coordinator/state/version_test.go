package state_test

import (
	"strings"
	"testing"

	"github.com/deployme/deployme/coordinator/state"
)

func TestUpgradeAllowed(t *testing.T) {
	tests := []struct {
		from, to string
		wantErr  string // "" when the upgrade is allowed
	}{
		{"v1.37.2", "v1.37.3", ""},
		{"v1.37.2", "v1.37.10", ""},
		{"v1.37.2", "v1.38.0", ""},
		{"v1.37.2", "v1.38.7", ""},
		{"v1.9.9", "v1.10.0", ""}, // numeric, not lexical, comparison
		{"v1.37.2", "v1.39.0", "one minor version at a time"},
		{"v1.37.2", "v1.40.1", "one minor version at a time"},
		{"v1.37.2", "v1.37.2", "already runs"},
		{"v1.37.2", "v1.37.1", "downgrade"},
		{"v1.37.2", "v1.36.9", "downgrade"},
		{"v1.37.2", "v2.0.0", "major"},
		{"v2.0.0", "v1.99.0", "major"},
		{"v1.37.2", "1.38.0", "cannot compare"},
		{"v1.37.2", "v1.38", "cannot compare"},
		{"v1.37.2", "v1.38.0-rc.1", "cannot compare"},
		{"v1.37.2", "v1.38.00", "cannot compare"},
		{"garbage", "v1.38.0", "cannot compare"},
		{"", "", "cannot compare"},
	}
	for _, tc := range tests {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			err := state.UpgradeAllowed(tc.from, tc.to)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("allowed, want an error about %q", tc.wantErr)
			case err != nil && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in                  string
		major, minor, patch int
		ok                  bool
	}{
		{"v1.37.2", 1, 37, 2, true},
		{"v0.0.0", 0, 0, 0, true},
		{"v10.200.3000", 10, 200, 3000, true},
		{"1.37.2", 0, 0, 0, false},
		{"v1.37", 0, 0, 0, false},
		{"v1.37.2.1", 0, 0, 0, false},
		{"v1.37.2-alpha", 0, 0, 0, false},
		{"v1.37.2 ", 0, 0, 0, false},
		{"v01.37.2", 0, 0, 0, false},
		{"v1.-1.2", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			ma, mi, pa, err := state.ParseVersion(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseVersion(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok && (ma != tc.major || mi != tc.minor || pa != tc.patch) {
				t.Errorf("ParseVersion(%q) = %d.%d.%d, want %d.%d.%d", tc.in, ma, mi, pa, tc.major, tc.minor, tc.patch)
			}
		})
	}
}
