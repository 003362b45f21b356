package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/deployme/deployme/api/client"
	"github.com/deployme/deployme/internal/buildinfo"
)

// Exit codes, documented in the root command's help.
const (
	exitOK    = 0
	exitError = 1 // the API refused the request, or something failed at run time
	exitUsage = 2 // the command line itself is wrong
)

const rootLong = `deployme creates, watches, scales and deletes Kubernetes clusters on a deployme
coordinator, and manages its infras, hosts, API tokens and replicas, through the REST API.

The API address and token come from --api and --token, else from DEPLOYME_API and
DEPLOYME_TOKEN, else from the file "deployme login" writes
($XDG_CONFIG_HOME/deployme/config.yaml, by default ~/.config/deployme/config.yaml). The token
saved there is only sent to the API address saved with it.

Exit codes:
  0  success
  1  the API refused the request (its error code and message are printed, for example
     "error: conflict: ..."), a cluster being waited for failed, or another run-time error
  2  bad usage: unknown command or flag, missing or invalid argument or flag value`

// app is one invocation of the CLI: where it writes, what it reads from its surroundings,
// and the global flags. Tests replace the clock, the terminal test and the poll interval.
type app struct {
	stdout, stderr io.Writer
	env            func(string) string
	// now is the clock behind relative times ("5m") and elapsed times.
	now func() time.Time
	// isTerminal tells whether progress can be redrawn in place on w.
	isTerminal func(w io.Writer) bool
	// termWidth is w's width in columns, so redrawn lines never wrap.
	termWidth func(w io.Writer) int
	// pollInterval is how often watches read the cluster and its nodes.
	pollInterval time.Duration

	root  *cobra.Command
	flags struct {
		api, token, output, config string
	}
}

func newApp(stdout, stderr io.Writer, env func(string) string) *app {
	return &app{
		stdout:       stdout,
		stderr:       stderr,
		env:          env,
		now:          time.Now,
		isTerminal:   fileIsTerminal,
		termWidth:    fileTermWidth,
		pollInterval: time.Second,
	}
}

func fileIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func fileTermWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// usageError is a wrong command line found by our own checks; it exits with exitUsage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// runError marks an error returned by a command's RunE. Whatever cobra returns without it
// came from parsing and validating the command line, and is a usage error.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// run executes args and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.newRoot()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return a.reportError(cmd, err)
}

// reportError prints err the way its kind deserves and returns the exit code.
func (a *app) reportError(cmd *cobra.Command, err error) int {
	var apiErr *client.APIError
	var uerr *usageError
	var rerr *runError
	switch {
	case errors.As(err, &apiErr):
		fmt.Fprintf(a.stderr, "error: %s: %s\n", apiErr.Body.Code, apiErr.Body.Message)
		for _, k := range sortedKeys(apiErr.Body.Details) {
			fmt.Fprintf(a.stderr, "  %s: %s\n", k, detailString(apiErr.Body.Details[k]))
		}
		return exitError
	case errors.As(err, &uerr) || !errors.As(err, &rerr):
		fmt.Fprintf(a.stderr, "error: %v\n", err)
		if cmd != nil {
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	default:
		fmt.Fprintf(a.stderr, "error: %v\n", err)
		return exitError
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func detailString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "deployme",
		Short:         "Manage Kubernetes clusters on a deployme coordinator",
		Long:          rootLong,
		SilenceErrors: true, // reportError prints them, with the right exit code
		SilenceUsage:  true, // a failed API call is not a reason to print the usage
		Args:          noSubcommand,
		RunE:          helpOrUnknown,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			_, err := a.outputFormat()
			return err
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	// Flag errors are usage errors, whichever command they belong to.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.api, "api", "", "coordinator REST API URL, e.g. http://127.0.0.1:8080 (env DEPLOYME_API)")
	pf.StringVar(&a.flags.token, "token", "", "API token (env DEPLOYME_TOKEN)")
	pf.StringVarP(&a.flags.output, "output", "o", "table", "output format: table, json or yaml (env DEPLOYME_OUTPUT)")
	pf.StringVar(&a.flags.config, "config", "", "config file (env DEPLOYME_CONFIG; default $XDG_CONFIG_HOME/deployme/config.yaml)")
	a.root = root

	root.AddCommand(
		a.loginCmd(),
		a.clusterCmd(),
		a.infraCmd(),
		a.hostCmd(),
		a.tokenCmd(),
		a.coordinatorCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the CLI's version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintln(a.stdout, buildinfo.String())
				return err
			},
		},
	)
	markRunErrors(root)
	return root
}

// markRunErrors wraps every RunE below c so that its errors are told apart from cobra's own
// command-line errors.
func markRunErrors(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			var uerr *usageError
			if err == nil || errors.As(err, &uerr) {
				return err
			}
			return &runError{err}
		}
	}
	for _, sub := range c.Commands() {
		markRunErrors(sub)
	}
}

// group returns a command that only holds subcommands: alone it prints its help, and an
// unknown subcommand is a usage error (cobra would print the help and succeed).
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: noSubcommand, RunE: helpOrUnknown}
	c.AddCommand(subs...)
	return c
}

func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's own default, which SuggestionsFor lacks
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return &usageError{errors.New(msg)}
	}
	return nil
}

func helpOrUnknown(cmd *cobra.Command, args []string) error {
	if err := noSubcommand(cmd, args); err != nil {
		return err
	}
	return cmd.Help()
}

// exactArgs is cobra.ExactArgs with the argument names in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf("%s: missing %s", cmd.CommandPath(), strings.Join(names[len(args):], " and "))
		case len(args) > len(names):
			return usageErrorf("%s: unexpected argument %q", cmd.CommandPath(), args[len(names)])
		}
		return nil
	}
}

// outputFormat is -o, else DEPLOYME_OUTPUT, else table.
func (a *app) outputFormat() (string, error) {
	f := a.flags.output
	if !a.root.PersistentFlags().Changed("output") {
		if v := a.env("DEPLOYME_OUTPUT"); v != "" {
			f = v
		}
	}
	switch f {
	case "table", "json", "yaml":
		return f, nil
	}
	return "", usageErrorf("invalid output format %q: use table, json or yaml", f)
}
