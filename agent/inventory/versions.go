package inventory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"time"
	"unicode"
)

// versionTimeout bounds one probe: kubelet and containerd start quickly, and a tool that
// hangs must not hold up registration.
const versionTimeout = 5 * time.Second

// versionArgs are the arguments that make each tool print its version and nothing else.
var versionArgs = map[string][]string{
	"kubeadm":    {"version", "-o", "short"},
	"kubelet":    {"--version"},
	"containerd": {"--version"},
}

// ExecVersion runs the named tool, found on $PATH, to print its version. It returns an
// error wrapping exec.ErrNotFound when the tool is not installed.
func ExecVersion(ctx context.Context, name string) (string, error) {
	args, ok := versionArgs[name]
	if !ok {
		return "", fmt.Errorf("inventory: no version probe for %q", name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("inventory: %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	// A tool that forks a child holding stdout open would otherwise keep Output
	// waiting past the timeout.
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("inventory: %s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

func isNotInstalled(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}

// parseVersion picks the version out of a tool's output: the first word that looks like
// one ("v1.31.2", "1.7.22"), skipping the tool name and module paths that surround it in
// `kubelet --version` and `containerd --version`. Output with no such word is kept whole,
// trimmed, so an unexpected format still shows something.
func parseVersion(out string) string {
	for _, word := range strings.Fields(out) {
		w := strings.TrimPrefix(word, "v")
		if w != "" && unicode.IsDigit(rune(w[0])) && strings.Contains(w, ".") {
			return word
		}
	}
	return strings.TrimSpace(out)
}
