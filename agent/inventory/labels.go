package inventory

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidLabel is wrapped by every error ParseLabels returns.
var ErrInvalidLabel = errors.New("invalid label")

// maxLabelName is Kubernetes' limit for label names and values, kept so that host labels
// can later be copied onto Node objects unchanged.
const (
	maxLabelName   = 63
	maxLabelPrefix = 253
)

// MaxLabels and maxLabelKey are the coordinator's limits on what an agent reports; the agent
// refuses more at start rather than have its registration refused.
const (
	MaxLabels   = 64
	maxLabelKey = 256
)

// ParseLabels parses the agent's --labels value, "k=v,k2=v2", into a map. Keys follow
// Kubernetes label keys: an optional DNS-subdomain prefix and '/', then a name of up to 63
// letters, digits, '-', '_' or '.', starting and ending alphanumeric. Values follow the
// same rule for names and may be empty. Spaces around each pair are ignored, so the value
// survives being written over several lines in an environment file. An empty string
// gives an empty map.
func ParseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return labels, nil
	}
	pairs := strings.Split(s, ",")
	if len(pairs) > MaxLabels {
		return nil, fmt.Errorf("%w: %d labels, at most %d", ErrInvalidLabel, len(pairs), MaxLabels)
	}
	for i, pair := range pairs {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			return nil, fmt.Errorf("%w: label %d is empty (stray comma?)", ErrInvalidLabel, i+1)
		}
		key, value, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("%w %q: want key=value", ErrInvalidLabel, pair)
		}
		if len(key) > maxLabelKey {
			return nil, fmt.Errorf("%w %q: key longer than %d bytes", ErrInvalidLabel, pair, maxLabelKey)
		}
		if err := validateLabelKey(key); err != nil {
			return nil, fmt.Errorf("%w %q: key %v", ErrInvalidLabel, pair, err)
		}
		if value != "" {
			if err := validateLabelName(value); err != nil {
				return nil, fmt.Errorf("%w %q: value %v", ErrInvalidLabel, pair, err)
			}
		}
		if _, dup := labels[key]; dup {
			return nil, fmt.Errorf("%w %q: key %q given twice", ErrInvalidLabel, pair, key)
		}
		labels[key] = value
	}
	return labels, nil
}

func validateLabelKey(key string) error {
	if key == "" {
		return errors.New("is empty")
	}
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		return validateLabelName(key)
	}
	if err := validateDNSSubdomain(prefix); err != nil {
		return fmt.Errorf("prefix %q %v", prefix, err)
	}
	if err := validateLabelName(name); err != nil {
		return fmt.Errorf("name %q %v", name, err)
	}
	return nil
}

// validateLabelName checks [a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])? of at most 63 bytes.
func validateLabelName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > maxLabelName:
		return fmt.Errorf("is longer than %d characters", maxLabelName)
	case !isAlnum(s[0]) || !isAlnum(s[len(s)-1]):
		return errors.New("must start and end with a letter or digit")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("has %q; only letters, digits, '-', '_' and '.' are allowed", c)
		}
	}
	return nil
}

// validateDNSSubdomain checks a lowercase RFC 1123 subdomain, as Kubernetes requires of
// label key prefixes.
func validateDNSSubdomain(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > maxLabelPrefix {
		return fmt.Errorf("is longer than %d characters", maxLabelPrefix)
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || part[0] == '-' || part[len(part)-1] == '-' {
			return errors.New("must be a lowercase DNS name (like example.com)")
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return errors.New("must be a lowercase DNS name (like example.com)")
			}
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
