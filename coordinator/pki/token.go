package pki

import (
	"crypto/rand"
	"fmt"
)

// Bootstrap tokens are "<id>.<secret>": kubeadm and the API server reject anything else.
const (
	tokenIDLen     = 6
	tokenSecretLen = 16
	tokenAlphabet  = "0123456789abcdefghijklmnopqrstuvwxyz"
)

// NewBootstrapToken returns a kubeadm bootstrap token "[a-z0-9]{6}.[a-z0-9]{16}" drawn from
// crypto/rand.
func NewBootstrapToken() (string, error) {
	out := make([]byte, 0, tokenIDLen+1+tokenSecretLen)
	// 252 is the largest multiple of 36 that fits in a byte; rejecting the bytes above it
	// keeps every character equally likely, which the secret's strength relies on.
	const limit = 256 - 256%len(tokenAlphabet)
	buf := make([]byte, 32)
	for len(out) < cap(out) {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("bootstrap token: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			if len(out) == tokenIDLen {
				out = append(out, '.')
			}
			out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			if len(out) == cap(out) {
				break
			}
		}
	}
	return string(out), nil
}

// ValidBootstrapToken reports whether s has the bootstrap token format
// "[a-z0-9]{6}.[a-z0-9]{16}".
func ValidBootstrapToken(s string) bool {
	if len(s) != tokenIDLen+1+tokenSecretLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == tokenIDLen {
			if c != '.' {
				return false
			}
			continue
		}
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
