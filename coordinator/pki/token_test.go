package pki_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/deployme/deployme/coordinator/pki"
)

func TestNewBootstrapToken(t *testing.T) {
	format := regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	const n = 1000
	seen := make(map[string]bool, n)
	var chars strings.Builder
	for range n {
		tok, err := pki.NewBootstrapToken()
		if err != nil {
			t.Fatal(err)
		}
		if !format.MatchString(tok) {
			t.Fatalf("token %q does not match %s", tok, format)
		}
		if !pki.ValidBootstrapToken(tok) {
			t.Fatalf("ValidBootstrapToken(%q) = false for a generated token", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q generated twice", tok)
		}
		seen[tok] = true
		chars.WriteString(strings.Replace(tok, ".", "", 1))
	}
	// 22,000 draws miss one of 36 characters with probability around 1e-340; a miss means
	// the alphabet or the sampling is broken.
	all := chars.String()
	for _, c := range "0123456789abcdefghijklmnopqrstuvwxyz" {
		if !strings.ContainsRune(all, c) {
			t.Errorf("character %q never generated", c)
		}
	}
}

func TestValidBootstrapToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"abcdef.0123456789abcdef", true},
		{"a1b2c3.z9y8x7w6v5u4t3s2", true},
		{"", false},
		{"abcdef0123456789abcdef", false},
		{"abcdef.0123456789abcde", false},
		{"abcdef.0123456789abcdef0", false},
		{"ABCDEF.0123456789abcdef", false},
		{"abcdef.0123456789ABCDEF", false},
		{"abcde.f0123456789abcdef", false},
		{"abcdef-0123456789abcdef", false},
		{"abcdef.0123456789abcd.f", false},
		{"abc_ef.0123456789abcdef", false},
		{" bcdef.0123456789abcdef", false},
		{"abcdef.0123456789abcdé", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := pki.ValidBootstrapToken(tt.in); got != tt.want {
				t.Errorf("ValidBootstrapToken(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
