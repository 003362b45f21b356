// Package envflag lets every command-line flag also be set from the environment as
// DEPLOYME_<FLAG_IN_UPPER_SNAKE>; a flag given on the command line wins.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// EnvName is the variable read for a flag: --data-dir → DEPLOYME_DATA_DIR.
func EnvName(flagName string) string {
	return "DEPLOYME_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets every flag of fs that was not given on the command line from its environment
// variable, looked up with getenv. Call it after fs.Parse.
func Apply(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	return err
}

// Parse parses args into fs, refuses positional arguments, then applies the environment.
// ok is false when the command should exit with code: 0 after -h, 2 for bad usage (the
// message is already written to stderr).
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	if err := Apply(fs, getenv); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return 2, false
	}
	return 0, true
}
