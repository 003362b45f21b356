// Package envflag lets every command-line flag also be set from the environment as
// DEPLOYME_<FLAG_IN_UPPER_SNAKE>; a flag given on the command line wins.
package envflag

import (
	"flag"
	"fmt"
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
