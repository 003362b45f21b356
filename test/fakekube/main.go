// Command fakekube is the strict fake kubeadm and kubectl of package
// agent/kubeadm/kubefake as a program, for tests that run the agent against real
// processes. One binary plays both tools: copy or symlink it as "kubeadm" and "kubectl";
// the name it is run under picks the tool.
//
// Environment:
//
//	FAKEKUBE_STATE            state directory shared by every fake host (required)
//	FAKEKUBE_VERSION          what `kubeadm version -o short` prints (default v1.37.2)
//	FAKEKUBE_TIME_SCALE       scale of realistic phase durations, e.g. 0.1 (default: instant)
//	FAKEKUBE_ALLOW_HOST_ROOT  "1" lets init, join and reset without --rootfs write to /
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/deployme/deployme/agent/kubeadm/kubefake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, filepath.Base(os.Args[0]), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run returns the exit code: the tool's own, or 2 when the fake itself is misconfigured.
func run(ctx context.Context, tool string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o := kubefake.Options{
		StateDir:      getenv("FAKEKUBE_STATE"),
		Version:       getenv("FAKEKUBE_VERSION"),
		Stdout:        stdout,
		Stderr:        stderr,
		AllowHostRoot: getenv("FAKEKUBE_ALLOW_HOST_ROOT") == "1",
	}
	if o.StateDir == "" {
		fmt.Fprintln(stderr, "fakekube: FAKEKUBE_STATE is not set: it names the state directory the fake clusters share")
		return 2
	}
	if s := getenv("FAKEKUBE_TIME_SCALE"); s != "" {
		scale, err := strconv.ParseFloat(s, 64)
		if err != nil || scale < 0 {
			fmt.Fprintf(stderr, "fakekube: FAKEKUBE_TIME_SCALE=%q is not a non-negative number\n", s)
			return 2
		}
		o.Delay = kubefake.RealisticDelays(scale)
	}
	switch tool {
	case "kubeadm":
		return kubefake.Kubeadm(ctx, args, o)
	case "kubectl":
		return kubefake.Kubectl(ctx, args, o)
	}
	fmt.Fprintf(stderr, "fakekube: run me as \"kubeadm\" or \"kubectl\" (a copy or symlink of that name), not %q\n", tool)
	return 2
}
