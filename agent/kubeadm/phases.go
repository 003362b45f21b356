package kubeadm

import "strings"

// maxPhaseLen is longer than any kubeadm phase name ("control-plane-check" is 19) yet short
// enough that a bracketed sentence is never mistaken for one.
const maxPhaseLen = 40

// Phase extracts kubeadm's phase from an output line: "[certs] Using certificateDir folder
// ..." → "certs", ok. kubeadm prefixes every progress line with its phase in brackets at
// the very start of the line, always lowercase words joined by hyphens; preflight findings
// ("\t[WARNING Swap]: ...", "[ERROR ...]"), klog lines ("I1127 ...", "W1127 ...") and free
// text do not match that shape, so they are not phases.
func Phase(line string) (phase string, ok bool) {
	rest, found := strings.CutPrefix(line, "[")
	if !found {
		return "", false
	}
	end := strings.IndexByte(rest, ']')
	if end < 1 || end > maxPhaseLen {
		return "", false
	}
	name, after := rest[:end], rest[end+1:]
	// A phase tag is followed by its message or ends the line; "[x]y" is something else.
	if after != "" && after[0] != ' ' && after[0] != '\t' {
		return "", false
	}
	if !isPhaseName(name) {
		return "", false
	}
	return name, true
}

// isPhaseName accepts lowercase words joined by single hyphens: "preflight",
// "kubelet-start", "control-plane-check".
func isPhaseName(s string) bool {
	if s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && s[i-1] != '-':
		default:
			return false
		}
	}
	return true
}
