// Package kubefake is a strict stand-in for kubeadm and kubectl, used by tests and by
// development mode. It accepts only the flags and configuration the real tools accept (and
// only the part of them deployme uses), refuses bad input with the real tools' messages,
// prints kubeadm's phase lines, and writes what the real tools would write, but only under
// the `--rootfs` it is given. A state directory plays the API servers: clusters by
// control-plane endpoint with their CA, bootstrap tokens, nodes, stacked etcd members and
// applied manifests, so that several fake hosts (processes or goroutines) can form a
// cluster together. etcdctl is simulated only inside the etcd Pods, through kubectl exec.
//
// # Installed binaries
//
// kubeadm upgrade needs to know which kubeadm and kubelet a host has installed, which a
// single fake binary cannot be. Tests (and development mode) therefore install small text
// artifacts in the host root in place of the real binaries, and the fake reads them. The
// one at <root>/usr/bin/kubeadm reads
//
//	fake-kube-binary
//	name=kubeadm
//	version=v1.38.0
//
// and <root>/usr/bin/kubelet likewise, with name=kubelet.
//
// kubeadm upgrade apply and upgrade node refuse to run unless <root>/usr/bin/kubeadm is
// such an artifact of the version they upgrade to. A node's kubelet reports the version of
// <root>/usr/bin/kubelet when that is such an artifact (the agent restarts the kubelet
// after replacing it, which the fake cannot see), and otherwise the version it joined with
// or last recorded by an upgrade.
package kubefake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/deployme/deployme/agent/kubeadm"
)

// DefaultVersion is the Kubernetes version the fake claims to be.
const DefaultVersion = "v1.37.2"

// Exit codes: the real tools exit 1 on any error; an interrupted fake reports what a shell
// reports for SIGINT.
const (
	exitOK          = 0
	exitError       = 1
	exitInterrupted = 130
)

// Options configures a fake tool.
type Options struct {
	// StateDir holds the shared "API server" state of the fake clusters (tokens, nodes,
	// CNI, CA hash), keyed by control-plane endpoint, and the invocation log. Required.
	StateDir string
	// Version is what `kubeadm version -o short` prints and the Kubernetes version init
	// accepts; default DefaultVersion.
	Version string
	// Delay says how long a phase takes; nil means instant. Phases are named
	// "<subcommand>/<phase>" for kubeadm ("init/preflight", "join/kubelet-start",
	// "reset/cleanup-node", "token/create", "upgrade/apply", "upgrade/node"),
	// "kubectl/apply", "kubectl/drain" (between cordon and drained), "kubectl/delete",
	// "kubectl/exec", and "node-ready": how long a node takes to turn Ready once it is
	// registered and the CNI is applied.
	Delay func(phase string) time.Duration
	// Stdout receives the tool's standard output (nil: discarded).
	Stdout io.Writer
	// Stderr receives warnings and errors; nil sends them to Stdout.
	Stderr io.Writer
	// AllowHostRoot lets kubeadm init, join and reset without --rootfs write to the real
	// "/". Without it they refuse, so a test can never touch the machine it runs on.
	AllowHostRoot bool
}

// Kubeadm runs the fake kubeadm with args (without the program name) and returns its exit
// code.
func Kubeadm(ctx context.Context, args []string, o Options) int {
	return newRun(ctx, o, "").kubeadm(args)
}

// Kubectl runs the fake kubectl with args (without the program name) and returns its exit
// code.
func Kubectl(ctx context.Context, args []string, o Options) int {
	return newRun(ctx, o, "").kubectl(args)
}

// Runner implements kubeadm.Runner in-process: it dispatches on filepath.Base(cmd.Path)
// ("kubeadm" or "kubectl") and streams lines. cmd.Env is ignored; cmd.Dir is the working
// directory for relative paths. Output also goes to Options.Stdout when that is set.
type Runner struct{ Options }

var _ kubeadm.Runner = Runner{}

// Run runs cmd against the fake. Like kubeadm.ExecRunner, err is non-nil only when the
// command could not run at all or ctx ended.
func (r Runner) Run(ctx context.Context, cmd kubeadm.Command, line func(string)) (kubeadm.Result, error) {
	if err := ctx.Err(); err != nil {
		return kubeadm.Result{ExitCode: -1}, err
	}
	tool := filepath.Base(cmd.Path)
	if tool != "kubeadm" && tool != "kubectl" {
		return kubeadm.Result{ExitCode: -1}, fmt.Errorf("kubefake: cannot run %q: %w", cmd.Path, exec.ErrNotFound)
	}
	lw := kubeadm.NewLineWriter(line)
	o := r.Options
	var w io.Writer = lw
	if o.Stdout != nil {
		w = io.MultiWriter(lw, o.Stdout)
	}
	o.Stdout, o.Stderr = w, w
	ru := newRun(ctx, o, cmd.Dir)
	var code int
	if tool == "kubeadm" {
		code = ru.kubeadm(cmd.Args)
	} else {
		code = ru.kubectl(cmd.Args)
	}
	lw.Flush()
	res := kubeadm.Result{ExitCode: code, Tail: lw.Tail()}
	if code == exitInterrupted && ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

// run is one invocation of a fake tool.
type run struct {
	ctx     context.Context
	o       Options
	dir     string // working directory for relative paths; "" means the process's
	out     io.Writer
	errOut  io.Writer
	store   store
	version string
	// dryRun is kubeadm's --dry-run: everything is checked, nothing is changed.
	dryRun bool
}

func newRun(ctx context.Context, o Options, dir string) *run {
	r := &run{ctx: ctx, o: o, dir: dir, out: o.Stdout, errOut: o.Stderr, store: store{dir: o.StateDir}, version: o.Version}
	if r.out == nil {
		r.out = io.Discard
	}
	if r.errOut == nil {
		r.errOut = r.out
	}
	if r.version == "" {
		r.version = DefaultVersion
	}
	return r
}

func (r *run) printf(format string, args ...any) { fmt.Fprintf(r.out, format, args...) }
func (r *run) println(s string)                  { fmt.Fprintln(r.out, s) }

// klogWarning prints a warning with klog's header, as kubeadm's warnings look.
func (r *run) klogWarning(source, msg string) {
	fmt.Fprintf(r.errOut, "W%s %7d %s] %s\n", time.Now().Format("0102 15:04:05.000000"), os.Getpid(), source, msg)
}

// abs resolves a path given on the command line against the working directory.
func (r *run) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	if r.dir != "" {
		return filepath.Join(r.dir, p)
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// phase waits for a phase's simulated duration, or until ctx ends.
func (r *run) phase(name string) error {
	if err := r.ctx.Err(); err != nil {
		return errInterrupted
	}
	if r.o.Delay == nil {
		return nil
	}
	d := r.o.Delay(name)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return errInterrupted
	}
}

// errInterrupted ends a run whose context ended; no message is printed, like a killed
// process prints none.
var errInterrupted = errors.New("interrupted")

// phaseError is kubeadm's workflow error: "error execution phase <phase>: <cause>".
func phaseError(phase string, err error) error {
	if errors.Is(err, errInterrupted) {
		return err
	}
	return fmt.Errorf("error execution phase %s: %w", phase, err)
}

// kubectlError is printed verbatim, without kubectl's "error: " prefix, as kubectl prints
// API errors ("Error from server (NotFound): ...") and connection failures.
type kubectlError struct{ msg string }

func (e *kubectlError) Error() string { return e.msg }

// usageError is a kubectl command-line error, followed by kubectl's usage hint.
type usageError struct {
	err  error
	path string
}

func (e *usageError) Error() string { return e.err.Error() }

// finishKubeadm prints an error the way kubeadm's main does and returns the exit code.
func (r *run) finishKubeadm(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	}
	fmt.Fprintf(r.errOut, "error: %v\nTo see the stack trace of this error execute with --v=5 or higher\n", err)
	return exitError
}

// remoteExit is a command run by kubectl exec that exited non-zero; it has printed its
// own messages, and kubectl exits with its code.
type remoteExit struct{ code int }

func (e *remoteExit) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.code)
}

// finishKubectl prints an error the way kubectl does and returns the exit code.
func (r *run) finishKubectl(err error) int {
	var ke *kubectlError
	var ue *usageError
	var re *remoteExit
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	case errors.As(err, &re):
		fmt.Fprintln(r.errOut, re.Error())
		return re.code
	case errors.As(err, &ke):
		fmt.Fprintln(r.errOut, ke.msg)
	case errors.As(err, &ue):
		fmt.Fprintf(r.errOut, "error: %v\nSee '%s --help' for usage.\n", ue.err, ue.path)
	default:
		fmt.Fprintf(r.errOut, "error: %v\n", err)
	}
	return exitError
}

// logInvocation records the call before anything else, so even refused calls show up.
// The root is found leniently here; parsing proper happens later.
func (r *run) logInvocation(tool string, args []string) error {
	root := "/"
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--rootfs="); ok {
			root = v
		} else if a == "--rootfs" && i+1 < len(args) {
			root = args[i+1]
		}
	}
	if root != "/" {
		root = r.abs(root)
	}
	return r.store.appendInvocation(Invocation{Root: root, Tool: tool, Args: args})
}
