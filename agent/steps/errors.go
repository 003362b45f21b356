package steps

import (
	"errors"
	"fmt"
	"strings"
)

// Reasons of failed StepUpdates (docs/steps.md). The coordinator decides on them (retry, give
// up, tell the user), so they are part of the contract; the message is for people.
const (
	reasonInvalidParams = "invalid_params"
	reasonIO            = "io"
	reasonTimeout       = "timeout"
	// reasonArtifact: a binary could not be had from any coordinator with its hash.
	reasonArtifact           = "artifact"
	reasonSwap               = "preflight.swap"
	reasonKubeadmMissing     = "preflight.kubeadm_missing"
	reasonKubeadmVersion     = "preflight.kubeadm_version"
	reasonKubeletMissing     = "preflight.kubelet_missing"
	reasonContainerRuntime   = "preflight.container_runtime"
	reasonPortPrefix         = "preflight.port_"
	toolKubeadm, toolKubectl = "kubeadm", "kubectl"
)

// stepError is a failure with its machine-readable reason.
type stepError struct {
	reason string
	msg    string
	err    error
}

func (e *stepError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

func (e *stepError) Unwrap() error { return e.err }

func failf(reason, format string, args ...any) error {
	return &stepError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

func wrapf(reason string, err error, format string, args ...any) error {
	return &stepError{reason: reason, msg: fmt.Sprintf(format, args...), err: err}
}

func invalidf(format string, args ...any) error {
	return failf(reasonInvalidParams, format, args...)
}

// exitError is a tool's non-zero exit: reason "<tool>.exit_<code>".
func exitError(tool string, code int, tail []string) error {
	return failf(fmt.Sprintf("%s.exit_%d", tool, code), "%s exited with status %d: %s", tool, code, errorLine(tail))
}

// reasonOf maps any error a step returns to its reason. Errors without one come from the
// host's file system or from starting a tool.
func reasonOf(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.reason
	}
	return reasonIO
}

// errorLine picks the line that says what went wrong: the last one starting with "error"
// (kubeadm's "error: ...", kubectl's "Error from server ..."), since kubeadm follows it with
// a hint about --v=5; else the last line.
func errorLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(lines[i]); strings.HasPrefix(strings.ToLower(s), "error") {
			return s
		}
	}
	return lastLine(lines)
}

// lastLine is the last non-blank line: where kubeadm version and kubectl -o jsonpath print
// their answer.
func lastLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(lines[i]); s != "" {
			return s
		}
	}
	return ""
}
